"""Shared fixtures: the 2023 registry, real packages built in tmp dirs, and both warehouses."""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from adapters.registry import YearRegistry, load_year
from etl.cli import main as cli_main
from etl.sample.builder import PackageSpec, clean_package, write_package
from etl.sample.year_sample import project_spec

POSTGRES_URL = os.environ.get("ETL_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
_PG_SCHEMA = "etl_test"


@pytest.fixture(scope="session")
def registry() -> YearRegistry:
    return load_year(2023)


def project_dict(registry: YearRegistry, code: str) -> dict:
    """A registry entry as the sample builder takes it (grants in yuan, Decimal)."""
    return project_spec(registry, registry.project(code))


@pytest.fixture
def clean(registry):
    """clean(code, **kw) -> a PackageSpec of that project that breaks no rule."""
    return lambda code, **kw: clean_package(project_dict(registry, code), 2023, **kw)


@pytest.fixture
def inbox(tmp_path) -> Path:
    (tmp_path / "inbox" / "2023").mkdir(parents=True)
    return tmp_path / "inbox"


def put(inbox: Path, spec: PackageSpec) -> Path:
    return write_package(spec, inbox / "2023")


@contextmanager
def postgres_schema():
    """A fresh PostgreSQL schema of its own (so its URL is new too), dropped afterwards."""
    schema = f"{_PG_SCHEMA}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each storage test runs against a fresh SQLite file and a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


class Run:
    """The exports of one `python -m etl run`, read back as the bureau would."""

    def __init__(self, export: Path):
        self.dir = export / "2023"
        self.projects = pd.read_csv(self.dir / "projects.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
        self.issues = pd.read_csv(self.dir / "issues.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)

    def status(self, code: str) -> str:
        return self.projects.set_index("project_code").at[code, "status"]

    def findings(self, rule_id: str | None = None, package: str | None = None) -> pd.DataFrame:
        frame = self.issues
        if rule_id:
            frame = frame[frame.rule_id == rule_id]
        if package:
            frame = frame[frame.package == package]
        return frame


@pytest.fixture
def run_etl(tmp_path):
    """run_etl(inbox, database_url) runs the CLI (the Dagster job, in-process) and returns a Run."""

    def run(inbox: Path, database_url: str, export: Path | None = None) -> Run:
        export = export or tmp_path / "exports"
        code = cli_main(["run", "--year", "2023", "--inbox", str(inbox), "--export", str(export),
                         "--database-url", database_url])
        assert code == 0
        return Run(export)

    return run


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with its content hash and mtime: to prove a run left the inbox alone."""
    return {
        str(p.relative_to(root)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
