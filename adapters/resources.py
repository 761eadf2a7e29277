"""Dagster resources for the places the pipeline reads and writes: inbox, warehouse, exports, registry.

Paths and the database URL come from run configuration or the environment (see etl/definitions.py),
so the same code serves the embedded SQLite default and PostgreSQL in production.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import dagster as dg
from sqlalchemy import Engine

from adapters.fee_caps import FeeCaps, load_fee_caps
from adapters.registry import YearRegistry, load_year
from adapters.warehouse.engine import connect, database_url, upgrade


@cache
def _migrated_engine(url: str) -> Engine:
    engine = connect(url)
    upgrade(engine)
    return engine


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse database (SQLAlchemy URL; empty means $ETL_DATABASE_URL or the SQLite default)."""

    database_url: str = ""

    def engine(self) -> Engine:
        # One engine per process and URL, migrated once: steps share the connection pool.
        return _migrated_engine(database_url(self.database_url or None))


class InboxResource(dg.ConfigurableResource):
    """The units' inbox, read-only: <path>/<year>/<package>."""

    path: str = "inbox"

    def year_dir(self, year: int) -> Path:
        return Path(self.path) / str(year)


class ExportResource(dg.ConfigurableResource):
    """Where the export files go: <path>/<year>/…"""

    path: str = "exports"

    def year_dir(self, year: int) -> Path:
        directory = Path(self.path) / str(year)
        directory.mkdir(parents=True, exist_ok=True)
        return directory


class RegistryResource(dg.ConfigurableResource):
    """The registry data files (empty path means $ETL_REGISTRY_DIR or the repo's data/registry)."""

    path: str = ""

    def year(self, year: int) -> YearRegistry:
        return load_year(year, self.path or None)


class FeeCapsResource(dg.ConfigurableResource):
    """The fee caps data file for R008 (empty path means $ETL_FEE_CAPS or data/rules/fee_caps.yaml)."""

    path: str = ""

    def load(self) -> list[FeeCaps]:
        return load_fee_caps(self.path or None)
