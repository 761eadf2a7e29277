"""The national report: what a national-level project (国家级示范团 / 国家级专家服务基地) also files
with 全国专家服务基层工作信息管理系统, built only from a package in use with no fatal finding.

`national_report` builds each report, checks its required fields (N001), writes it to
exports/<year>/national/<code>.json and commits it to the outbox; `national_sync` (a separate step)
delivers what the outbox holds and polls the system's verdict (N002 refused, N003 not yet confirmed).
"""

import functools
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from sqlalchemy import Connection, Engine, select

from adapters.inbox import PackageRef, describe_package, open_package
from adapters.national_system import outbox
from adapters.national_system.client import NationalSystemClient
from adapters.registry import RegisteredProject, YearRegistry
from adapters.resources import ExportResource, InboxResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.warehouse.models import Package, PackageFile, SheetRow
from assets.materials import PackageListing
from assets.incremental import code_hash, digest, to_redo
from assets.partitions import forced_projects, single_run, year_partitions, years_of_run
from assets.reconciliation import KEYS as RECONCILIATION_KEYS, reconciliation
from schemas.catalog import NATIONAL_STATUS_ZH
from schemas.findings import make_finding
from schemas.layout import ACTIVITIES, BASIC_INFO, EXPERTS, PHOTOS, PUBLICITY
from schemas import national_report as national_report_schema
from schemas.national_report import missing_fields
from schemas.values import amount_of, date_of, fen_to_yuan, int_of

PROVINCE = "上海市"


def build_report(registry: YearRegistry, project: RegisteredProject, rows: dict[str, list[dict]], files: list,
                 money: list) -> dict:
    """The report of one project from its package in use (its parsed rows by sheet and its files, see
    _packages_read), shaped as the contract's Report (adapters/national_system/openapi.yaml). Money as
    strings with two decimals (exact); files by SHA-256."""
    basic = {r["field"]: r["value"] for r in rows[BASIC_INFO.name]}
    activities, experts = rows[ACTIVITIES.name], rows[EXPERTS.name]
    listing = PackageListing([dict(path=f.path, size=f.size, sha256=f.sha256) for f in files])
    places = {(a.get("place", ""), a.get("region_code", "")) for a in activities if a.get("place")}
    return {
        "year": registry.year,
        "project": {"code": project.code, "name": project.project_name, "level": project.level,
                    "type": project.type, "host_unit": project.host_unit,
                    "uscc": basic.get("uscc", "") or project.uscc, "province": PROVINCE},
        "service": {
            "start_date": _iso(basic.get("service_start", "")), "end_date": _iso(basic.get("service_end", "")),
            "places": [{"name": name, "region_code": code} for name, code in sorted(places)],
            "activity_count": len(activities),
            # 选派专家数: the experts listed, else the most any one activity had.
            "experts": len(experts) or max((_count(a.get("experts")) for a in activities), default=0),
            "people_served": sum(_count(a.get("people_served")) for a in activities),
            "trainees": sum(_count(a.get("trainees")) for a in activities),
            "problems_solved": sum(_count(a.get("problems_solved")) for a in activities),
        },
        "money": {
            "granted": {r.funding_source: fen_to_yuan(r.granted_fen) for r in money},
            "spent": {r.funding_source: fen_to_yuan(r.spent_fen or 0) for r in money},
            "balance": {r.funding_source: fen_to_yuan(r.balance_fen or 0) for r in money},
            "refunds": [{"source": r.funding_source, "amount": fen_to_yuan(r.balance_fen), "refund_to": r.refund_to}
                        for r in money if r.balance_fen and r.balance_fen > 0],
            "audit": {"firm": basic.get("audit_firm", ""), "audited_total": _yuan(basic.get("audited_total", ""))},
        },
        "attachments": _attachments(basic, rows[PHOTOS.name], listing),
        "publicity": [{k: p.get(k, "") for k in ("media", "media_level", "title", "published_on", "link")}
                      for p in rows[PUBLICITY.name]],
    }


def _count(typed: object) -> int:
    return int_of(typed) or 0


def _iso(typed: str) -> str:
    day = date_of(typed)
    return "" if day is None else day.isoformat()


def _yuan(typed: str) -> str:
    fen = amount_of(typed).fen
    return "" if fen is None else fen_to_yuan(fen)


