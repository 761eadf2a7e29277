"""Validation: the unit's sheets against the pandera schemas, and the package's materials against
what the sheets list. Every verdict becomes a Finding at the sheet, row and column the unit typed.

Works on a batch of packages at once (one pandera call per sheet for the whole batch), because
pandera's cost is mostly per call: a year of small packages validates as fast as one big one.
"""


import json
import os
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import chain
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import Engine

from adapters.registry import LEVEL_ZH, RegisteredProject, YearRegistry
from adapters.resources import RegistryResource, WarehouseResource
from adapters.warehouse import store
from assets.incremental import code_hash, digest
from assets.intake import package_intake
from assets.materials import materials_findings
from assets.partitions import forced_projects, single_run, year_partitions, years_of_run
from adapters.workbook import UnreadableWorkbook
from adapters.workers import WorkerFailure, map_isolated
from assets.isolation import limit_finding
from assets.progress import Progress
from assets.sheets import READER_KEY, ParsedSheet, Reading, SheetsRead, load_reading, read_sheets, reading_of
from schemas.catalog import SEVERITY_ZH
from schemas.findings import Finding, make_finding
from schemas.layout import EXPENSES, LAYOUTS, REFUSED_CATEGORIES, SOURCES_BY_LEVEL, SheetLayout
from schemas.sheets import FIELD_KINDS, failure_cases, prepare
from schemas.values import amount_of, uscc_problem

# When one cell breaks several rules, the unit hears about the most basic one only.
_PRIORITY = ["S011", "S001", "S003", "S002", "S006", "S004", "S005", "S009", "P006", "S007", "S010", "S008", "M004"]


@dataclass
class PackageSheets:
    """What validation needs of one package: its parsed sheets and its project's context."""

    package_id: int
    year: int
    project: RegisteredProject
    sheets: dict[str, ParsedSheet]  # by template sheet name; absent optional sheets are missing


def validate_sheets(batch: list[PackageSheets]) -> tuple[dict[int, list[Finding]], dict[str, pd.DataFrame]]:
    """Schema findings (S001–S010, P006, M004) per package id, one pandera call per sheet; and each
    sheet's batch frame with its values read (see schemas.sheets.prepare), for the typed rows."""
    findings: dict[int, list[Finding]] = defaultdict(list)
    prepared: dict[str, pd.DataFrame] = {}
    for layout in LAYOUTS:
        present = [p for p in batch if layout.name in p.sheets]
        for package in present:
            findings[package.package_id].extend(missing_columns(layout, package.sheets[layout.name]))
            findings[package.package_id].extend(unreadable_total(package.sheets[layout.name]))
        frame = _batch_frame(layout, present)
        if frame.empty:
            continue
        prepared[layout.name] = prepare(frame)
        cases = failure_cases(layout.name, prepared[layout.name])
        by_id = {p.package_id: p for p in present}
        for package_id, finding in _failures_to_findings(layout, cases, frame, by_id):
            findings[package_id].append(finding)
    return {pid: _one_per_cell(items) for pid, items in findings.items()}, prepared


def missing_columns(layout: SheetLayout, sheet: ParsedSheet) -> list[Finding]:
    return [
        make_finding("S001", sheet=sheet.typed_name, column=column.header)
        for column in layout.columns
        if column.required and column.field not in sheet.headers
    ]


def unreadable_total(sheet: ParsedSheet) -> list[Finding]:
    """The 合计 row stands outside the table the schema checks, but its amount must read too (S002)."""
    if sheet.total is None:
        return []
    row, typed = sheet.total
    if not typed.strip() or amount_of(typed).readable:
        return []
    header = sheet.headers.get("amount", EXPENSES.column("amount").header)
    kind, example = FIELD_KINDS["amount"]
    return [make_finding("S002", sheet=sheet.typed_name, row=row, column=header, value=typed, kind=kind, example=example)]


