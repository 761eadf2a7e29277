"""The reads and bulk writes the stages make. SQLAlchemy Core, executemany for many rows.

Each stage owns its rows: re-running a stage for a package or a project deletes what that stage
wrote for it before inserting again, so every run is idempotent.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Select, bindparam, delete, func, insert, select, update

from adapters.registry import FUNDING_SOURCES, YearRegistry
from adapters.warehouse.models import (
    ExpenseLine,
    ExpenseTotal,
    ExportedProjectState,
    ExportFingerprint,
    FindingRow,
    GrantRule,
    NationalFiling,
    Package,
    PackageBlob,
    PackageFile,
    PackageReading,
    PackageSheet,
    ProgramYear,
    Project,
    ReconciliationRow,
    SheetRow,
    Waiver,
    WaiverRevocation,
)


def store_registry(conn: Connection, registry: YearRegistry) -> None:
    """Replace the year's registry rows with what the registry file says now."""
    year = registry.year
    for table in (Project, GrantRule, ProgramYear):
        conn.execute(delete(table).where(table.year == year))
    conn.execute(
        insert(ProgramYear),
        [dict(year=year, notice=registry.notice, deadline=registry.deadline, team_completion_date=registry.team_completion_date)],
    )
    conn.execute(
        insert(GrantRule),
        [
            dict(year=year, level=level, type=kind, funding_source=source, amount_fen=fen)
            for (level, kind), by_source in registry.grants.items()
            for source, fen in by_source.items()
        ],
    )
    conn.execute(
        insert(Project),
        [
            dict(year=year, code=p.code, level=p.level, type=p.type, host_unit=p.host_unit,
                 aliases="\n".join(p.aliases), project_name=p.project_name, uscc=p.uscc)
            for p in registry.projects
        ],
    )


def known_hashes(conn: Connection, year: int) -> dict[tuple[str, int, int], str]:
    rows = conn.execute(select(Package.name, Package.size, Package.mtime_ns, Package.sha256).where(Package.year == year))
    return {(name, size, mtime_ns): sha for name, size, mtime_ns, sha in rows}


def stored_versions(conn: Connection, year: int) -> set[tuple[str, str]]:
    return set(conn.execute(select(Package.name, Package.sha256).where(Package.year == year)).all())


def deflate_csv(data: bytes) -> bytes:
    """经费支出.csv as package_blob keeps it. The bench's million lines of plain text are 134 MB, deflated
    at zlib's fastest level 18 MB (0.39 s of CPU, spread over the package workers, which deflate it), so
    the parent and the database carry a seventh of the bytes (e2e 0.2-0.6 s faster, its warehouse
    304 -> 194 MB)."""
    return zlib.compress(data, 1)


def insert_packages(conn: Connection, packages: Sequence[tuple[dict, Sequence[dict], dict]]) -> list[int]:
    """Store package versions (each its row, its files and its blobs: workbook, expenses_csv_zlib) and
    return their ids, in order. Three statements for the lot: a national year's first intake stores thousands."""
    if not packages:
        return []
    ids = conn.execute(insert(Package).returning(Package.id, sort_by_parameter_order=True),
                       [values for values, _, _ in packages]).scalars().all()
    files = [dict(f, package_id=package_id) for package_id, (_, listed, _) in zip(ids, packages) for f in listed]
    if files:
        conn.execute(insert(PackageFile), files)
    blobs = [dict(blob, package_id=package_id) for package_id, (_, _, blob) in zip(ids, packages) if any(blob.values())]
    if blobs:
        conn.execute(insert(PackageBlob), blobs)
    return list(ids)


def year_packages(conn: Connection, year: int) -> list:
    """The year's package versions without their blobs (routing needs only what they declare)."""
    return conn.execute(
        select(Package.id, Package.declared_code, Package.declared_code_row,
               Package.declared_code_header, Package.project_code, Package.intake_status)
        .where(Package.year == year)
        .order_by(Package.id)
    ).all()


def assign_projects(conn: Connection, assignments: dict[int, str | None]) -> None:
    if assignments:  # one executemany: a national year routes thousands of packages in its first run
        conn.execute(update(Package).where(Package.id == bindparam("pid")).values(project_code=bindparam("code")),
                     [dict(pid=pid, code=code) for pid, code in assignments.items()])


