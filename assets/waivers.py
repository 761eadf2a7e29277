"""Operators' waivers: the bureau decides that a finding does not count against a project (a credit
code the registry got wrong, a photo whose extension is odd, a leftover agreed by phone).

A waiver is data in the warehouse, append-only: recording adds a row, revoking adds a revocation,
nothing is changed in place, so who decided what, when and why stays visible. It is applied in the
one place where a package's status is decided (adapters.warehouse.store.fatal_package_ids and
waived_findings); the stages themselves keep producing every finding, and the exports list a waived
finding marked as such. Recording or revoking changes the project's reconciliation key, so the next
run (or the run the Dagster job starts) redoes that project alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import Engine

from adapters.registry import YearRegistry
from adapters.warehouse import store
from schemas.catalog import RULES

# How a waiver stands today, in the operator's words.
STATE_ZH = {"active": "有效", "revoked": "已撤销", "expired": "已过期"}
WAIVER_COLUMNS = ["id", "project_code", "rule_id", "package", "sheet", "row", "until", "state", "recorded_by",
                  "recorded_at", "reason", "revoked_by", "revoked_at", "revoke_reason", "matched"]


class WaiverError(ValueError):
    """A waiver that cannot be recorded or revoked; the message is for the operator (Chinese)."""


@dataclass(frozen=True)
class WaiverRequest:
    year: int
    project: str
    rule: str
    by: str
    reason: str
    package: str = ""
    sheet: str = ""
    row: int | None = None
    until: date | None = None


def record_waiver(engine: Engine, registry: YearRegistry, request: WaiverRequest) -> tuple[int, bool]:
    """Record a waiver; returns (its id, True) — or (the id of an identical active one, False): the
    same decision recorded twice is one waiver."""
    project = registry.project(request.project)
    if project is None:
        raise WaiverError(f"项目编号“{request.project}”不在 {request.year} 年立项名单中")
    rule = request.rule.strip().upper()
    if rule not in RULES:
        raise WaiverError(f"规则编号“{request.rule}”不存在")
    if not request.by.strip() or not request.reason.strip():
        raise WaiverError("请填写豁免人（--by）和豁免理由（--reason）")
    values = dict(year=request.year, project_code=project.code, rule_id=rule, package=request.package.strip(),
                  sheet=request.sheet.strip(), row=request.row, until=request.until)
    with engine.begin() as conn:
        for waiver in store.active_waivers(conn, request.year, [project.code]):
            if all(getattr(waiver, key) == value for key, value in values.items()):
                return waiver.id, False
        return store.insert_waiver(conn, dict(values, recorded_by=request.by.strip(), reason=request.reason.strip())), True


def revoke_waiver(engine: Engine, waiver_id: int, by: str, reason: str) -> object:
    """Revoke a waiver (a revocation row is added); returns the waiver as it was."""
    if not by.strip() or not reason.strip():
        raise WaiverError("请填写撤销人（--by）和撤销理由（--reason）")
    with engine.begin() as conn:
        found = store.waivers(conn, waiver_id=waiver_id)
        if not found:
            raise WaiverError(f"没有编号为 {waiver_id} 的豁免记录")
        if found[0].revoked_at is not None:
            raise WaiverError(f"豁免 {waiver_id} 已于 {_shanghai(found[0].revoked_at)} 由 {found[0].revoked_by} 撤销")
        store.insert_revocation(conn, waiver_id, by.strip(), reason.strip())
    return found[0]


def state_of(waiver, today: date) -> str:
    if waiver.revoked_at is not None:
        return "revoked"
    return "active" if store.is_active(waiver, today) else "expired"


def waiver_table(engine: Engine, year: int, today: date | None = None) -> pd.DataFrame:
    """Every waiver of the year with its state today and how many findings it covers now."""
    today = today or store.today_in_shanghai()
    with engine.connect() as conn:
        rows = store.waivers(conn, year)
        active = [w for w in rows if store.is_active(w, today)]
        matches = store.waiver_matches_of(conn, year, active)
    matched = {w.id: 0 for w in rows}
    for found in matches.values():
        for waiver in found:
            matched[waiver.id] += 1
    return pd.DataFrame(
        [dict(id=w.id, project_code=w.project_code, rule_id=w.rule_id, package=w.package, sheet=w.sheet,
              row=w.row, until=w.until.isoformat() if w.until else "", state=state_of(w, today),
              recorded_by=w.recorded_by, recorded_at=_shanghai(w.recorded_at), reason=w.reason,
              revoked_by=w.revoked_by or "", revoked_at=_shanghai(w.revoked_at), revoke_reason=w.revoke_reason or "",
              matched=matched[w.id]) for w in rows],
        columns=WAIVER_COLUMNS,
    ).astype({"row": "Int64"})


def unmatched(table: pd.DataFrame) -> pd.DataFrame:
    """Active waivers that cover no finding: the unit fixed it, or the operator mistyped a scope."""
    return table[(table["state"] == "active") & (table["matched"] == 0)]


def waiver_line(w: dict) -> str:
    """One waiver on one line, its id first (what `python -m etl waivers` prints)."""
    scope = "，".join(part for part in (
        f"材料包 {w['package']}" if w["package"] else "在用材料包",
        f"工作表 {w['sheet']}" if w["sheet"] else "", f"第 {w['row']} 行" if pd.notna(w["row"]) else "",
        f"有效期至 {w['until']}" if w["until"] else "") if part)
    line = (f"{w['id']}\t{w['project_code']}\t{w['rule_id']}\t{STATE_ZH[w['state']]}\t{scope}\t"
            f"{w['recorded_by']} {w['recorded_at']}：{w['reason']}")
    if w["state"] == "revoked":
        line += f"\t撤销：{w['revoked_by']} {w['revoked_at']}：{w['revoke_reason']}"
    elif w["state"] == "active":
        line += f"\t覆盖 {w['matched']} 条问题" + ("（未匹配任何问题，请核对）" if not w["matched"] else "")
    return line


def _shanghai(moment: datetime | None) -> str:
    """A stored UTC time as the bureau reads it."""
    return "" if moment is None else moment.replace(tzinfo=timezone.utc).astimezone(store.SHANGHAI).strftime("%Y-%m-%d %H:%M")