def _batch_frame(layout: SheetLayout, packages: list[PackageSheets]) -> pd.DataFrame:
    """The sheet of every package in one frame (index 0..n-1): its Excel row, its cells, and the
    context its checks need per row (package, program year, project level, registered unit).

    A column one package lacks (S001 reports it) is NA in that package's rows: pandera's column
    checks skip NA and the frame-wide checks pass blank cells, so it raises nothing else there."""
    packages = [package for package in packages if package.sheets[layout.name].excel_rows]
    if not packages:
        return pd.DataFrame()
    sheets = [package.sheets[layout.name] for package in packages]
    # Context texts as categories: a few distinct values over a million rows, and a frame with one
    # block of text (the cells) is not copied again to consolidate blocks.
    context = pd.DataFrame({
        "package_id": [package.package_id for package in packages],
        "program_year": [package.year for package in packages],
        "level": pd.Categorical([package.project.level for package in packages]),
        "registered_units": pd.Categorical(["\n".join(package.project.unit_names()) for package in packages]),
        "registered_uscc": pd.Categorical([package.project.uscc or "" for package in packages]),
    })
    # One concat for the cells and one take for the context: assigning context columns package by
    # package costs more than the data.
    per_row = context.take(np.repeat(np.arange(len(packages)), [len(sheet.excel_rows) for sheet in sheets]))
    # The cells as one array per field, made once for the batch (fields in the order the packages name
    # them). Typed arrays: from plain lists pandas would first infer what the million texts are.
    cells = {"excel_row": np.fromiter(chain.from_iterable(sheet.excel_rows for sheet in sheets), dtype=np.int64)}
    for f in dict.fromkeys(f for sheet in sheets for f in sheet.cells):
        cells[f] = np.array(list(chain.from_iterable(sheet.cells.get(f) or [np.nan] * len(sheet.excel_rows)
                                                     for sheet in sheets)), dtype=object)
    return pd.concat([pd.DataFrame(cells), per_row.reset_index(drop=True)], axis=1)


def _failures_to_findings(
    layout: SheetLayout, cases: pd.DataFrame, frame: pd.DataFrame, packages: dict[int, PackageSheets]
) -> list[tuple[int, Finding]]:
    cells = _failing_cells(cases)
    # The failing rows only, as dicts: a pandas row lookup per failure costs more than the checks.
    rows = frame.loc[cells["index"].unique()].to_dict("index")
    failures = [(rule_id, column, rows[index]) for rule_id, column, index in cells.itertuples(index=False)]
    vouchers = _voucher_rows([row for rule_id, _, row in failures if rule_id == "S007"])
    out = []
    for rule_id, column, row in failures:
        package = packages[int(row["package_id"])]
        out.append((package.package_id, _finding(rule_id, layout, package, column, row, vouchers)))
    return out


def _failing_cells(cases: pd.DataFrame) -> pd.DataFrame:
    """(rule_id, column, index) of each failing cell, out of pandera's failure cases. Checks are named
    RULE, or RULE:column when they judge the whole row (schemas.sheets runs them on that column)."""
    broken = cases[cases["index"].isna()]
    if len(broken):  # a check that raised: pandera reports it without a cell, and it must not pass silently
        raise RuntimeError(f"checks failed to run: {broken[['check', 'failure_case']].to_dict('records')}")
    rule_of = {check: str(check).partition(":")[0] for check in cases["check"].unique()}
    return pd.DataFrame({"rule_id": cases["check"].map(rule_of), "column": cases["column"],
                         "index": cases["index"].astype(int)})


def _finding(rule_id: str, layout: SheetLayout, package: PackageSheets, column: str, row,
             vouchers: dict[tuple[int, str], list[int]]) -> Finding:
    sheet = package.sheets[layout.name]
    header = sheet.headers.get(column, layout.column(column).header)
    excel_row = sheet.rows.get(column) if layout.key_value else int(row["excel_row"])
    value = str(row[column])
    place = dict(sheet=sheet.typed_name, row=excel_row, column=header, value=value)
    if rule_id == "S002":
        kind, example = FIELD_KINDS[column]
        return make_finding("S002", **place, kind=kind, example=example)
    if rule_id == "S004":
        detail = "不允许从专项经费列支" if value.strip() in REFUSED_CATEGORIES else "不是模板规定的支出科目"
        return make_finding("S004", **place, detail=detail)
    if rule_id == "S005":
        level = package.project.level
        return make_finding("S005", **place, level=LEVEL_ZH[level], allowed="、".join(SOURCES_BY_LEVEL[level]))
    if rule_id == "S006":
        detail = "超过两位小数" if (amount_of(value).decimals or 0) > 2 else "不是正数"
        return make_finding("S006", **place, detail=detail)
    if rule_id == "S007":
        others = [str(r) for r in vouchers[(package.package_id, value.strip())] if r != excel_row]
        return make_finding("S007", **place, other_rows="、".join(others))
    if rule_id == "S008":
        return make_finding("S008", **place, year=package.year)
    if rule_id == "S009":
        return make_finding("S009", **place, detail=uscc_problem(value) or "")
    if rule_id == "P006":
        expected = package.project.host_unit if column == "host_unit" else package.project.uscc
        return make_finding("P006", **place, expected=expected)
    if rule_id == "M004":
        photo = str(row.get("file_name") or "")
        return make_finding("M004", **place, photo=photo)
    return make_finding(rule_id, **place)


