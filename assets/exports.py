"""Exports: the files the bureau works from (../shared/spec/outputs.md; names and columns are a contract).

CSV files are UTF-8 with a BOM so Excel shows the Chinese, written to a temporary name and renamed,
so a reader never sees half a file.
"""


import functools
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import Engine

from adapters.national_system import outbox
from adapters.registry import SAMPLE_LABEL, YearRegistry
from adapters.resources import ExportResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.workers import WorkerFailure, in_background, map_isolated
from assets.overview import project_overview
from assets.sheets import READER_KEY
from assets.partitions import single_run, year_partitions, years_of_run
from assets import feedback
from assets import changes as changes_module, manifest
from assets.changes import package_changes, write_changes
from assets.indicators import INDICATOR_COLUMNS, previous_registry, service_indicators, year_indicator_tables
from assets.outcomes_sheet import write_outcomes_sheet
from assets.incremental import code_hash
from assets.national import national_sync
from assets.reconciliation import KEYS as RECONCILIATION_KEYS
from assets.summary_workbook import atomic_path, write_summary
from assets.waivers import unmatched, waiver_table
from schemas.catalog import PROJECT_STATUS_ZH, RULES, SEVERITY_ZH
from schemas.values import fen_to_yuan

RECONCILIATION_COLUMNS = ["year", "project_code", "funding_source", "granted", "spent", "balance", "refund_to",
                          "refund_declared", "status",
                          # added after the contract's columns: what the unit declared, for the operator
                          "declared_total", "audited_total", "refund_to_declared", "package",
                          # true while the package in use has fatal findings: the figures may change
                          "provisional"]
NATIONAL_COLUMNS = ["project_code", "version", "status", "receipt_no", "attempts", "last_error", "server_time"]
# waived, waived_by, waiver_reason: added after the contract's columns (an operator's waiver, issue 13).
ISSUE_COLUMNS = ["year", "project_code", "package", "rule_id", "severity", "sheet", "row", "column", "value", "message",
                 "waived", "waived_by", "waiver_reason"]
_FOUND_COLUMNS = ISSUE_COLUMNS[1:10]  # what the warehouse stores of a finding


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    # Flags are written as the contract spells them (outputs.md: `true | false`), not as Python's True.
    flags = {column: frame[column].map({True: "true", False: "false"}) for column in frame.columns
             if frame[column].dtype == bool}
    frame = frame.assign(**flags) if flags else frame
    with atomic_path(path) as partial:
        frame.to_csv(partial, index=False, encoding="utf-8-sig", lineterminator="\n")
    return path


def issues_table(engine: Engine, year: int) -> pd.DataFrame:
    """issues.csv: every finding, a waived one marked with who waived it and why."""
    with engine.connect() as conn:
        rows = store.findings(conn, year)
        waived = store.waived_findings(conn, year)
    frame = pd.DataFrame([r._asdict() for r in rows], columns=["finding_id", *_FOUND_COLUMNS])
    frame.insert(0, "year", year)
    frame["row"] = frame["row"].astype("Int64")
    ids = frame.pop("finding_id")
    frame["waived"] = ids.isin(list(waived)).map({True: "true", False: "false"})
    frame["waived_by"] = ids.map({fid: w.recorded_by for fid, w in waived.items()})
    frame["waiver_reason"] = ids.map({fid: w.reason for fid, w in waived.items()})
    return frame.fillna({"project_code": "", "package": "", "waived_by": "", "waiver_reason": ""})[ISSUE_COLUMNS]