def package_versions(conn: Connection, year: int, codes: Sequence[str] | None = None) -> list:
    """The year's package versions assigned to projects, oldest first: by received time (an
    operator's record, else the file time), then arrival order. A project's newest is its last.
    Without their workbooks: package_blobs reads those, for the versions that need them."""
    query = (select(Package.id, Package.name, Package.project_code, Package.modified_at, Package.received_at,
                    Package.intake_status, Package.validated_key)
             .where(Package.year == year, Package.project_code.is_not(None)))
    if codes is not None:
        query = query.where(Package.project_code.in_(list(codes)))
    return sorted(conn.execute(query).all(), key=lambda p: (p.received_at or p.modified_at, p.id))


def package_blobs(conn: Connection, package_ids: Sequence[int]) -> dict[int, tuple[bytes | None, bytes | None]]:
    """package id -> (workbook, 经费支出.csv) as the unit handed them in ((None, None): it had neither)."""
    b = PackageBlob
    rows = conn.execute(select(b.package_id, b.workbook, b.expenses_csv_zlib).where(b.package_id.in_(list(package_ids))))
    return {pid: (None, None) for pid in package_ids} | {
        pid: (workbook, None if csv is None else zlib.decompress(csv)) for pid, workbook, csv in rows}


def package_readings(conn: Connection, package_ids: Sequence[int], reader_key: str) -> dict[int, tuple[bytes, int]]:
    """package id -> (its reading's sheets, their rows) (assets.sheets.Reading), for the versions read by
    this reader code."""
    r = PackageReading
    found = conn.execute(select(r.package_id, r.sheets, r.rows)
                         .where(r.package_id.in_(list(package_ids)), r.reader_key == reader_key))
    return {package_id: (sheets, rows) for package_id, sheets, rows in found}


def package_grids(conn: Connection, package_ids: Sequence[int], reader_key: str) -> dict[int, bytes]:
    """package id -> the grids of its workbook's sheets (assets.sheets.dump_grids), where intake kept them."""
    r = PackageReading
    rows = conn.execute(select(r.package_id, r.grids).where(r.package_id.in_(list(package_ids)),
                                                            r.reader_key == reader_key, r.grids.is_not(None)))
    return dict(rows.all())


def put_readings(conn: Connection, reader_key: str, readings: dict[int, tuple[bytes, bytes | None, int]]) -> None:
    """Keep (or replace) the packages' readings made by this reader code: package id -> (sheets, grids,
    rows), as assets.sheets.Reading holds them."""
    if not readings:
        return
    conn.execute(delete(PackageReading).where(PackageReading.package_id.in_(list(readings))))
    conn.execute(insert(PackageReading), [dict(package_id=pid, reader_key=reader_key, sheets=sheets, grids=grids, rows=rows)
                                          for pid, (sheets, grids, rows) in readings.items()])


def set_validated(conn: Connection, keys: dict[int, str]) -> None:
    if keys:
        conn.execute(update(Package).where(Package.id == bindparam("pid")).values(validated_key=bindparam("key")),
                     [dict(pid=pid, key=key) for pid, key in keys.items()])


def newest_packages(conn: Connection, year: int) -> dict[str, object]:
    """project code -> the package version in use (its newest)."""
    return {p.project_code: p for p in package_versions(conn, year)}


def package_files(conn: Connection, package_ids: Sequence[int]) -> dict[int, list]:
    files: dict[int, list] = {pid: [] for pid in package_ids}
    for row in conn.execute(select(PackageFile).where(PackageFile.package_id.in_(list(package_ids)))).all():
        files[row.package_id].append(row)
    return files


def finding_row(year: int, package_id: int | None, project_code: str | None, finding) -> dict:
    """A Finding (schemas.findings) as a row of the finding table."""
    f = finding
    return dict(year=year, package_id=package_id, project_code=project_code, rule_id=f.rule_id,
                severity=str(f.severity), sheet=f.sheet, row=f.row, column=f.column, value=f.value, message=f.message)