def _voucher_rows(repeated: list[dict]) -> dict[tuple[int, str], list[int]]:
    """(package, voucher) -> its Excel rows in order, for S007's message, from the rows S007 failed:
    every row of a repeated voucher fails S007, so they are all there."""
    rows: dict[tuple[int, str], list[int]] = defaultdict(list)
    for row in repeated:
        rows[(int(row["package_id"]), str(row["voucher_no"]).strip())].append(int(row["excel_row"]))
    return {key: sorted(excel_rows) for key, excel_rows in rows.items()}


def _one_per_cell(findings: list[Finding]) -> list[Finding]:
    rank = {rule_id: i for i, rule_id in enumerate(_PRIORITY)}
    best: dict[tuple, Finding] = {}
    for finding in findings:
        key = (finding.sheet, finding.row, finding.column)
        kept = best.get(key)
        if kept is None or rank.get(finding.rule_id, 99) < rank.get(kept.rule_id, 99):
            best[key] = finding
    return sorted(best.values(), key=lambda f: (f.sheet, f.row or 0, f.column, f.rule_id))


def expense_lines(prepared: pd.DataFrame | None) -> dict[str, list]:
    """The batch's expense lines as the warehouse stores them, column by column (store.EXPENSE_COLUMNS),
    from the values validation already read: amount in fen and ISO date, None where they could not be read.

    Columns, not rows: for PostgreSQL a worker hands them back pickled, and ten lists of a million values
    pickle and travel in half the time of a million tuples; the parent zips them into rows as it inserts.
    For SQLite the worker writes them to a file the parent copies in (store.RowsFile)."""
    if prepared is None or prepared.empty:
        return {}

    def text(field: str) -> list[str]:
        """The cells as typed, '' where a package lacks the column (pandas' fillna and astype took 2.5x)."""
        if field not in prepared:
            return [""] * len(prepared)
        return [cell if type(cell) is str else "" if cell is None or cell != cell else str(cell)
                for cell in prepared[field].tolist()]

    def readable(field: str) -> list:
        values = prepared[field] if field in prepared else pd.Series(pd.NA, index=prepared.index)
        return values.astype(object).where(values.notna(), None).tolist()

    return {
        "package_id": prepared["package_id"].astype(int).tolist(),
        "excel_row": prepared["excel_row"].astype(int).tolist(),
        "spent_on": _days(prepared["spent_on__date"]) if "spent_on__date" in prepared else [None] * len(prepared),
        "category": [category.strip() for category in text("category")],
        # As the checks judged it: prepare's clean_text of the column (schemas.sheets.CLEANED_FIELDS).
        "funding_source": (prepared["funding_source__text"].tolist() if "funding_source__text" in prepared
                           else [""] * len(prepared)),
        "amount_fen": readable("amount__fen"),
        "amount_typed": text("amount"),
        "payee": text("payee"),
        "voucher_no": [voucher.strip() for voucher in text("voucher_no")],
        "summary": text("summary"),
    }


