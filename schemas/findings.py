"""A finding: one rule's verdict on one place in a package."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.catalog import RULES, Severity


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str
    sheet: str = ""
    row: int | None = None  # the Excel row the unit sees (header = 1)
    column: str = ""  # the header as the unit typed it
    value: str = ""  # what the unit typed


def make_finding(
    rule_id: str,
    *,
    sheet: str = "",
    row: int | None = None,
    column: str = "",
    value: object = "",
    **figures: object,
) -> Finding:
    """Build a finding whose message comes from the catalog, filled with the place and the figures."""
    rule = RULES[rule_id]
    text = "" if value is None else str(value)
    message = rule.template.format(sheet=sheet, column=column, value=text, **figures)
    return Finding(rule.id, rule.severity, message, sheet, row, column, text)
