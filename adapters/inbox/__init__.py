"""Safe, read-only reading of the submission packages in the inbox."""

from adapters.inbox.content_type import ExtensionCheck, check_extension, sniff
from adapters.inbox.packages import (
    Limits,
    Member,
    OpenedPackage,
    PackageError,
    PackageRef,
    UnreadablePackage,
    UnsafePackage,
    describe_package,
    discover_packages,
    open_package,
    open_quarantined,
)

__all__ = [
    "ExtensionCheck",
    "Limits",
    "Member",
    "OpenedPackage",
    "PackageError",
    "PackageRef",
    "UnreadablePackage",
    "UnsafePackage",
    "describe_package",
    "check_extension",
    "discover_packages",
    "open_package",
    "open_quarantined",
    "sniff",
]
