"""What a stage's result was made from, so that a run redoes only what changed.

Each stage keys its per-package or per-project results by a digest of their inputs, the code of the
rules that made them included: an unchanged key means the stored result is still right, so a year
of thousands of packages is not read again each night, and a late package costs about itself.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from types import ModuleType


def digest(*parts: object) -> str:
    """A stable digest of values whose repr is deterministic (strings, numbers, dates, tuples, dataclasses)."""
    return hashlib.sha256("\x1f".join(map(repr, parts)).encode("utf-8")).hexdigest()


def code_hash(*modules: ModuleType) -> str:
    """A digest of the modules' source: changing a rule changes the keys of what it decides."""
    sha = hashlib.sha256()
    for module in modules:
        sha.update(Path(inspect.getsourcefile(module)).read_bytes())
    return sha.hexdigest()


def to_redo(wanted: dict[str, str], done: dict[str, str], forced: set[str]) -> list[str]:
    """The names whose inputs changed since their result was stored (or that never had one), and
    those the run was asked to redo anyway."""
    return [name for name, key in wanted.items() if done.get(name) != key or name in forced]