def reconciliation_table(engine: Engine, year: int) -> pd.DataFrame:
    """reconciliation.csv: money as plain decimals with exactly two places, computed in fen. A row is
    provisional when its figures come from a package with fatal findings (store.fatal_package_ids
    decides that, as it decides the package's status)."""
    with engine.connect() as conn:
        rows = store.reconciliation(conn, year)
        names = {p.id: p.name for p in store.package_versions(conn, year)}
        reconciled = {r.package_id for r in rows if r.status != "unreconciled" and r.package_id is not None}
        fatal = store.fatal_package_ids(conn, sorted(reconciled), store.ALL_STAGES_BUT_NATIONAL)

    def money(fen: int | None) -> str:
        return "" if fen is None else fen_to_yuan(fen)

    return pd.DataFrame(
        [dict(year=year, project_code=r.project_code, funding_source=r.funding_source, granted=money(r.granted_fen),
              spent=money(r.spent_fen), balance=money(r.balance_fen), refund_to=r.refund_to,
              refund_declared=money(r.refund_declared_fen), status=r.status,
              declared_total=money(r.declared_total_fen), audited_total=money(r.audited_total_fen),
              refund_to_declared=r.refund_to_declared, package=names.get(r.package_id, ""),
              provisional=r.status != "unreconciled" and r.package_id in fatal) for r in rows],
        columns=RECONCILIATION_COLUMNS,
    )


def national_table(engine: Engine, year: int) -> pd.DataFrame:
    return pd.DataFrame(outbox.filings(engine, year), columns=NATIONAL_COLUMNS)[NATIONAL_COLUMNS]


def write_year_exports(engine: Engine, registry: YearRegistry, out_dir: Path, *, run_id: str = "",
                       registry_path: str | None = None, previous_year: YearRegistry | None = None
                       ) -> dict[str, Path | pd.DataFrame]:
    """Every export file of the year, from what the warehouse holds now; manifest.json last."""
    year = registry.year
    rules, registry_version = manifest.rules_version(), manifest.registry_version(year, registry_path)
    versions = manifest.versions_line(rules, registry_version)
    with engine.connect() as conn:
        projects = project_overview(conn, registry)
        waiver_ids: dict[str, list[int]] = defaultdict(list)
        for w in store.active_waivers(conn, year):
            waiver_ids[w.project_code].append(w.id)
        previous = store.exported_states(conn, year)
        outcomes = year_indicator_tables(conn, registry, previous_year)
    issues = issues_table(engine, year)
    money = reconciliation_table(engine, year)
    national = national_table(engine, year)
    states = manifest.project_states(projects, money, registry, waiver_ids, rules)
    waivers = waiver_table(engine, year)
    summary = out_dir / "summary.xlsx"
    written = {"projects": projects, "issues": issues, "reconciliation": money, "waivers": waivers,
               "summary_xlsx": summary, "changes": out_dir / "changes"}
    # summary.xlsx (~2 s for a national year, most of a backfill's exports) is written in a process of
    # its own while this one writes and hashes every other file; its hash is taken once it is there.
    with in_background(write_summary, summary, year=year, projects=projects, issues=issues, reconciliation=money,
                       national=national, waivers=waivers, changed=manifest.changed_projects(previous, states),
                       versions=versions, sample=registry.sample,
                       more_sheets=[functools.partial(write_outcomes_sheet, outcomes=outcomes)]):
        changes = write_changes_workbooks(engine, year, out_dir / "changes")
        written.update(
            projects_csv=write_csv(sample_labelled(projects, registry), out_dir / "projects.csv"),
            issues_csv=write_csv(sample_labelled(issues, registry), out_dir / "issues.csv"),
            reconciliation_csv=write_csv(sample_labelled(money, registry), out_dir / "reconciliation.csv"),
            indicators_csv=write_csv(pd.DataFrame(outcomes.indicators, columns=INDICATOR_COLUMNS),
                                     out_dir / "indicators.csv"),
            feedback=write_feedback_workbooks(engine, registry, projects, issues, out_dir / "feedback",
                                              version_keys=changes, versions=versions, money=project_money(money)),
        )
        hashes = manifest.file_hashes(out_dir, but=summary)
    hashes.update(manifest.file_hashes(out_dir, only=summary))
    written["manifest"] = manifest.write_manifest(out_dir, hashes, run_id=run_id, rules=rules, registry=registry_version)
    # The states the next run's 变更 sheet compares with, once the files are all there: a run killed before
    # this line leaves them as they were, so the rerun lists the same changes (told twice, never lost).
    with engine.begin() as conn:
        store.replace_exported_states(conn, year, states)
    return written


