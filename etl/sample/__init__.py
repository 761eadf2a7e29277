"""Sample submission packages: `builder` writes a package from a plain spec (tests use it to express
any mess a unit can make), `year_sample` builds the year's sample inbox `make run` shows a newcomer."""

from pathlib import Path

from etl.sample.year_2024 import SAMPLE_2024, build_2024_inbox
from etl.sample.year_sample import build_sample_inbox as build_year_sample

__all__ = ["build_sample_inbox"]


def build_sample_inbox(year: int, out_dir: Path, registry_path: Path | None = None) -> list[Path]:
    """The sample inbox of a year: 2024 is the made-up second year (示例) of etl.sample.year_2024."""
    if year == SAMPLE_2024 and registry_path is None:
        return build_2024_inbox(out_dir)
    return build_year_sample(year, out_dir, registry_path)