def _packages_read(conn: Connection, package_ids: list[int]) -> tuple[dict[int, dict[str, list[dict]]], dict[int, list]]:
    """Each package's parsed rows by sheet (in Excel order) and its files, a thousand packages a query:
    a national year reports some 2,000 projects."""
    rows: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    files: dict[int, list] = {}
    for start in range(0, len(package_ids), 1000):
        part = package_ids[start:start + 1000]
        for package_id, sheet, data in conn.execute(
                select(SheetRow.package_id, SheetRow.sheet, SheetRow.data).where(SheetRow.package_id.in_(part))
                .order_by(SheetRow.package_id, SheetRow.sheet, SheetRow.excel_row)):
            rows[package_id][sheet].append(json.loads(data))
        files |= store.package_files(conn, part)
    return rows, files


def _attachments(basic: dict, photos: list[dict], listing: PackageListing) -> list[dict]:
    files = []
    summary = listing.find(basic.get("work_summary_file", ""))
    if summary is not None:
        files.append({"kind": "work_summary", "name": summary.path, "sha256": listing.sha256_of(summary.path)})
    for photo in photos:
        member = listing.find(photo.get("file_name", ""))
        if member is not None:
            files.append({"kind": "photo", "name": member.path, "sha256": listing.sha256_of(member.path),
                          "caption": photo.get("caption", ""), "taken_on": _iso(photo.get("taken_on", "")),
                          "place": photo.get("place", "")})
    return files


_KEYS = "national/"  # fingerprints of each national project's report
_REPORT_CODE = code_hash(sys.modules[__name__], national_report_schema)


def report_keys(conn: Connection, registry: YearRegistry) -> dict[str, str]:
    """national project -> what its report is made of: its money and time findings' key (which covers
    its package in use, validated content and registry entry) and the code that builds reports."""
    money = store.fingerprints(conn, registry.year, RECONCILIATION_KEYS)
    return {p.code: digest(_REPORT_CODE, money.get(p.code)) for p in registry.projects if p.level == "national"}


def prepare_reports(engine: Engine, registry: YearRegistry, keys: dict[str, str], out_dir: Path) -> dict[str, str]:
    """Build, check (N001), export and enqueue the reports of these national projects, and store each
    one's key (see report_keys) with its findings. Returns project -> what happened (queued /
    incomplete / not eligible)."""
    year = registry.year
    national = [p for code in keys if (p := registry.project(code)) is not None and p.level == "national"]
    outcome: dict[str, str] = {}
    rows = []
    with engine.connect() as conn:
        in_use = store.newest_packages(conn, year)
        fatal = store.fatal_package_ids(conn, [p.id for p in in_use.values()], store.ALL_STAGES_BUT_NATIONAL)
        reports = {}
        money = defaultdict(list)
        for row in store.reconciliation(conn, year):
            money[row.project_code].append(row)
        eligible = {}
        for project in national:
            package = in_use.get(project.code)
            if package is None or package.id in fatal or package.intake_status != "readable":
                (out_dir / f"{project.code}.json").unlink(missing_ok=True)  # only a package with no fatal finding is reported
                outcome[project.code] = "not eligible"
                continue
            eligible[project.code] = (project, package.id)
        rows_of, files_of = _packages_read(conn, [package_id for _, package_id in eligible.values()])
        for code, (project, package_id) in eligible.items():
            report = build_report(registry, project, rows_of[package_id], files_of[package_id], money[code])
            reports[code] = (package_id, report, out_dir / f"{code}.json")
    for (code, (package_id, report, target)), missing in zip(list(reports.items()), missing_fields(
            [report for _, report, _ in reports.values()])):
        if missing:
            target.unlink(missing_ok=True)
            rows += [store.finding_row(year, package_id, code, make_finding("N001", column=label)) for label in missing]
            outcome[code] = "incomplete"
            del reports[code]
    for code, (package_id, report, target) in reports.items():
        _write_json(report, target)
        outcome[code] = "queued"
    outbox.enqueue_many(engine, year, [(code, package_id, report) for code, (package_id, report, _) in reports.items()])
    with engine.begin() as conn:
        store.replace_findings(conn, "national", rows, year=year, project_codes=[p.code for p in national])
        store.set_fingerprints(conn, year, _KEYS, keys)
    return outcome


def _write_json(report: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)


def attachment_fetcher(engine: Engine, inbox_dir: Path) -> Callable[[str], bytes]:
    """Attachment bytes by SHA-256, read (read-only) from the package in the inbox that holds them."""

    @functools.cache
    def package_at(path: Path) -> PackageRef:
        return describe_package(path)

    def fetch(sha256: str) -> bytes:
        with engine.connect() as conn:
            row = conn.execute(
                select(Package.year, Package.name, Package.kind, PackageFile.path)
                .join(PackageFile, PackageFile.package_id == Package.id)
                .where(PackageFile.sha256 == sha256).order_by(Package.id.desc())
            ).first()
        if row is None:
            raise LookupError(f"no stored package holds attachment {sha256}")
        with open_package(package_at(inbox_dir / str(row.year) / row.name)) as package:
            data = package.read(row.path)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise LookupError(f"{row.name}/{row.path} changed in the inbox since it was stored")
        return data

    return fetch


