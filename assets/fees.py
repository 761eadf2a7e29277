"""R008: consultation (专家咨询费) and lecture (讲课费) fees above the cap for the expert's title and
days. Only where 专家名单 lets us tell: the line's 收款方 is a listed expert with a title and days."""

import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Connection, select

from adapters.fee_caps import FeeCaps, caps_on
from adapters.registry import normalize_name
from adapters.warehouse.models import ExpenseLine, SheetRow
from schemas.findings import Finding, make_finding
from schemas.layout import EXPENSES, EXPERTS
from schemas.values import amount_of, fen_to_yuan

CONSULTATION, LECTURE = "专家咨询费", "讲课费"


def title_class(title: str) -> str:
    """academician | full_senior | associate_senior | other, from the 职称 a unit types."""
    t = title.replace(" ", "")
    if "院士" in t:
        return "academician"
    if "副" in t and any(k in t for k in ("高", "教授", "研究员", "主任", "编审", "译审")):
        return "associate_senior"
    if any(k in t for k in ("正高", "教授", "研究员", "主任医师", "主任药师", "编审", "译审", "高级工程师")):
        return "full_senior" if "高级工程师" not in t or "正高" in t else "associate_senior"
    if "高级" in t:
        return "associate_senior"
    return "other"


def consultation_cap(caps: FeeCaps, klass: str, days: Decimal) -> int:
    """Per-day rate by title (senior = 正高 or 副高); half a day at 60%; from day 3 on 50%."""
    rate = caps.consultation_per_day["academician" if klass == "academician" else
                                     "senior" if klass in ("full_senior", "associate_senior") else "other"]
    whole = int(days)
    half = days - whole
    full_days = min(whole, caps.after_day)
    late_days = max(whole - caps.after_day, 0)
    cap = Decimal(rate) * (full_days + late_days * caps.after_share) + (Decimal(rate) * caps.half_day_share if half else 0)
    return int(cap.to_integral_value(ROUND_HALF_UP))


def lecture_cap(caps: FeeCaps, klass: str, days: Decimal) -> int:
    """Per class hour by title, at most 4 class hours a half-day (8 a day)."""
    hours = caps.hours_per_half_day * (days * 2).to_integral_value(ROUND_HALF_UP)
    return int(caps.lecture_per_hour[klass] * hours)


def fee_findings(conn: Connection, package_ids: list[int], caps: list[FeeCaps],
                 sheet_names: dict[int, str], headers: dict[int, dict[str, str]]) -> dict[int, list[Finding]]:
    experts = _experts(conn, package_ids)
    lines = conn.execute(
        select(ExpenseLine.package_id, ExpenseLine.excel_row, ExpenseLine.category, ExpenseLine.payee,
               ExpenseLine.amount_fen, ExpenseLine.amount_typed, ExpenseLine.spent_on)
        .where(ExpenseLine.package_id.in_(package_ids), ExpenseLine.category.in_([CONSULTATION, LECTURE]))
        .order_by(ExpenseLine.package_id, ExpenseLine.excel_row)
    ).all()
    paid: dict[tuple[int, str, str], int] = defaultdict(int)
    flagged: set[tuple[int, str, str]] = set()
    out: dict[int, list[Finding]] = defaultdict(list)
    for line in lines:
        expert = experts.get(line.package_id, {}).get(normalize_name(line.payee))
        in_force = caps_on(caps, line.spent_on) if line.spent_on else None
        if expert is None or in_force is None or line.amount_fen is None:
            continue  # 专家名单 does not tell us who was paid, for how many days, or the date is unknown
        name, title, days = expert
        klass = title_class(title)
        cap = (consultation_cap if line.category == CONSULTATION else lecture_cap)(in_force, klass, days)
        key = (line.package_id, name, line.category)
        paid[key] += line.amount_fen
        if paid[key] > cap and key not in flagged:
            flagged.add(key)  # point at the line that crossed the cap, once per expert and fee
            detail = (f"专家{name}（{title or '未填职称'}，服务 {days} 天）的{line.category}累计 {fen_to_yuan(paid[key])} 元，"
                      f"标准上限 {fen_to_yuan(cap)} 元")
            column = headers.get(line.package_id, {}).get("amount", EXPENSES.column("amount").header)
            out[line.package_id].append(make_finding(
                "R008", sheet=sheet_names.get(line.package_id, EXPENSES.name), row=line.excel_row, column=column,
                value=line.amount_typed, detail=detail))
    return out


def _experts(conn: Connection, package_ids: list[int]) -> dict[int, dict[str, tuple[str, str, Decimal]]]:
    """package -> normalised name -> (name, title, days), for experts whose days are readable."""
    rows = conn.execute(
        select(SheetRow.package_id, SheetRow.data)
        .where(SheetRow.package_id.in_(package_ids), SheetRow.sheet == EXPERTS.name)
    ).all()
    experts: dict[int, dict[str, tuple[str, str, Decimal]]] = defaultdict(dict)
    for package_id, data in rows:
        values = json.loads(data)
        name = str(values.get("name") or "").strip()
        days = amount_of(values.get("service_days")).fen
        if name and days is not None and days > 0:
            experts[package_id][normalize_name(name)] = (name, str(values.get("title") or ""), Decimal(days) / 100)
    return experts
