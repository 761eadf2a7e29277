"""Sample submission packages: `builder` writes a package from a plain spec (tests use it to express
any mess a unit can make), `year_sample` builds the year's sample inbox `make run` shows a newcomer."""

from etl.sample.year_sample import build_sample_inbox

__all__ = ["build_sample_inbox"]