def replace_findings(
    conn: Connection, stage: str, rows: Iterable[dict], *, package_ids: Sequence[int] = (), year: int | None = None,
    project_codes: Sequence[str] = (), unassigned: bool = False, whole_year: bool = False,
    values: Select | None = None,
) -> None:
    """Delete the stage's findings for these packages (or projects of a year, or the whole year, or
    of a year whose value is one the `values` query gives), then insert `rows`."""
    where = [FindingRow.stage == stage]
    if whole_year:
        conn.execute(delete(FindingRow).where(*where, FindingRow.year == year))
    if values is not None:
        conn.execute(delete(FindingRow).where(*where, FindingRow.year == year, FindingRow.value.in_(values.scalar_subquery())))
    if package_ids:
        conn.execute(delete(FindingRow).where(*where, FindingRow.package_id.in_(list(package_ids))))
    if project_codes:
        conn.execute(delete(FindingRow).where(*where, FindingRow.year == year, FindingRow.project_code.in_(list(project_codes))))
    if unassigned:
        conn.execute(delete(FindingRow).where(*where, FindingRow.year == year, FindingRow.project_code.is_(None)))
    rows = [dict(r, stage=stage) for r in rows]
    if rows:
        conn.execute(insert(FindingRow), rows)


EXPENSE_COLUMNS = ("package_id", "excel_row", "spent_on", "category", "funding_source", "amount_fen",
                   "amount_typed", "payee", "voucher_no", "summary")
# expense_total's (ExpenseTotal): a package's lines counted by funding source and category.
EXPENSE_TOTAL_COLUMNS = ("package_id", "funding_source", "category", "lines", "amounts", "fen")


def replace_parsed_rows(
    conn: Connection, package_ids: Sequence[int], sheets: list[dict], sheet_rows: list[dict],
    expense_lines: Iterable[tuple] | RowsFile, expense_totals: Sequence[tuple] = (),
) -> None:
    """Replace the packages' parsed rows. `expense_lines` are tuples in EXPENSE_COLUMNS order, the date
    as an ISO date (text is how SQLAlchemy's Date keeps it on SQLite; PostgreSQL casts it), or a
    RowsFile of them attached to `conn` (attached_rows); `expense_totals`, those lines counted
    (EXPENSE_TOTAL_COLUMNS order)."""
    ids = list(package_ids)
    for table in (PackageSheet, SheetRow, ExpenseLine, ExpenseTotal):
        conn.execute(delete(table).where(table.package_id.in_(ids)))
    if expense_totals:
        bulk_insert(conn, ExpenseTotal.__tablename__, EXPENSE_TOTAL_COLUMNS, expense_totals)
    if sheets:
        conn.execute(insert(PackageSheet), sheets)
    if sheet_rows:
        columns = ("package_id", "sheet", "excel_row", "data")
        bulk_insert(conn, SheetRow.__tablename__, columns, [tuple(r[c] for c in columns) for r in sheet_rows])
    if isinstance(expense_lines, RowsFile):
        names = ", ".join(EXPENSE_COLUMNS)
        conn.exec_driver_sql(f"INSERT INTO {ExpenseLine.__tablename__} ({names}) SELECT {names} FROM {_ATTACHED}.rows")
    else:
        bulk_insert(conn, ExpenseLine.__tablename__, EXPENSE_COLUMNS, expense_lines, nullable=("spent_on", "amount_fen"))


@dataclass(frozen=True)
class RowsFile:
    """Rows a package worker wrote into a SQLite file of their own (write_rows_file). The warehouse takes
    them in one INSERT … SELECT, record by record inside SQLite, where an executemany binds every value
    from Python: at a million expense lines the parent's 2.1 s become 0.85 s, and the binding is done by
    the workers, across the cores. SQLite warehouses only: PostgreSQL's COPY is the fast way there."""

    path: str


_ATTACHED = "worker_rows"


def write_rows_file(path: str, columns: Sequence[str], rows: Iterable[tuple]) -> RowsFile | None:
    """The rows into a new SQLite file at `path`: no journal and no sync, it is scratch that the parent
    copies once and removes (a worker that dies leaves a partial file nobody reads). None when the scratch
    space fails (a full disk): the caller then hands the rows back itself, for that is no unit's fault."""
    try:
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(f"CREATE TABLE rows ({', '.join(columns)})")  # no types: values are kept as bound
            db.executemany(f"INSERT INTO rows VALUES ({', '.join('?' for _ in columns)})", rows)
            db.commit()
    except (OSError, sqlite3.Error):
        with suppress(OSError):
            os.remove(path)
        return None
    return RowsFile(path)


_SCRATCH = "etl-rows-"