def expense_totals(lines: dict[str, list]) -> list[tuple]:
    """The batch's expense lines (expense_lines' columns) counted per package, funding source and category,
    in store.EXPENSE_TOTAL_COLUMNS order: lines, lines with their amount read, those amounts' fen."""
    if not lines:
        return []
    amounts = pd.Series(lines["amount_fen"], dtype="Int64")  # exact: integer fen, None where unread
    frame = pd.DataFrame({"package_id": lines["package_id"], "funding_source": lines["funding_source"],
                          "category": lines["category"], "read": amounts.notna(), "fen": amounts.fillna(0)})
    counted = frame.groupby(["package_id", "funding_source", "category"], sort=True).agg(
        lines=("read", "size"), amounts=("read", "sum"), fen=("fen", "sum"))
    return [(int(package_id), source, category, int(n), int(read), int(fen))
            for (package_id, source, category), n, read, fen
            in zip(counted.index, counted["lines"], counted["amounts"], counted["fen"])]


def _days(dates: pd.Series) -> list:
    """The ISO date per cell (None for NaT), formatting each distinct date once: a year's lines share a
    few hundred dates. Text is what the database keeps for a date on SQLite (as SQLAlchemy's Date writes
    it) and reads on PostgreSQL, and the driver binds it without a Python call per row."""
    codes, distinct = pd.factorize(dates)
    days = [day.date().isoformat() for day in distinct] + [None]  # code -1 (NaT) picks the None
    return [days[code] for code in codes]


def validation_key(project: RegisteredProject, package, newer: str) -> str:
    """What a version's findings depend on besides its own (immutable) content: the rules' code,
    the project's registry entry and the version that supersedes it. A run re-validates a version
    only when this changes, so a late package costs itself and the versions it supersedes."""
    return digest(_RULES_CODE, project, package.intake_status, newer)


def _rules_code() -> str:
    from adapters import workbook
    from assets import materials, sheets
    from schemas import catalog, findings, layout, sheets as schema_sheets, values

    return code_hash(workbook, materials, sheets, catalog, findings, layout, schema_sheets, values, sys.modules[__name__])


_RULES_CODE = _rules_code()
# Versions validated together: pandera's cost is mostly per call, memory grows with the batch.
_BATCH_PACKAGES = 250
# Each worker holds one batch's frames. Of versions with a reading, what they hold is counted in rows: at
# 120,000 the run's process tree peaks at ~1.2 GiB over a million lines, and a year of small packages
# still validates 250 at a time. Of versions read afresh, in bytes of their files (~25x that for a CSV):
# at 8 MiB ~1.8 GiB (16 MiB: 2.0-2.1 GiB, as fast). Either way the pool has several batches to overlap
# with the parent's writes.
_BATCH_ROWS = 120_000
_BATCH_BYTES = 8 << 20


@dataclass
class _Version:
    """A package version to validate, with what its key is made of; its blobs once its batch loads them.
    Plain data: batches travel to a worker process."""

    package_id: int
    project_code: str
    readable: bool  # intake could read it (not refused)
    project: RegisteredProject
    newer: str  # the name of the version superseding it; "" for the one in use
    key: str
    reading: bytes | None = None  # intake's reading of the workbook (assets.sheets.dump_reading)
    workbook: bytes | None = None  # the unit's files, loaded only when there is no reading by this code
    expenses_csv: bytes | None = None
    files: list[dict] = field(default_factory=list)  # the package's member listing (path, size)


@dataclass
class _Batch:
    year: int
    versions: list[_Version]
    rows_dir: str | None = None  # where the worker writes the batch's expense lines (store.RowsFile), if anywhere


@dataclass
class _Outcome:
    """What validating a batch found, ready to store."""

    findings: list[dict]
    found_sheets: list[dict]
    sheet_rows: list[dict]
    expense_lines: dict[str, list] | store.RowsFile  # by column (see expense_lines), or written to a file
    readings: dict[int, Reading] = field(default_factory=dict)  # of the versions read afresh (no reading by this code)
    expense_totals: list[tuple] = field(default_factory=list)  # the lines counted (see expense_totals)


