"""Intake: find the packages in <inbox>/<year>/, open each new version safely, list its files,
keep its workbook, read which project it names, and refuse what cannot be read (P001–P005).

Intake is keyed by content: a package version (name + SHA-256) already in the warehouse is not
opened again, so re-running over the same inbox changes nothing and a late package costs only itself.
"""


import hashlib
from dataclasses import dataclass, field
from datetime import timezone
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import dagster as dg
from sqlalchemy import Engine

from adapters.inbox import (
    PackageError,
    PackageRef,
    OpenedPackage,
    UnsafePackage,
    check_extension,
    discover_packages,
    open_package,
    open_quarantined,
    sniff,
)
from adapters.registry import YearRegistry
from adapters.resources import InboxResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.workbook import UnreadableWorkbook
from adapters.workers import WorkerFailure, map_isolated
from assets.isolation import limit_finding
from assets.progress import Progress
from assets.partitions import single_run, year_partitions, years_of_run
from assets.sheets import EXPENSES_CSV_NAME, READER_KEY, ParsedSheet, Reading, read_sheets, reading_of
from schemas.findings import Finding, make_finding
from schemas.layout import BASIC_INFO, REQUIRED_SHEETS

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_PACKAGES_PER_COMMIT = 200
_BYTES_PER_COMMIT = 64 << 20


@dataclass
class IntakeResult:
    """What intake learned of one package version."""

    ref: PackageRef
    status: str = "readable"  # or "refused"
    findings: list[Finding] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    workbook_member: str = ""
    workbook: bytes | None = None
    expenses_csv_member: str = ""
    expenses_csv: bytes | None = None  # while it is read; then kept deflated (below)
    expenses_csv_zlib: bytes | None = None
    declared_code: str = ""  # 项目编号 as typed
    declared_code_row: int | None = None
    declared_code_header: str = "项目编号"
    declared_unit: str = ""
    # The workbook as read here, once, for the stages after: every template sheet for validation, every
    # sheet's grid for the feedback's copy.
    reading: Reading | None = None

    def refuse(self, finding: Finding) -> None:
        self.status = "refused"
        self.findings.append(finding)


def read_package(ref: PackageRef) -> IntakeResult:
    """Open a package version, list its files and read its workbook: every template sheet, once, for this
    stage (the project it names, P001, P003) and for validation (the reading it keeps)."""
    return _read_package(ref, whole=True)


def identify_package(ref: PackageRef) -> IntakeResult:
    """read_package reading only 基本信息: for a package whose whole reading hit a worker's limit, so that
    it still reaches its project (validation then reads it, and says which limit stops it: P008)."""
    return _read_package(ref, whole=False)


def _read_package(ref: PackageRef, *, whole: bool) -> IntakeResult:
    result = IntakeResult(ref)
    _read_into(result, whole=whole)
    if result.expenses_csv is not None:  # read: what is kept travels to the parent and the warehouse deflated
        result.expenses_csv_zlib, result.expenses_csv = store.deflate_csv(result.expenses_csv), None
    return result


def _read_into(result: IntakeResult, *, whole: bool) -> None:
    try:
        with open_package(result.ref) as package:
            _read_members(package, result)
    except UnsafePackage as problem:
        result.refuse(make_finding("P004", detail=problem.detail_zh))
        _identify_refused(result.ref, result)
        return
    except PackageError as problem:
        result.refuse(make_finding("P001", detail=problem.detail_zh))
        return
    if result.workbook is not None:
        _read_workbook(result, whole=whole)


def _read_members(package: OpenedPackage, result: IntakeResult) -> None:
    """List every file (hash, content type, M005), pick the one workbook (P002) and the CSV. Each member
    is read once: the workbook and the CSV are kept whole, the others (photos) only streamed through."""
    workbooks = _workbooks(package)
    csv = next((m for m in package.members if PurePosixPath(m.path).name == EXPENSES_CSV_NAME), None)
    kept = {workbooks[0].path, *([csv.path] if csv else [])} if len(workbooks) == 1 else set()
    contents: dict[str, bytes] = {}
    for member in package.members:
        if member.path in kept:
            data = contents[member.path] = package.read(member.path)
            head, sha256 = data[:_HEAD], hashlib.sha256(data).hexdigest()
        else:
            head, sha256 = package.fingerprint(member.path, _HEAD)
        result.files.append(dict(path=member.path, size=member.size, sha256=sha256, content_type=sniff(head) or ""))
        check = check_extension(member.path, head)
        # An empty file is the materials rules' business (M001–M003 say which one is empty).
        if member.size and not check.ok:
            result.findings.append(make_finding("M005", value=member.path, actual=check.actual_zh,
                                                expected=check.expected_zh))
    if len(workbooks) != 1:
        names = "、".join(m.path for m in workbooks)
        detail = "没有工作簿" if not workbooks else f"有 {len(workbooks)} 个工作簿（{names}）"
        result.refuse(make_finding("P002", detail=detail))
        return
    result.workbook_member = workbooks[0].path
    result.workbook = contents[workbooks[0].path]
    if csv is not None:
        result.expenses_csv_member, result.expenses_csv = csv.path, contents[csv.path]