@contextmanager
def rows_scratch(engine: Engine) -> Iterator[str | None]:
    """A directory for the workers' RowsFiles while the block runs, on a SQLite warehouse (None on others).
    A run killed meanwhile cannot remove it, and it holds a unit's expense lines: each such directory
    whose run's process is gone is removed the next time (its name carries that process id)."""
    if engine.dialect.name != "sqlite":
        yield None
        return
    for stale in Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*-*"):
        pid = stale.name.removeprefix(_SCRATCH).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{_SCRATCH}{os.getpid()}-") as scratch:
        yield scratch


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def attached_rows(conn: Connection, rows: RowsFile | None) -> Iterator[None]:
    """`rows` attached to `conn` for the block (and its file removed after). SQLite attaches only outside
    a transaction: call this before the block's transaction begins."""
    if rows is None:
        yield
        return
    conn.exec_driver_sql(f"ATTACH DATABASE ? AS {_ATTACHED}", (rows.path,))
    conn.commit()  # ends the transaction SQLAlchemy began for the ATTACH (SQLite itself has none open)
    try:
        yield
    finally:
        conn.rollback()  # whatever the block left open: DETACH is refused inside a transaction
        conn.exec_driver_sql(f"DETACH DATABASE {_ATTACHED}")
        conn.commit()
        os.remove(rows.path)


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple], *,
                nullable: Sequence[str] = ()) -> None:
    """Many rows at once, the fastest way each database offers: COPY on PostgreSQL, the driver's
    executemany of plain tuples elsewhere (SQLAlchemy's per-row parameter handling costs ~2x here).
    Only the `nullable` columns may hold None; text is always quoted, so a unit's text never
    reads as NULL."""
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC).writerows(rows)  # None is written as ""
        buffer.seek(0)
        force_null = f", FORCE_NULL ({', '.join(nullable)})" if nullable else ""
        with conn.connection.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv{force_null})", buffer)
        return
    marks = ", ".join("?" for _ in columns)
    conn.connection.cursor().executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def findings(conn: Connection, year: int, limit: int | None = None) -> list:
    """The year's findings with their package's name, in the order the bureau reads them (the first
    `limit` of them if given). The same order in every run, on SQLite and on PostgreSQL (of C collation)
    alike: empty ones first, as SQLite puts them (PostgreSQL puts them last unless told), and findings
    that agree on the rest (R006 of two funding sources) in the order their stage made them (their id),
    which the database would otherwise choose."""
    f = FindingRow
    return conn.execute(
        select(f.id.label("finding_id"), f.project_code, Package.name.label("package"), f.package_id, f.rule_id, f.severity, f.sheet, f.row,
               f.column, f.value, f.message)
        .outerjoin(Package, Package.id == FindingRow.package_id)
        .where(FindingRow.year == year)
        .order_by(f.project_code.asc().nulls_first(), Package.name.asc().nulls_first(), f.sheet, f.row.asc().nulls_first(),
                  f.rule_id, f.column, f.id)
        .limit(limit)
    ).all()


def finding_counts(conn: Connection, year: int) -> dict[tuple[str, str], int]:
    """(rule id, severity) -> how many findings of the year, counted by the database."""
    rows = conn.execute(select(FindingRow.rule_id, FindingRow.severity, func.count())
                        .where(FindingRow.year == year).group_by(FindingRow.rule_id, FindingRow.severity))
    return {(rule_id, severity): n for rule_id, severity, n in rows}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def set_finding_projects(conn: Connection, year: int, assignments: dict[int, str | None]) -> None:
    """Findings of a package belong to the project the package is assigned to."""
    if assignments:  # one executemany: a national year's first intake routes thousands of packages
        conn.execute(update(FindingRow).where(FindingRow.year == year, FindingRow.package_id == bindparam("pid"))
                     .values(project_code=bindparam("code")),
                     [dict(pid=pid, code=code) for pid, code in assignments.items()])


# Stages whose findings decide whether a package is accepted, before anything is sent nationally.
ALL_STAGES_BUT_NATIONAL = ("intake", "routing", "validation", "reconciliation", "time", "double_claims")