def validate_year(engine: Engine, registry: YearRegistry, forced: set[str] = frozenset(), log=None) -> int:
    """Validate the year's package versions whose validation key changed (and every version of the
    `forced` projects); the newest of a project is the one in use, older ones are superseded (P007).
    Batches are validated across the worker pool and each is committed with its keys as it comes back;
    a batch whose worker hit a limit is redone package by package, so only the package that cannot be
    read gets P008. Returns how many versions it validated."""
    year = registry.year
    with engine.connect() as conn:
        versions = store.package_versions(conn, year)
    by_project: dict[str, list] = defaultdict(list)
    for package in versions:
        by_project[package.project_code].append(package)
    todo: list[_Version] = []
    for code, packages in by_project.items():
        project = registry.project(code)
        if project is None:
            continue  # routed under an earlier registry; routing moves it on the next intake
        newest = packages[-1]
        for package in packages:
            newer = newest.name if package is not newest else ""
            key = validation_key(project, package, newer)
            if key != package.validated_key or code in forced:
                todo.append(_Version(package.id, code, package.intake_status == "readable", project, newer, key))
    progress = Progress(f"validation {year}", len(todo), log)
    # A SQLite warehouse takes each batch's expense lines from a file its worker wrote (store.RowsFile).
    with store.rows_scratch(engine) as rows_dir:
        _validate(engine, year, todo, rows_dir, progress, log)
    progress.done()
    return len(todo)


def _validate(engine: Engine, year: int, todo: list[_Version], rows_dir: str | None, progress: Progress, log) -> None:
    retry: list[_Version] = []
    for batch, outcome in map_isolated(validate_batch, _batches(engine, year, todo, rows_dir)):
        if isinstance(outcome, WorkerFailure) and len(batch.versions) > 1:
            if log is not None:
                log.warning(f"validation {year}: a batch of {len(batch.versions)} versions hit a worker limit "
                            f"({outcome.limit}: {outcome.detail}); validating them one by one")
            retry += batch.versions
            continue
        _store(engine, batch, outcome)
        progress.advance(len(batch.versions))
    # One version at a time: the one a reader cannot survive is found, the others validate normally.
    singles = (_Batch(year, [version], rows_dir) for version in retry)
    for batch, outcome in map_isolated(validate_batch, singles):
        if isinstance(outcome, WorkerFailure) and log is not None:  # P008 for the unit; the detail for us
            log.warning(f"validation {year}: package {batch.versions[0].package_id} hit a worker limit "
                        f"({outcome.limit}: {outcome.detail})")
        _store(engine, batch, outcome)
        progress.advance(1)


def _batches(engine: Engine, year: int, todo: list[_Version], rows_dir: str | None) -> Iterator[_Batch]:
    """The work in batches of a few hundred versions (or _BATCH_ROWS of rows read, _BATCH_BYTES of files
    to read), loaded per batch: a year is never held in memory at once. Each version comes with intake's
    reading of its workbook; the unit's files themselves only where that reading was made by other code."""
    for start in range(0, len(todo), _BATCH_PACKAGES):
        part = todo[start:start + _BATCH_PACKAGES]
        ids = [version.package_id for version in part]
        with engine.connect() as conn:
            readings = store.package_readings(conn, ids, READER_KEY)
            blobs = store.package_blobs(conn, [pid for pid in ids if pid not in readings])
            files = store.package_files(conn, ids)
        batch, rows, size = [], 0, 0
        for version in part:
            if version.package_id in readings:
                version.reading, read_rows = readings[version.package_id]
                rows += read_rows
            else:
                version.workbook, version.expenses_csv = blobs[version.package_id]
                size += len(version.workbook or b"") + len(version.expenses_csv or b"")
            version.files = [dict(path=f.path, size=f.size) for f in files[version.package_id]]
            batch.append(version)
            if rows >= _BATCH_ROWS or size >= _BATCH_BYTES:
                yield _Batch(year, batch, rows_dir)
                batch, rows, size = [], 0, 0
        if batch:
            yield _Batch(year, batch, rows_dir)