def national_findings(engine: Engine, registry: YearRegistry) -> list[dict]:
    """N002 for a refused report, N003 for one the system has not confirmed, per project's latest version."""
    rows = []
    latest: dict[str, dict] = {}
    for filing in outbox.filings(engine, registry.year):
        latest[filing["project_code"]] = filing  # ordered by version
    for code, filing in latest.items():
        if filing["status"] in (outbox.REFUSED, outbox.RETURNED):
            # Refused on arrival or returned after review: either way the system did not take it.
            finding = make_finding("N002", detail=filing["last_error"] or "未说明原因")
        elif filing["status"] in (outbox.PENDING, outbox.FILED):
            # Dry runs (no national system configured) are the bureau's choice, not the unit's concern.
            detail = NATIONAL_STATUS_ZH[filing["status"]] + (f"，最近错误：{filing['last_error']}" if filing["last_error"] else "")
            finding = make_finding("N003", detail=detail)
        else:
            continue
        rows.append(store.finding_row(registry.year, filing["package_id"], code, finding))
    return rows


@dg.asset(
    deps=[reconciliation],
    partitions_def=year_partitions,
    backfill_policy=single_run,
    group_name="national",
    kinds={"json"},
)
def national_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: RegistryResource,
    exports: ExportResource,
) -> dg.MaterializeResult:
    """国家系统报告：为无致命问题的国家级项目（示范团、国家级专家服务基地）生成报送全国专家服务基层
    工作信息管理系统的报告，检查必填项（N001），写入 <导出目录>/<年度>/national/<项目编号>.json，
    并先存入待发送队列（发送由“国家系统同步”完成）。"""
    engine = warehouse.engine()
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        year_registry = registry.year(year)
        out_dir = exports.year_dir(year) / "national"
        with engine.connect() as conn:
            wanted = report_keys(conn, year_registry)
            done = store.fingerprints(conn, year, _KEYS)
        # A missing file is redone too: an export folder may have been cleared or moved.
        missing = {code for code in wanted if not (out_dir / f"{code}.json").exists()}
        todo = to_redo(wanted, done, forced_projects(context) | missing)
        outcome = prepare_reports(engine, year_registry, {code: wanted[code] for code in todo}, out_dir)
        metadata[f"{year} 本次生成的报告（按结果）"] = dg.MetadataValue.json(dict(Counter(outcome.values())))
        # The projects that need someone's attention, not the thousands queued as expected.
        metadata[f"{year} 本次未生成报告的项目"] = dg.MetadataValue.json(
            dict(sorted((code, what) for code, what in outcome.items() if what != "queued")[:200]))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[national_report],
    group_name="national",
    kinds={"api"},
    partitions_def=year_partitions,
    backfill_policy=single_run,
    pool="national_system",  # one sync at a time: the outbox is the only writer of filings
    retry_policy=dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL),
)
def national_sync(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: RegistryResource,
    inbox: InboxResource, national_system: NationalSystemClient,
) -> dg.MaterializeResult:
    """国家系统同步：把待发送队列中的报告发送到全国专家服务基层工作信息管理系统（幂等、可重试、
    断点续传；重复发送不会产生第二份报送），查询回执状态；被拒收记为 N002，未确认记为 N003，夜间自动重试。"""
    engine = warehouse.engine()
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        delivered = outbox.deliver(engine, national_system, attachment_fetcher(engine, Path(inbox.path)), year=year)
        polled = outbox.poll(engine, national_system, year=year)
        rows = national_findings(engine, registry.year(year))
        with engine.begin() as conn:
            store.replace_findings(conn, "national_sync", rows, year=year, whole_year=True)
        filings = outbox.filings(engine, year)
        context.log.info(f"national sync {year}: delivered {delivered}, polled {polled}")
        metadata[f"{year} 发送"] = dg.MetadataValue.json(delivered)
        metadata[f"{year} 回执"] = dg.MetadataValue.md(_filings_markdown(filings))
    return dg.MaterializeResult(metadata=metadata)


def _filings_markdown(filings: list[dict]) -> str:
    if not filings:
        return "无报送记录"
    lines = ["| 项目 | 版本 | 状态 | 回执号 | 尝试次数 | 最近错误 |", "|---|---|---|---|---|---|"]
    lines += [f"| {f['project_code']} | {f['version']} | {f['status']} | {f['receipt_no']} | {f['attempts']} | "
              f"{(f['last_error'] or '').replace('|', '/')} |" for f in filings]
    return "\n".join(lines)