_CHANGES = "changes/"  # fingerprints of the changes workbooks, by file name
_CHANGES_CODE = code_hash(changes_module)


def write_changes_workbooks(engine: Engine, year: int, out_dir: Path) -> dict[str, str]:
    """changes/<code>.xlsx for every project with more than one package version (its last two; a
    stale file of a project that no longer has two is removed). A file whose versions, their
    findings' keys (validation, money) and code are as when it was written is left alone. Returns project -> that key (the feedback keys on it)."""
    with engine.connect() as conn:
        versions: dict[str, list[tuple]] = defaultdict(list)
        for p in store.package_versions(conn, year):
            versions[p.project_code].append((p.id, p.validated_key))
        written = store.fingerprints(conn, year, _CHANGES)
        money = store.fingerprints(conn, year, RECONCILIATION_KEYS)  # the versions' money findings
        keys = {code: hashlib.sha256(f"{_CHANGES_CODE}:{found[-2:]}:{money.get(code)}".encode()).hexdigest()
                for code, found in versions.items() if len(found) > 1}
        changed: dict[str, str | None] = {}
        for code, key in sorted(keys.items()):
            name = f"{code}.xlsx"
            if written.get(name) != key or not (out_dir / name).exists():
                write_changes(out_dir / name, package_changes(conn, year, code), year)
                changed[name] = key
    for name in written.keys() - {f"{code}.xlsx" for code in keys}:
        (out_dir / name).unlink(missing_ok=True)
        changed[name] = None
    with engine.begin() as conn:
        store.set_fingerprints(conn, year, _CHANGES, changed)
    return keys


def sample_labelled(frame: pd.DataFrame, registry: YearRegistry) -> pd.DataFrame:
    """A sample year's (示例) table with a last column saying so; a real year's as it is."""
    return frame.assign(sample=SAMPLE_LABEL) if registry.sample else frame


_FEEDBACK = "feedback/"  # fingerprints of the feedback files, by file name
_FEEDBACK_CODE = code_hash(feedback)  # a changed workbook layout rewrites every file once


# The reconciliation.csv columns a cover's money sentence is made of (feedback.money_sentence's arguments).
_MONEY_SENTENCE = ("funding_source", "granted", "spent", "balance", "refund_to", "refund_declared", "status")


def project_money(money: pd.DataFrame) -> dict[str, feedback.ProjectMoney]:
    """project -> what its feedback says of its money: final, provisional, or unreconciled because no
    package arrived or its amounts/sources could not be read; and its figures per funding source.
    One pass over the rows (a groupby of a national year's 5,000 projects took 1.6 s)."""
    reconciled, packaged, provisional, lines = set(), set(), set(), defaultdict(list)
    columns = ["project_code", "package", "provisional", *_MONEY_SENTENCE]
    for code, package, is_provisional, *figures in money[columns].itertuples(index=False, name=None):
        if package:
            packaged.add(code)
        if is_provisional:
            provisional.add(code)
        sentence = dict(zip(_MONEY_SENTENCE, figures))
        if sentence["status"] != "unreconciled":
            reconciled.add(code)
            lines[code].append(feedback.money_sentence(**sentence))

    def state(code: str) -> str:
        if code not in reconciled:
            return "unreadable" if code in packaged else "no_package"
        return "provisional" if code in provisional else "final"

    return {code: feedback.ProjectMoney(state(code), tuple(lines[code])) for code in dict.fromkeys(money["project_code"])}