def validate_batch(batch: _Batch) -> _Outcome:
    """Read and validate a batch of package versions (in a worker process): plain data in, rows out."""
    sheets_batch: list[PackageSheets] = []
    extra: dict[int, list[Finding]] = defaultdict(list)
    formulas: dict[int, list[Finding]] = {}
    found_sheets, sheet_rows = [], []
    readings: dict[int, Reading] = {}
    for version in batch.versions:
        if version.newer:
            extra[version.package_id].append(make_finding("P007", newer=version.newer))
        if not version.readable:
            continue
        if version.reading is not None:
            read = load_reading(version.reading)
        else:  # read before the reading code changed (or refused its whole reading): read it afresh, and keep that
            try:
                read = read_sheets(version.workbook, version.expenses_csv)
            except UnreadableWorkbook:
                extra[version.package_id].append(make_finding("P001", detail="工作簿无法打开"))
                continue
            readings[version.package_id] = reading_of(read)
        extra[version.package_id] += [
            make_finding("P001", sheet=typed, detail=f"工作表“{typed}”已损坏、无法读取，请用 Excel/WPS 打开后另存")
            for typed in read.unreadable.values()]
        sheets = read.sheets
        sheets_batch.append(PackageSheets(version.package_id, batch.year, version.project, sheets))
        formulas[version.package_id] = formula_findings(read)
        extra[version.package_id] += materials_findings(sheets, version.files)
        found, rows = _rows_to_store(version.package_id, sheets)
        found_sheets += found
        sheet_rows += rows
    schema, prepared = validate_sheets(sheets_batch)
    findings = [
        store.finding_row(batch.year, version.package_id, version.project_code, f)
        for version in batch.versions
        # A formula cell without its value reads empty: the unit hears S011 there, not S003.
        for f in [*_one_per_cell([*schema.get(version.package_id, []), *formulas.get(version.package_id, [])]),
                  *extra.get(version.package_id, [])]
    ]
    lines = expense_lines(prepared.get(EXPENSES.name))
    totals = expense_totals(lines)
    if lines and batch.rows_dir is not None:
        path = os.path.join(batch.rows_dir, f"{batch.versions[0].package_id}-{uuid.uuid4().hex}.db")
        lines = store.write_rows_file(path, store.EXPENSE_COLUMNS, _rows(lines)) or lines  # the columns, should it fail
    return _Outcome(findings, found_sheets, sheet_rows, lines, readings, totals)


def _rows(lines: dict[str, list]) -> Iterator[tuple]:
    """expense_lines' columns as rows in store.EXPENSE_COLUMNS order (none for a batch without lines)."""
    return zip(*(lines[column] for column in store.EXPENSE_COLUMNS)) if lines else iter(())


def formula_findings(read: SheetsRead) -> list[Finding]:
    """S011: each cell the pipeline reads (a field's cell of a data row, or the 合计 amount) that holds a
    formula with no calculated value."""
    findings = []
    for name, cells in read.formulas_without_value.items():
        sheet = read.sheets[name]
        field_of = {column + 1: f for f, column in sheet.columns.items()}  # 1-based column -> field
        rows = set(sheet.rows.values()) if sheet.layout.key_value else set(sheet.excel_rows)
        if sheet.total is not None:
            rows.add(sheet.total[0])
        for row, column in cells:
            if row in rows and column in field_of:
                findings.append(make_finding("S011", sheet=sheet.typed_name, row=row,
                                             column=sheet.headers[field_of[column]]))
    return findings


def _store(engine: Engine, batch: _Batch, outcome: _Outcome | WorkerFailure) -> None:
    """A batch's findings, parsed rows and keys in one transaction: a crash leaves the batch to redo."""
    if isinstance(outcome, WorkerFailure):  # one version (batches are retried one by one)
        version = batch.versions[0]
        found = [make_finding("P007", newer=version.newer)] if version.newer else []
        found.append(limit_finding(outcome))
        rows = [store.finding_row(batch.year, version.package_id, version.project_code, f) for f in found]
        outcome = _Outcome(rows, [], [], {})
    ids = [version.package_id for version in batch.versions]
    lines = outcome.expense_lines
    written = lines if isinstance(lines, store.RowsFile) else None
    with engine.connect() as conn, store.attached_rows(conn, written):
        with conn.begin():
            store.replace_findings(conn, "validation", outcome.findings, package_ids=ids)
            store.replace_parsed_rows(conn, ids, outcome.found_sheets, outcome.sheet_rows, written or _rows(lines),
                                      outcome.expense_totals)
            store.put_readings(conn, READER_KEY, outcome.readings)
            store.set_validated(conn, {version.package_id: version.key for version in batch.versions})


