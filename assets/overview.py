"""The state of each registered project in a year: its package in use, when it came, its status
and finding counts. projects.csv is this table; the summary workbook and the national report read it.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, select

from adapters.registry import YearRegistry
from adapters.warehouse import store
from adapters.warehouse.models import FindingRow

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROJECT_COLUMNS = ["year", "project_code", "level", "type", "host_unit", "project_name", "package", "received_at",
                   "late", "status", "fatal_count", "warning_count"]


def received_at(package) -> datetime:
    """When the package arrived, in Asia/Shanghai: an operator's record, else its file time."""
    moment = package.received_at or package.modified_at
    return moment.replace(tzinfo=timezone.utc).astimezone(SHANGHAI)


def deadline_end(registry: YearRegistry) -> datetime:
    """报送截止: the end of the deadline day, Asia/Shanghai (2023年11月10日前 includes that day)."""
    return datetime.combine(registry.deadline + timedelta(days=1), time(), SHANGHAI)


def project_overview(conn: Connection, registry: YearRegistry) -> pd.DataFrame:
    year = registry.year
    in_use = store.newest_packages(conn, year)
    counts = _finding_counts(conn, year, {code: p.id for code, p in in_use.items()})
    synced = store.confirmed_national_packages(conn, year)
    late_after = deadline_end(registry)
    rows = []
    for project in sorted(registry.projects, key=lambda p: p.code):
        package = in_use.get(project.code)
        fatal, warning = counts.get(project.code, (0, 0))
        arrived = received_at(package) if package else None
        status = "missing" if package is None else ("rejected" if fatal else "accepted")
        if status == "accepted" and synced.get(project.code) == package.id:
            status = "synced"
        rows.append(dict(
            year=year, project_code=project.code, level=project.level, type=project.type,
            host_unit=project.host_unit, project_name=project.project_name,
            package=package.name if package else "", received_at=arrived.isoformat() if arrived else "",
            late=bool(arrived and arrived >= late_after), status=status,
            fatal_count=fatal, warning_count=warning,
        ))
    return pd.DataFrame(rows, columns=PROJECT_COLUMNS)


def _finding_counts(conn: Connection, year: int, in_use: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Fatal and warning findings that bear on the project now: its package in use and the project
    itself, less those an operator waived (they stay in issues.csv, marked, but do not count)."""
    rows = conn.execute(
        select(FindingRow.id, FindingRow.project_code, FindingRow.package_id, FindingRow.severity)
        .where(FindingRow.year == year, FindingRow.project_code.is_not(None))
    ).all()
    waived = store.waived_findings(conn, year)
    counts: dict[str, list[int]] = {}
    for finding_id, code, package_id, severity in rows:
        if package_id is not None and package_id != in_use.get(code):
            continue  # a superseded version's findings stay in issues.csv but do not decide the status
        if finding_id in waived:
            continue
        tally = counts.setdefault(code, [0, 0])
        tally[0 if severity == "fatal" else 1] += 1
    return {code: (f, w) for code, (f, w) in counts.items()}
