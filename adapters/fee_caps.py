"""Caps on experts' consultation and lecture fees (R008), kept as effective-dated data the bureau edits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml

from adapters.registry import yuan_to_fen

FEE_CAPS_ENV = "ETL_FEE_CAPS"
DEFAULT_FEE_CAPS = Path(__file__).resolve().parents[1] / "data" / "rules" / "fee_caps.yaml"


@dataclass(frozen=True)
class FeeCaps:
    effective_from: date
    consultation_per_day: dict[str, int]  # title class -> fen
    half_day_share: Decimal
    after_day: int
    after_share: Decimal
    lecture_per_hour: dict[str, int]
    hours_per_half_day: int


def load_fee_caps(path: Path | str | None = None) -> list[FeeCaps]:
    source = Path(path or os.environ.get(FEE_CAPS_ENV) or DEFAULT_FEE_CAPS)
    entries = yaml.safe_load(source.read_text(encoding="utf-8"))
    caps = [
        FeeCaps(
            effective_from=e["effective_from"],
            consultation_per_day={k: yuan_to_fen(v) for k, v in e["consultation"]["per_day"].items()},
            half_day_share=Decimal(e["consultation"]["half_day_share"]),
            after_day=int(e["consultation"]["after_day"]),
            after_share=Decimal(e["consultation"]["after_share"]),
            lecture_per_hour={k: yuan_to_fen(v) for k, v in e["lecture"]["per_hour"].items()},
            hours_per_half_day=int(e["lecture"]["hours_per_half_day"]),
        )
        for e in entries
    ]
    return sorted(caps, key=lambda c: c.effective_from)


def caps_on(caps: list[FeeCaps], day: date) -> FeeCaps | None:
    """The caps in force on a day (the latest entry that had started by then)."""
    current = [c for c in caps if c.effective_from <= day]
    return current[-1] if current else None