def _rows_to_store(package_id: int, sheets: dict[str, ParsedSheet]) -> tuple[list[dict], list[dict]]:
    """Every parsed row but the expense lines (see expense_lines), as typed, traceable to package,
    sheet and Excel row; and each sheet's name and headers as the unit typed them, with positions."""
    found = [
        dict(package_id=package_id, sheet=name, typed_name=sheet.typed_name, header_row=sheet.header_row,
             headers=json.dumps({f: [sheet.headers[f], sheet.columns.get(f)] for f in sheet.headers}, ensure_ascii=False))
        for name, sheet in sheets.items()
    ]
    sheet_rows: list[dict] = []
    for name, sheet in sheets.items():
        if name == EXPENSES.name:
            if sheet.total is not None:
                row, amount = sheet.total
                sheet_rows.append(dict(package_id=package_id, sheet=name, excel_row=row,
                                       data=json.dumps({"declared_total": amount}, ensure_ascii=False)))
            continue
        if sheet.layout.key_value:
            values = sheet.first_row()
            sheet_rows += [
                dict(package_id=package_id, sheet=name, excel_row=row,
                     data=json.dumps({"field": f, "header": sheet.headers[f], "value": values[f]}, ensure_ascii=False))
                for f, row in sheet.rows.items()
            ]
            continue
        fields = list(sheet.cells)
        sheet_rows += [
            dict(package_id=package_id, sheet=name, excel_row=row,
                 data=json.dumps(dict(zip(fields, values)), ensure_ascii=False))
            for row, values in zip(sheet.excel_rows, zip(*sheet.cells.values()))
        ]
    return found, sheet_rows



FINDINGS_CHECK = "no_fatal_findings"
_SHOWN_FINDINGS = 200


@dg.asset(
    deps=[package_intake],
    partitions_def=year_partitions,
    backfill_policy=single_run,
    group_name="validation",
    kinds={"pandera"},
    check_specs=[dg.AssetCheckSpec(FINDINGS_CHECK, asset="package_validation",
                                   description="材料包无致命问题：列出本年度校验发现的全部问题（工作表、行、列、填写值、整改说明）。")],
)
def package_validation(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: RegistryResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """校验：用 pandera 模型逐表校验各项目材料包的每个版本（基本信息、经费支出、服务活动、影像资料等），
    并核对工作总结、审计报告、照片是否齐全；旧版本标记为已被替代（P007）。
    只校验新到或有变化的版本（规则、登记信息或替代关系改变时自动重新校验），运行标签 etl/projects
    列出的项目全部重新校验。每个问题记录规则编号、工作表、Excel 行号、单位填写的列名与值，以及中文整改说明。"""
    engine = warehouse.engine()
    findings, counts = [], Counter()
    validated = 0
    for year in years_of_run(context):
        validated += validate_year(engine, registry.year(year), forced_projects(context), context.log)
        with engine.connect() as conn:
            # The UI shows a table of a few hundred rows well; the whole list is issues.csv.
            findings += store.findings(conn, year, limit=_SHOWN_FINDINGS)
            counts.update(store.finding_counts(conn, year))
    table = pd.DataFrame(
        [dict(项目=f.project_code, 材料包=f.package, 规则=f.rule_id, 级别=SEVERITY_ZH[f.severity], 工作表=f.sheet,
              行=f.row or "", 列=f.column, 填写值=f.value, 说明=f.message) for f in findings[:_SHOWN_FINDINGS]]
    )
    fatal = sum(n for (_, severity), n in counts.items() if severity == "fatal")
    by_rule: Counter = Counter()
    for (rule_id, _), n in counts.items():
        by_rule[rule_id] += n
    yield dg.MaterializeResult(metadata={
        "本次校验的材料包版本数": validated,
        "问题数（按规则）": dg.MetadataValue.json(dict(sorted(by_rule.items()))),
    })
    yield dg.AssetCheckResult(
        check_name=FINDINGS_CHECK,
        passed=fatal == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "致命问题数": fatal,
            "问题总数": sum(counts.values()),
            f"问题清单（前 {_SHOWN_FINDINGS} 条，全部见 issues.csv）": dg.MetadataValue.md(
                table.head(200).to_markdown(index=False) if len(table) else "无问题"),
        },
    )
