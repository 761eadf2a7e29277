"""Time rules: a package received after the deadline (T001), a team's activity or expense after its
completion date (T002), a registered project with no package once the deadline has passed (T003).
Deadlines and completion dates come from the year's registry data (Asia/Shanghai)."""

import json
from datetime import date, datetime

from sqlalchemy import Connection, select

from adapters.registry import RegisteredProject, YearRegistry
from adapters.warehouse import store
from adapters.warehouse.models import ExpenseLine, SheetRow
from assets.overview import SHANGHAI, deadline_end, received_at
from schemas.findings import Finding, make_finding
from schemas.layout import ACTIVITIES, EXPENSES
from schemas.values import date_of


def late_findings(registry: YearRegistry, packages: list) -> dict[int, list[Finding]]:
    """T001 for every package version received after the end of the deadline day."""
    cutoff = deadline_end(registry)
    return {
        p.id: [make_finding("T001", received=_shown(received_at(p)), deadline=registry.deadline.isoformat())]
        for p in packages
        if received_at(p) >= cutoff
    }


def missing_findings(registry: YearRegistry, projects: list[RegisteredProject], with_package: set[str],
                     now: datetime) -> dict[str, list[Finding]]:
    """T003 for a registered project with no package at all, once the deadline has passed."""
    cutoff = deadline_end(registry)
    if now < cutoff:
        return {}
    return {p.code: [make_finding("T003", deadline=registry.deadline.isoformat())] for p in projects if p.code not in with_package}


def after_completion_findings(conn: Connection, registry: YearRegistry, team_packages: list[int]) -> dict[int, list[Finding]]:
    """T002: for teams (服务团), expenses and activities dated after the completion date."""
    if not team_packages:
        return {}
    done = registry.team_completion_date
    late: list[tuple[int, str, int, str, str]] = []  # (package, sheet, Excel row, field, value as typed)
    for package_id, excel_row, spent_on in conn.execute(
            select(ExpenseLine.package_id, ExpenseLine.excel_row, ExpenseLine.spent_on)
            .where(ExpenseLine.package_id.in_(team_packages), ExpenseLine.spent_on > done)):
        late.append((package_id, EXPENSES.name, excel_row, "spent_on", spent_on.isoformat()))
    for package_id, excel_row, data in conn.execute(
            select(SheetRow.package_id, SheetRow.excel_row, SheetRow.data)
            .where(SheetRow.package_id.in_(team_packages), SheetRow.sheet == ACTIVITIES.name)):
        values = json.loads(data)
        for field in ("start_date", "end_date"):
            typed = str(values.get(field) or "")
            day = date_of(typed)
            if day is not None and day > done:
                late.append((package_id, ACTIVITIES.name, excel_row, field, typed))
                break  # one finding per activity: its end follows its start
    # The sheet names and headers as typed, of the packages with a finding only (a year has thousands).
    sheets = store.package_sheets(conn, sorted({package_id for package_id, *_ in late}))
    out: dict[int, list[Finding]] = {}
    for package_id, sheet, excel_row, field, typed in late:
        out.setdefault(package_id, []).append(make_finding(
            "T002", sheet=_sheet(sheets, package_id, sheet), row=excel_row,
            column=_header(sheets, package_id, sheet, field), value=typed, deadline=done.isoformat()))
    return out


def _sheet(sheets: dict, package_id: int, name: str) -> str:
    return sheets.get((package_id, name), {}).get("typed_name", name)


def _header(sheets: dict, package_id: int, name: str, field: str) -> str:
    headers = sheets.get((package_id, name), {}).get("headers", {})
    return headers.get(field, [""])[0] or next(c.header for c in (EXPENSES.columns + ACTIVITIES.columns) if c.field == field)


def _shown(moment: datetime | date) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if isinstance(moment, datetime) else moment.isoformat()
