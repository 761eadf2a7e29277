"""A unit's self-check: one package judged exactly as the pipeline would judge it, before it is sent.

The package is copied (with its modification times) into a temporary inbox and run through the same
stage functions as the year job (intake, validation, reconciliation, the national report's checks)
against a temporary SQLite warehouse, so its findings are the pipeline's by construction. Nothing is
written to the real warehouse, the real inbox or the unit's package. Left out: the rules that need the
other units' packages or the real arrival (P007 superseded, R007 double claiming, T001 late).
"""

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from adapters.fee_caps import FeeCaps
from adapters.registry import YearRegistry
from adapters.warehouse import connect, store, upgrade
from assets.exports import issues_table, project_money, reconciliation_table
from assets.feedback import ProjectMoney, write_feedback
from assets.intake import ingest_year
from assets.national import prepare_reports, report_keys
from assets.reconciliation import reconcile_projects, reconciliation_keys
from assets.validation import validate_year

# Rules a single package cannot be judged on alone.
NEEDS_OTHER_PACKAGES = frozenset({"P007", "R007", "T001"})


@dataclass
class CheckResult:
    package: str  # the package's file or folder name
    project_code: str  # "" when it names no registered project
    findings: pd.DataFrame  # issues.csv's columns
    money: ProjectMoney | None  # None when it names no registered project
    feedback: Path | None = None

    @property
    def fatal(self) -> int:
        return int((self.findings["severity"] == "fatal").sum())


def check_package(package: Path, registry: YearRegistry, caps: list[FeeCaps], out_dir: Path | None = None,
                  now: datetime | None = None) -> CheckResult:
    """Judge one package (zip or folder) as the year job would; write its feedback workbook into
    out_dir when given."""
    package = Path(package)
    if not package.exists():
        raise FileNotFoundError(package)
    now = now or datetime.now(timezone.utc)
    year = registry.year
    with tempfile.TemporaryDirectory(prefix="etl-check-") as scratch:
        root = Path(scratch)
        inbox = root / "inbox"
        _copy(package, inbox / str(year) / package.name)
        engine = connect(f"sqlite:///{root / 'check.db'}")
        try:
            upgrade(engine)
            ingest_year(engine, inbox, registry)
            validate_year(engine, registry)
            with engine.connect() as conn:
                keys = reconciliation_keys(conn, registry, caps, now)
            reconcile_projects(engine, registry, keys, caps, now)
            with engine.connect() as conn:
                national = report_keys(conn, registry)
            prepare_reports(engine, registry, national, root / "national")
            result = _result(engine, registry, package.name)
            if out_dir is not None:
                result.feedback = _write_feedback(engine, registry, result, Path(out_dir))
        finally:
            engine.dispose()
    return result


def _copy(source: Path, target: Path) -> None:
    """The package as the unit has it, times included (they decide what the pipeline reads as its arrival)."""
    target.parent.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)  # copy2 per file, then each folder's times
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _result(engine, registry: YearRegistry, name: str) -> CheckResult:
    issues = issues_table(engine, registry.year)
    mine = issues[(issues["package"] == name) & ~issues["rule_id"].isin(NEEDS_OTHER_PACKAGES)]
    codes = [code for code in mine["project_code"].unique() if code]
    with engine.connect() as conn:
        versions = store.package_versions(conn, registry.year)
    code = codes[0] if codes else next((p.project_code for p in versions if p.name == name), "") or ""
    money = reconciliation_table(engine, registry.year)
    state = project_money(money[money["project_code"] == code]).get(code) if code else None
    return CheckResult(name, code, mine.reset_index(drop=True), state)


def _write_feedback(engine, registry: YearRegistry, result: CheckResult, out_dir: Path) -> Path:
    project = registry.project(result.project_code) if result.project_code else None
    with engine.connect() as conn:
        package_id = next((p.id for p in store.package_versions(conn, registry.year) if p.name == result.package),
                          None)
        workbook = store.package_blobs(conn, [package_id])[package_id][0] if package_id else None
        found = store.package_sheets(conn, [package_id] if package_id else [])
        sheets = {sheet: layout for (_, sheet), layout in found.items()}
    name = result.project_code or Path(result.package).stem
    return write_feedback(
        out_dir / f"{name}.xlsx", year=registry.year,
        project=dict(code=result.project_code, host_unit=project.host_unit if project else "",
                     project_name=project.project_name if project else "",
                     level=project.level if project else "", type=project.type if project else ""),
        status="rejected" if result.fatal else "accepted", package=result.package, findings=result.findings,
        workbook=workbook, sheets=sheets, deadline=registry.deadline.isoformat(), money=result.money,
    )