_HEAD = 64  # bytes of a member its content type is told from (sniff, check_extension)


def _workbooks(package: OpenedPackage) -> list:
    return [m for m in package.members if m.path.lower().endswith(WORKBOOK_SUFFIXES)]


def _identify_refused(ref: PackageRef, result: IntakeResult) -> None:
    """A refused archive whose workbook can still be read safely names its project (outputs.md),
    so the refusal reaches the right unit and supersedes or is superseded like any version."""
    try:
        with open_quarantined(ref) as package:
            workbooks = _workbooks(package)
            if len(workbooks) == 1:
                result.workbook_member = workbooks[0].path
                result.workbook = package.read(workbooks[0].path)
    except PackageError:
        return
    if result.workbook is not None:
        _read_workbook(result, whole=False, check_sheets=False)


def _read_workbook(result: IntakeResult, *, whole: bool, check_sheets: bool = True) -> None:
    """Check the workbook opens and has the required sheets (P001, P003) and read the project it names.
    ``whole``: every sheet is read, once, and the reading kept for the stages after (see read_sheets)."""
    try:
        read = read_sheets(result.workbook, result.expenses_csv, whole=whole)
    except UnreadableWorkbook:
        result.refuse(make_finding("P001", detail=f"工作簿“{result.workbook_member}”无法打开"))
        return
    for sheet in REQUIRED_SHEETS if check_sheets else ():
        if sheet not in read.found:
            result.refuse(make_finding("P003", sheet=sheet))
    if BASIC_INFO.name in read.unreadable:
        typed = read.unreadable[BASIC_INFO.name]
        result.refuse(make_finding("P001", detail=f"工作簿“{result.workbook_member}”的工作表“{typed}”无法读取"))
        return
    if BASIC_INFO.name in read.sheets:
        _declared(result, read.sheets[BASIC_INFO.name])
    if whole and result.status == "readable":
        result.reading = reading_of(read)


def _declared(result: IntakeResult, basic: ParsedSheet) -> None:
    """The project code and unit 基本信息 names, where the unit typed them."""
    values = basic.first_row()
    result.declared_code = str(values.get("project_code", "") or "")
    result.declared_code_row = basic.rows.get("project_code")
    result.declared_code_header = basic.headers.get("project_code", "项目编号")
    result.declared_unit = str(values.get("host_unit", "") or "")


def _limit_refusal(ref: PackageRef, failure: WorkerFailure) -> IntakeResult:
    """A package whose reading hit a worker's limit: refused with P008, kept like any version."""
    result = IntakeResult(ref)
    result.refuse(limit_finding(failure))
    return result


def ingest_year(engine: Engine, inbox_dir: Path, registry: YearRegistry, log=None) -> dict[str, int]:
    """Store every new package version of the year, then (re)assign all of them to projects. Packages
    are read across the worker pool (adapters.workers): one that a reader cannot survive costs itself."""
    year = registry.year
    with engine.begin() as conn:
        store.store_registry(conn, registry)
        cache = store.known_hashes(conn, year)
        stored = store.stored_versions(conn, year)
    discovered = discover_packages(inbox_dir / str(year), cache)
    refs = [ref for ref in discovered if (ref.name, ref.sha256) not in stored]
    progress = Progress(f"intake {year}", len(refs), log)
    for results in _commits(_read_all(refs, year, log)):
        with engine.begin() as conn:
            ids = store.insert_packages(conn, [(_package_row(year, result), result.files,
                                              dict(workbook=result.workbook, expenses_csv_zlib=result.expenses_csv_zlib))
                                             for result in results])
            store.put_readings(conn, READER_KEY, {package_id: result.reading for package_id, result in zip(ids, results)
                                                  if result.reading is not None})
            store.replace_findings(conn, "intake", [store.finding_row(year, package_id, None, f)
                                                    for package_id, result in zip(ids, results) for f in result.findings],
                                   package_ids=ids)
        progress.advance(len(results))
    progress.done()
    with engine.begin() as conn:
        assigned = _assign(conn, registry)
    return {"found": len(discovered), "new": len(refs), "assigned": assigned}