def write_feedback_workbooks(engine: Engine, registry: YearRegistry, projects: pd.DataFrame, issues: pd.DataFrame,
                             out_dir: Path, *, version_keys: dict[str, str] | None = None, versions: str = "",
                             money: dict[str, feedback.ProjectMoney] | None = None) -> Path:
    """feedback/<code>.xlsx for every registered project with something to act on: its findings, and
    a marked copy of its workbook where a finding points at a cell. A project with no finding gets none (a stale one is removed).
    A file whose project, status and findings are as when it was last written is left as it is, so a
    backfill rewrites only what it changed (a file costs ~20 ms). A project with several package
    versions gets a 版本变更 sheet (version_keys: project -> its changes' key, write_changes_workbooks);
    `versions` (rule set and registry) goes on every cover."""
    year = registry.year
    version_keys = version_keys or {}
    # Positions of each project's findings, and one hash per finding for the whole table at once: a
    # national year has thousands of projects, of which a backfill changes a few.
    rows_of = issues.groupby("project_code").indices if len(issues) else {}
    hashes = pd.util.hash_pandas_object(issues, index=False).to_numpy() if len(issues) else None
    with engine.connect() as conn:
        written = store.fingerprints(conn, year, _FEEDBACK)
    wanted: dict[str, str] = {}
    for row in projects.itertuples(index=False):
        positions = rows_of.get(row.project_code)
        if positions is not None:
            wanted[row.project_code] = _fingerprint((*row, (money or {}).get(row.project_code)), hashes[positions],
                                                    versions + version_keys.get(row.project_code, ""))
    todo = [code for code, fp in wanted.items()
            if written.get(f"{code}.xlsx") != fp or not (out_dir / f"{code}.xlsx").exists()]
    changes: dict[str, str | None] = {}
    for name in written:
        code = name.removesuffix(".xlsx")
        if code not in wanted:
            (out_dir / name).unlink(missing_ok=True)
            changes[name] = None
    rows = {row.project_code: row for row in projects.itertuples(index=False)}
    # Each project's findings cut once from the year's columns (a frame slice per project cost more).
    columns = feedback.finding_columns(issues)
    findings_of = {code: {name: [values[i] for i in rows_of[code]] for name, values in columns.items()} for code in todo}
    with engine.connect() as conn:
        in_use = {p.project_code: p.id for p in store.package_versions(conn, year, todo)}  # the newest wins
        # The unit's sheets as intake read them (the workbook itself only where intake kept no grids of it),
        # for the projects whose feedback copies them.
        copied = [pid for code, pid in in_use.items() if feedback.needs_copy(findings_of[code], rows[code].package)]
        grids = store.package_grids(conn, copied, READER_KEY)
        blobs = store.package_blobs(conn, [pid for pid in copied if pid not in grids])
        sheets = store.package_sheets(conn, copied)
        diffs = {code: package_changes(conn, year, code) for code in todo if code in version_keys}
    sheets_of: dict[int, dict[str, dict]] = defaultdict(dict)
    for (package_id, sheet), found in sheets.items():
        sheets_of[package_id][sheet] = found
    def jobs() -> Iterator[dict]:
        for code in todo:
            row, package_id = rows[code], in_use.get(code)
            yield dict(
                path=out_dir / f"{row.project_code}.xlsx", year=registry.year,
                project=dict(code=row.project_code, host_unit=row.host_unit, project_name=row.project_name,
                             level=row.level, type=row.type),
                status=row.status, package=row.package,
                findings=findings_of[code],
                workbook=blobs[package_id][0] if package_id in blobs else None, unit_grids=grids.get(package_id),
                sheets=sheets_of[package_id] if package_id is not None else {},
                deadline=registry.deadline.isoformat(), changes=diffs.get(code), versions=versions,
                money=(money or {}).get(code), sample=registry.sample,
            )

    # Written across the worker pool: a big workbook's copy reads the unit's bytes again.
    for job, outcome in map_isolated(_write_feedback, jobs()):
        if isinstance(outcome, WorkerFailure):  # the unit's copy could not be made: cover and list still go
            feedback.write_feedback(**{**job, "workbook": None, "unit_grids": None})
        changes[job["path"].name] = wanted[job["path"].stem]
    with engine.begin() as conn:
        store.set_fingerprints(conn, year, _FEEDBACK, changes)
    return out_dir