def fatal_package_ids(conn: Connection, package_ids: Sequence[int], stages: Sequence[str]) -> set[int]:
    """Which of these packages have a fatal finding from one of these stages that no active waiver
    covers. The one place where "is this package rejected" is decided (reconciliation, the national
    report and the project's status all ask here or count with waived_findings)."""
    where = (FindingRow.package_id.in_(list(package_ids)), FindingRow.stage.in_(list(stages)),
             FindingRow.severity == "fatal")
    fatal = conn.execute(select(FindingRow.package_id, FindingRow.year).distinct().where(*where)).all()
    waiving = {year for year in {y for _, y in fatal} if active_waivers(conn, year)}
    rejected = {pid for pid, year in fatal if year not in waiving}
    for year in waiving:  # only then are the findings themselves looked at
        rows = conn.execute(select(FindingRow.id, FindingRow.package_id, FindingRow.project_code)
                            .where(*where, FindingRow.year == year)).all()
        waived = waived_findings(conn, year, {r.project_code for r in rows})
        rejected |= {r.package_id for r in rows if r.id not in waived}
    return rejected


def replace_reconciliation(conn: Connection, year: int, codes: Sequence[str], rows: list[dict]) -> None:
    conn.execute(delete(ReconciliationRow).where(ReconciliationRow.year == year,
                                                 ReconciliationRow.project_code.in_(list(codes))))
    if rows:
        conn.execute(insert(ReconciliationRow), rows)


def reconciliation(conn: Connection, year: int) -> list:
    """The year's reconciliation rows, by project, sources in the notice's order."""
    rows = conn.execute(select(ReconciliationRow).where(ReconciliationRow.year == year)).all()
    return sorted(rows, key=lambda r: (r.project_code, FUNDING_SOURCES.index(r.funding_source)))


def package_sheets(conn: Connection, package_ids: Sequence[int], sheets: Sequence[str] | None = None
                   ) -> dict[tuple[int, str], dict]:
    """(package id, template sheet) -> typed_name, header_row, headers {field: [typed, column]}; of the
    named template sheets only, if given."""
    where = [PackageSheet.package_id.in_(list(package_ids))]
    if sheets is not None:
        where.append(PackageSheet.sheet.in_(list(sheets)))
    rows = conn.execute(select(PackageSheet).where(*where)).all()
    return {
        (r.package_id, r.sheet): dict(typed_name=r.typed_name, header_row=r.header_row, headers=json.loads(r.headers))
        for r in rows
    }


def record_received(conn: Connection, year: int, name: str, moment: datetime) -> int:
    """An operator's record of when a package arrived (UTC), for every stored version of that name."""
    result = conn.execute(update(Package).where(Package.year == year, Package.name == name).values(received_at=moment))
    return result.rowcount


def confirmed_national_packages(conn: Connection, year: int) -> dict[str, int]:
    """project -> the package whose national report the national system accepted, for each
    project whose latest report version is accepted."""
    rows = conn.execute(
        select(NationalFiling.project_code, NationalFiling.version, NationalFiling.status, NationalFiling.package_id)
        .where(NationalFiling.year == year).order_by(NationalFiling.project_code, NationalFiling.version)
    ).all()
    latest = {r.project_code: r for r in rows}
    return {code: r.package_id for code, r in latest.items() if r.status == "accepted"}


def fingerprints(conn: Connection, year: int, prefix: str) -> dict[str, str]:
    """What each output named `prefix…` was last made from (an export file, a project's stage result),
    by the rest of its name."""
    rows = conn.execute(select(ExportFingerprint.name, ExportFingerprint.fingerprint)
                        .where(ExportFingerprint.year == year, ExportFingerprint.name.startswith(prefix, autoescape=True)))
    return {name.removeprefix(prefix): fp for name, fp in rows}


def set_fingerprints(conn: Connection, year: int, prefix: str, fingerprints: dict[str, str | None]) -> None:
    """Record what each output was made from; None forgets an output that was removed."""
    if not fingerprints:
        return
    names = [prefix + name for name in fingerprints]
    for start in range(0, len(names), 500):  # bounded IN lists: a national year has thousands of projects
        conn.execute(delete(ExportFingerprint).where(ExportFingerprint.year == year,
                                                     ExportFingerprint.name.in_(names[start:start + 500])))
    rows = [dict(year=year, name=prefix + name, fingerprint=fp) for name, fp in fingerprints.items() if fp is not None]
    if rows:
        conn.execute(insert(ExportFingerprint), rows)


# --- Waivers (append-only): operators' decisions about findings ------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")


def today_in_shanghai() -> date:
    """A waiver's `until` is a day of the bureau's calendar."""
    return datetime.now(SHANGHAI).date()