def _read_all(refs: list[PackageRef], year: int, log) -> Iterator[IntakeResult]:
    """Each package read across the pool, in order. One whose whole reading hit a worker's limit is read
    again for 基本信息 only, so it reaches its project (validation says which limit stops it, P008);
    one that cannot even be identified is refused with P008 here."""
    failed = []
    for ref, outcome in map_isolated(read_package, refs):
        if isinstance(outcome, WorkerFailure):
            if log is not None:  # the unit hears P008; the operator's log keeps what really happened
                log.warning(f"intake {year}: {ref.name} hit a worker limit ({outcome.limit}: {outcome.detail}); "
                            "reading its 基本信息 only")
            failed.append(ref)
            continue
        yield outcome
    for ref, outcome in map_isolated(identify_package, failed):
        yield _limit_refusal(ref, outcome) if isinstance(outcome, WorkerFailure) else outcome


def _commits(results: Iterator[IntakeResult]) -> Iterator[list[IntakeResult]]:
    """Whole packages in each transaction, a few hundred (or 64 MiB of what they keep) at a time: a crash
    never leaves half a package (the next run reads the uncommitted ones again), thousands of packages do
    not pay a commit each, and a year of big packages is not held in memory at once."""
    batch, size = [], 0
    for result in results:
        batch.append(result)
        size += len(result.workbook or b"") + len(result.expenses_csv_zlib or b"") + (result.reading.size if result.reading else 0)
        if len(batch) >= _PACKAGES_PER_COMMIT or size >= _BYTES_PER_COMMIT:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _assign(conn, registry: YearRegistry) -> int:
    """Route each package to the project its 项目编号 names; an unknown code is P005 (no project)."""
    changed, unknown, assigned = {}, [], 0
    for package in store.year_packages(conn, registry.year):
        project = registry.project(package.declared_code) if package.declared_code.strip() else None
        code = project.code if project else None
        assigned += code is not None
        if code != package.project_code:
            changed[package.id] = code
        if project is None and package.intake_status == "readable":
            finding = make_finding("P005", sheet=BASIC_INFO.name, row=package.declared_code_row,
                                   column=package.declared_code_header,
                                   value=package.declared_code, year=registry.year)
            unknown.append(store.finding_row(registry.year, package.id, None, finding))
    store.assign_projects(conn, changed)
    store.replace_findings(conn, "routing", unknown, year=registry.year, unassigned=True)
    # Intake findings follow their package to its project (P001–P004 of a package that names one).
    store.set_finding_projects(conn, registry.year, changed)
    return assigned


def _package_row(year: int, result: IntakeResult) -> dict:
    ref = result.ref
    return dict(
        year=year, name=ref.name, kind=ref.kind, sha256=ref.sha256, size=ref.size,
        modified_at=ref.modified_at.astimezone(timezone.utc).replace(tzinfo=None), mtime_ns=ref.cache_key[2],
        ingested_at=store.utcnow(), declared_code=result.declared_code, declared_code_row=result.declared_code_row,
        declared_code_header=result.declared_code_header, declared_unit=result.declared_unit,
        intake_status=result.status, workbook_member=result.workbook_member,
        expenses_csv_member=result.expenses_csv_member,
    )



@dg.asset(
    partitions_def=year_partitions,
    backfill_policy=single_run,
    group_name="intake",
    kinds={"python"},
)
def package_intake(
    context: dg.AssetExecutionContext,
    inbox: InboxResource,
    warehouse: WarehouseResource,
    registry: RegistryResource,
) -> dg.MaterializeResult:
    """收件：扫描收件箱 <收件箱>/<年度>/ 中的材料包（zip 或文件夹），只读、不解压到磁盘；
    对每个新版本做安全检查（损坏、加密、路径穿越、压缩炸弹），登记文件清单并保存工作簿，
    在受内存和时间限制的工作进程中把工作簿的各工作表读取一次并保存读取结果（校验和问题清单都使用这份结果，
    不再重复打开单位的文件），按工作簿中的“项目编号”归入立项项目。同一内容的材料包不会重复处理。"""
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        counts = ingest_year(warehouse.engine(), Path(inbox.path), registry.year(year), context.log)
        context.log.info(f"intake {year}: {counts}")
        metadata[f"{year} 收件"] = dg.MetadataValue.json(counts)
    return dg.MaterializeResult(metadata=metadata)