def _write_feedback(job: dict) -> Path:
    return feedback.write_feedback(**job)


def _fingerprint(project_row, finding_hashes: np.ndarray, extra: str) -> str:
    """What a feedback workbook is made of: the code that writes it, the project's state, every
    finding (pandas' row hashes are stable from run to run), as exported, and `extra` (the versions
    on its cover, its changes' key)."""
    digest = hashlib.sha256(f"{_FEEDBACK_CODE}:{extra}".encode("utf-8"))
    digest.update(repr(tuple(project_row)).encode("utf-8"))
    digest.update(finding_hashes.tobytes())
    return digest.hexdigest()


@dg.asset(deps=[national_sync, service_indicators], partitions_def=year_partitions, backfill_policy=single_run, group_name="reports",
          kinds={"csv"})
def year_exports(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    registry: RegistryResource,
    exports: ExportResource,
) -> dg.MaterializeResult:
    """年度导出文件，写入 <导出目录>/<年度>/：projects.csv（每个立项项目的状态）、issues.csv（全部问题清单）、
    reconciliation.csv（按项目和经费来源的对账）、summary.xlsx（市人社局汇总工作簿：汇总表、问题清单、
    结余退回、国家系统报送、豁免记录、本次变化）、feedback/<项目编号>.xlsx（发给依托单位的问题清单及标注副本）、
    changes/<项目编号>.xlsx（多次报送项目的版本变更）和 manifest.json（规则版本、登记册版本及各文件哈希）。"""
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        written = write_year_exports(warehouse.engine(), registry.year(year), exports.year_dir(year),
                                     run_id=context.run.run_id, registry_path=registry.path or None,
                                     previous_year=previous_registry(registry, year))
        projects, issues = written["projects"], written["issues"]
        by_status = {PROJECT_STATUS_ZH.get(s, s): n for s, n in projects["status"].value_counts().items()}
        by_rule = issues.groupby(["rule_id", "severity"]).size().reset_index(name="count")
        metadata[f"{year} 项目状态"] = dg.MetadataValue.json(by_status)
        by_rule = by_rule.rename(columns={"rule_id": "规则", "severity": "级别", "count": "问题数"})
        by_rule["级别"] = by_rule["级别"].map(SEVERITY_ZH)
        by_rule["名称"] = by_rule["规则"].map(lambda r: RULES[r].title)
        metadata[f"{year} 问题数（按规则）"] = dg.MetadataValue.md(by_rule.to_markdown(index=False) if len(by_rule) else "无")
        metadata[f"{year} projects.csv"] = dg.MetadataValue.path(str(written["projects_csv"].resolve()))
        metadata[f"{year} issues.csv"] = dg.MetadataValue.path(str(written["issues_csv"].resolve()))
        metadata[f"{year} reconciliation.csv"] = dg.MetadataValue.path(str(written["reconciliation_csv"].resolve()))
        metadata[f"{year} indicators.csv"] = dg.MetadataValue.path(str(written["indicators_csv"].resolve()))
        metadata[f"{year} summary.xlsx"] = dg.MetadataValue.path(str(written["summary_xlsx"].resolve()))
        metadata[f"{year} feedback"] = dg.MetadataValue.path(str(written["feedback"].resolve()))
        metadata[f"{year} manifest.json"] = dg.MetadataValue.path(str(written["manifest"].resolve()))
        # A waiver that covers nothing (the unit fixed it, or a mistyped scope) is the operator's to look at.
        idle = unmatched(written["waivers"])
        metadata[f"{year} 未匹配任何问题的豁免"] = dg.MetadataValue.md(
            idle[["id", "project_code", "rule_id", "package", "sheet", "row", "recorded_by", "reason"]]
            .to_markdown(index=False) if len(idle) else "无")
        if len(idle):
            context.log.warning(f"{year}: waivers matching no finding: {', '.join(map(str, idle['id']))}")
        context.log.info(f"exports for {year}: {by_status}, {len(issues)} findings")
    return dg.MaterializeResult(metadata=metadata)