def insert_waiver(conn: Connection, values: dict) -> int:
    return conn.execute(insert(Waiver).values(**values, recorded_at=utcnow())).inserted_primary_key[0]


def insert_revocation(conn: Connection, waiver_id: int, revoked_by: str, reason: str) -> None:
    conn.execute(insert(WaiverRevocation).values(waiver_id=waiver_id, revoked_by=revoked_by, reason=reason,
                                                 revoked_at=utcnow()))


def _waiver_query():
    r = WaiverRevocation
    return (select(Waiver, r.revoked_by, r.reason.label("revoke_reason"), r.revoked_at)
            .outerjoin(r, r.waiver_id == Waiver.id).order_by(Waiver.id))


def waivers(conn: Connection, year: int | None = None, waiver_id: int | None = None) -> list:
    """Every waiver recorded (of a year, or one by id), with its revocation if any, oldest first."""
    query = _waiver_query()
    if year is not None:
        query = query.where(Waiver.year == year)
    if waiver_id is not None:
        query = query.where(Waiver.id == waiver_id)
    return conn.execute(query).all()


def is_active(waiver, today: date) -> bool:
    """Recorded, not revoked, and not past its last day."""
    return waiver.revoked_at is None and (waiver.until is None or today <= waiver.until)


def active_waivers(conn: Connection, year: int, codes: Iterable[str] | None = None,
                   today: date | None = None) -> list:
    today = today or today_in_shanghai()
    query = _waiver_query().where(Waiver.year == year, WaiverRevocation.waiver_id.is_(None))
    if codes is not None:
        query = query.where(Waiver.project_code.in_(sorted(set(codes))))
    return [w for w in conn.execute(query).all() if is_active(w, today)]


def waiver_matches(waiver, finding, in_use_id: int | None) -> bool:
    """Whether a waiver covers a finding (project, rule, package name/id, sheet, row). Without a
    package it covers the project's package in use and the project's own findings (no package)."""
    if (waiver.project_code, waiver.rule_id) != (finding.project_code, finding.rule_id):
        return False
    if waiver.package:
        if finding.package != waiver.package:
            return False
    elif finding.package_id is not None and finding.package_id != in_use_id:
        return False
    return (not waiver.sheet or finding.sheet == waiver.sheet) and (waiver.row is None or finding.row == waiver.row)


def waived_findings(conn: Connection, year: int, codes: Iterable[str | None] | None = None,
                    today: date | None = None) -> dict[int, object]:
    """finding id -> the active waiver that covers it (the oldest), for the year's (or these
    projects') findings. Costs one small query when the year has no active waiver."""
    codes = None if codes is None else [c for c in codes if c]
    return {fid: found[0] for fid, found in waiver_matches_of(conn, year, active_waivers(conn, year, codes, today)).items()}


def waiver_matches_of(conn: Connection, year: int, waivers: Sequence) -> dict[int, list]:
    """finding id -> every one of these waivers that covers it, oldest first."""
    if not waivers:
        return {}
    f = FindingRow
    found = conn.execute(
        select(f.id, f.project_code, f.rule_id, f.package_id, Package.name.label("package"), f.sheet, f.row)
        .outerjoin(Package, Package.id == f.package_id)
        .where(f.year == year, f.project_code.in_(sorted({w.project_code for w in waivers})),
               f.rule_id.in_(sorted({w.rule_id for w in waivers})))
    ).all()
    in_use = {code: p.id for code, p in newest_packages(conn, year).items()}
    covered: dict[int, list] = {}
    for finding in found:
        hits = [w for w in waivers if waiver_matches(w, finding, in_use.get(finding.project_code))]
        if hits:
            covered[finding.id] = hits
    return covered


# --- What the last export showed of each project --------------------------------------------------

def exported_states(conn: Connection, year: int) -> dict[str, dict]:
    rows = conn.execute(select(ExportedProjectState.project_code, ExportedProjectState.state)
                        .where(ExportedProjectState.year == year))
    return {code: json.loads(state) for code, state in rows}


def replace_exported_states(conn: Connection, year: int, states: dict[str, dict]) -> None:
    conn.execute(delete(ExportedProjectState).where(ExportedProjectState.year == year))
    if states:
        conn.execute(insert(ExportedProjectState), [
            dict(year=year, project_code=code, state=json.dumps(state, ensure_ascii=False, sort_keys=True))
            for code, state in states.items()])
