"""Photo evidence: what the photos of 影像资料 prove (M006–M010, warnings).

The notice asks for photos of the service on site. For each photo the package in use lists, this
stage reads the camera's date, its size and a perceptual hash, and flags a date outside the program
year or the project's service period or far from the 拍摄日期 the unit typed (M006, M007), the same
photo used by another project this year or any project of an earlier year (M008) or twice in one
package (M009), and a photo too small to show anything (M010). A photo without EXIF is not a finding
(phones and chat apps strip it) but is counted.

Photos are decoded through the worker door (adapters.workers) and only once: their facts are stored
by content sha256, so a run decodes only photos it has never seen, whichever package holds them.
The findings are recomputed for the whole year at every run from what the warehouse holds (a new
package can make an older one's photo a reuse), which reads no photo.
"""


import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import islice
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, insert, or_, select

from adapters.photos import PhotoBatch, PhotoFacts, Unreadable, read_package_photos
from adapters.registry import YearRegistry
from adapters.resources import InboxResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.warehouse.models import Package, PhotoFactsRow, SheetRow
from adapters.workers import WorkerFailure, map_isolated
from assets.materials import PackageListing
from assets.partitions import single_run, year_partitions, years_of_run
from assets.validation import package_validation
from schemas.findings import Finding, make_finding
from schemas.layout import BASIC_INFO, PHOTOS
from schemas.values import date_of

log = logging.getLogger(__name__)

STAGE = "evidence"
# Hamming distance (of 64 bits) up to which two photos are the same picture. Measured on generated
# look-alikes (tests/test_evidence.py): a copy re-encoded at quality 60 and resized by 7% lies within
# 2, distinct shots of one scene (same room, other people, camera moved) 10 or more apart.
SAME_PHOTO_DISTANCE = 6
# How far the camera's date may be from the 拍摄日期 typed in 影像资料 (a photo is often listed under
# the activity's first day, and camera clocks drift).
DATE_TOLERANCE_DAYS = 3
MIN_LONG_SIDE = 320  # pixels
# How many other packages a reused photo's findings name (the closest ones): enough to act on.
MATCHES_NAMED = 3
_PACKAGES_PER_COMMIT = 200


@dataclass(frozen=True)
class ListedPhoto:
    """A photo listed in the 影像资料 of a package in use, resolved to the member it names."""

    year: int
    project_code: str
    package_id: int
    package_name: str
    excel_row: int
    file_name: str  # as typed
    member: str  # the package member it resolves to
    sha256: str
    typed_date: date | None


@dataclass(frozen=True)
class PhotoPlace:
    """Where findings about a package's photos point: the sheet's and the 文件名 column's typed names."""

    sheet: str
    column: str


def listed_photos(conn: Connection, year: int, in_use: dict | None = None) -> list[ListedPhoto]:
    """Every photo the packages in use of the year (or those of `in_use`: project -> package) list in
    影像资料 and hold (M003 reports the others)."""
    if in_use is None:
        in_use = {code: p for code, p in store.newest_packages(conn, year).items() if p.intake_status == "readable"}
    ids = [p.id for p in in_use.values()]
    if not ids:
        return []
    files = store.package_files(conn, ids)
    rows = conn.execute(select(SheetRow.package_id, SheetRow.excel_row, SheetRow.data)
                        .where(SheetRow.package_id.in_(ids), SheetRow.sheet == PHOTOS.name)
                        .order_by(SheetRow.package_id, SheetRow.excel_row)).all()
    by_id = {p.id: (code, p) for code, p in in_use.items()}
    listings = {pid: PackageListing([dict(path=f.path, size=f.size, sha256=f.sha256) for f in found])
                for pid, found in files.items()}
    photos = []
    for package_id, excel_row, data in rows:
        values = json.loads(data)
        typed = str(values.get("file_name") or "").strip()
        member = listings[package_id].find(typed) if typed else None
        if member is None or member.size == 0:
            continue
        code, package = by_id[package_id]
        photos.append(ListedPhoto(year, code, package_id, package.name, excel_row, typed, member.path,
                                  listings[package_id].sha256_of(member.path), date_of(values.get("taken_on"))))
    return photos


def hash_new_photos(engine: Engine, inbox_dir: Path, photos: list[ListedPhoto]) -> tuple[int, list[str]]:
    """Decode the photos whose content was never seen, through the worker door, and store their facts.
    Returns how many were stored and the packages a worker failed on (for the log)."""
    with engine.connect() as conn:
        known = set(stored_facts(conn, {p.sha256 for p in photos}))
    wanted: dict[str, dict[str, str]] = defaultdict(dict)  # package name -> member -> sha256
    for photo in photos:
        if photo.sha256 not in known:
            known.add(photo.sha256)  # one decode per content, whichever package holds it first
            wanted[photo.package_name][photo.member] = photo.sha256
    batches = [PhotoBatch(str(inbox_dir / name), tuple(members.items())) for name, members in sorted(wanted.items())]
    stored, failed = 0, []
    decoded = map_isolated(read_package_photos, batches)
    # A few hundred packages per commit: a crash later keeps what was decoded, and a national year's
    # first run does not pay a commit for each of its thousands of packages.
    while chunk := list(islice(decoded, _PACKAGES_PER_COMMIT)):
        rows = []
        for batch, result in chunk:
            if isinstance(result, WorkerFailure):
                log.warning("photo worker failed on %s (%s): %s", batch.package_path, result.limit, result.detail)
                failed.append(Path(batch.package_path).name)
                continue
            rows += [row for member, sha256 in batch.photos
                     if (row := _facts_row(sha256, result.get(member))) is not None]
        if rows:
            with engine.begin() as conn:
                conn.execute(insert(PhotoFactsRow), rows)
            stored += len(rows)
    return stored, failed


def _facts_row(sha256: str, facts: PhotoFacts | Unreadable | None) -> dict | None:
    if isinstance(facts, PhotoFacts):
        return dict(sha256=sha256, width=facts.width, height=facts.height, taken_at=facts.taken_at,
                    phash=facts.phash, error="")
    if isinstance(facts, Unreadable):
        return dict(sha256=sha256, width=None, height=None, taken_at=None, phash="", error=facts.reason)
    return None  # the package changed since intake: decoded when the next run takes it in


def stored_facts(conn: Connection, shas: set[str]) -> dict[str, PhotoFactsRow]:
    found: dict[str, PhotoFactsRow] = {}
    shas_list = sorted(shas)
    for start in range(0, len(shas_list), 1000):  # bounded IN lists
        rows = conn.execute(select(PhotoFactsRow).where(PhotoFactsRow.sha256.in_(shas_list[start:start + 1000])))
        found.update({row.sha256: row for row in rows})
    return found


def photo_findings(year: int, photos: list[ListedPhoto], earlier: list[ListedPhoto],
                   facts: dict[str, PhotoFactsRow], windows: dict[int, tuple[date | None, date | None]]
                   ) -> dict[int, list[tuple[ListedPhoto, Finding]]]:
    """package id -> (photo, finding) for the year's photos. `earlier`: the photos of earlier years;
    `windows`: package id -> its 服务开始日期 and 服务结束日期 as typed (None when unreadable)."""
    found: dict[int, list[tuple[ListedPhoto, Finding]]] = defaultdict(list)
    for photo in photos:
        row = facts.get(photo.sha256)
        if row is None or row.error:
            continue
        for finding in _single_photo(year, photo, row, windows.get(photo.package_id, (None, None))):
            found[photo.package_id].append((photo, finding))
    for photo, other in _same_pictures(photos, earlier, facts):
        found[photo.package_id].append((photo, _reuse(photo, other)))
    return found


def _single_photo(year: int, photo: ListedPhoto, facts: PhotoFactsRow,
                  window: tuple[date | None, date | None]) -> list[Finding]:
    findings = []
    if max(facts.width, facts.height) < MIN_LONG_SIDE:
        findings.append(make_finding("M010", photo=photo.file_name, width=facts.width, height=facts.height,
                                     min_side=MIN_LONG_SIDE))
    if facts.taken_at is None:
        return findings
    taken = facts.taken_at.date()
    start, end = window
    if taken.year != year:
        findings.append(make_finding("M006", photo=photo.file_name, taken=taken.isoformat(), window=f" {year} 年度"))
    elif start and end and not start <= taken <= end:
        findings.append(make_finding("M006", photo=photo.file_name, taken=taken.isoformat(),
                                     window=f"项目服务期（{start.isoformat()} 至 {end.isoformat()}）"))
    if photo.typed_date and abs((taken - photo.typed_date).days) > DATE_TOLERANCE_DAYS:
        findings.append(make_finding("M007", photo=photo.file_name, taken=taken.isoformat(),
                                     typed=photo.typed_date.isoformat(), days=abs((taken - photo.typed_date).days)))
    return findings


def _same_pictures(photos: list[ListedPhoto], earlier: list[ListedPhoto], facts: dict[str, PhotoFactsRow]
                   ) -> list[tuple[ListedPhoto, ListedPhoto]]:
    """(photo, a photo it matches in another package or another row of its own), at most
    MATCHES_NAMED per photo, the closest first: the same package (another member), another
    project of the same year, or any package of an earlier year. Hashes are compared as 64-bit
    integers, a block of the year's photos against all candidates at once."""
    def hashed(items: list[ListedPhoto]) -> list[ListedPhoto]:
        return [p for p in items if (f := facts.get(p.sha256)) is not None and f.phash]

    mine, candidates = hashed(photos), hashed(photos) + hashed(earlier)
    if not mine:
        return []
    as_int = np.array([int(facts[p.sha256].phash, 16) for p in candidates], dtype=np.uint64)
    pairs = []
    for start in range(0, len(mine), 512):  # bounded memory: 512 × candidates distances at a time
        block = as_int[start:min(start + 512, len(mine))]  # `candidates` begins with `mine`
        distances = np.bitwise_count(block[:, None] ^ as_int[None, :])
        for i, row in enumerate(distances):
            close = np.flatnonzero(row <= SAME_PHOTO_DISTANCE)
            # A stock picture can be in thousands of packages: look at the closest few only.
            close = close[np.argsort(row[close], kind="stable")][:4 * MATCHES_NAMED]
            photo, named = mine[start + i], set()
            for j in close:
                other = candidates[j]
                if other.package_id == photo.package_id and other.member == photo.member:
                    continue  # the same file listed on two rows is not a second photo
                if other.package_id not in named and len(named) < MATCHES_NAMED:
                    named.add(other.package_id)
                    pairs.append((photo, other))
    return pairs


def _reuse(photo: ListedPhoto, other: ListedPhoto) -> Finding:
    if other.package_id == photo.package_id:
        return make_finding("M009", photo=photo.file_name, other_photo=f"{other.file_name}（第 {other.excel_row} 行）")
    where = f"{other.year} 年度项目 {other.project_code}（材料包“{other.package_name}”）"
    return make_finding("M008", photo=photo.file_name, other=where, other_photo=other.file_name)


_WINDOW_FIELDS = ("service_start", "service_end")


def service_windows(conn: Connection, package_ids: list[int]) -> dict[int, tuple[date | None, date | None]]:
    # Of each package's 基本信息 rows (one per field), only those whose JSON names a window field are
    # fetched and parsed: the field name is written as it is (ASCII), so the text holds it in quotes. A
    # whole year's rows took 0.3 s for 5,000 packages, at every run (photo findings are the year's).
    named = or_(*(SheetRow.data.contains(f'"{name}"', autoescape=True) for name in _WINDOW_FIELDS))
    rows = conn.execute(select(SheetRow.package_id, SheetRow.data)
                        .where(SheetRow.package_id.in_(package_ids), SheetRow.sheet == BASIC_INFO.name, named)).all()
    typed: dict[int, dict[str, object]] = defaultdict(dict)
    for package_id, data in rows:
        values = json.loads(data)
        typed[package_id][values.get("field")] = values.get("value")
    return {pid: (date_of(v.get("service_start")), date_of(v.get("service_end"))) for pid, v in typed.items()}


def photo_places(conn: Connection, package_ids: list[int]) -> dict[int, PhotoPlace]:
    sheets = store.package_sheets(conn, package_ids, [PHOTOS.name])
    places = {}
    for (package_id, sheet), found in sheets.items():
        if sheet == PHOTOS.name:
            header = found["headers"].get("file_name", [PHOTOS.column("file_name").header])[0]
            places[package_id] = PhotoPlace(found["typed_name"], header)
    return places


def evidence_year(engine: Engine, inbox_dir: Path, registry: YearRegistry) -> dict[str, object]:
    """Decode the year's new photos, then replace the year's photo findings. Returns figures for the UI."""
    year = registry.year
    with engine.connect() as conn:
        photos = listed_photos(conn, year)
        earlier_years = sorted(set(conn.execute(select(Package.year).where(Package.year < year)).scalars()))
        earlier = [p for y in earlier_years for p in listed_photos(conn, y)]
    decoded, failed = hash_new_photos(engine, inbox_dir, photos)
    ids = sorted({p.package_id for p in photos})
    with engine.connect() as conn:
        facts = stored_facts(conn, {p.sha256 for p in photos} | {p.sha256 for p in earlier})
        windows = service_windows(conn, ids)
    found = photo_findings(year, photos, earlier, facts, windows)
    with engine.connect() as conn:  # of the packages with a finding only: a year has thousands of sheets
        places = photo_places(conn, sorted(found))
    rows = []
    for package_id, items in found.items():
        place = places.get(package_id, PhotoPlace(PHOTOS.name, PHOTOS.column("file_name").header))
        for photo, f in items:
            located = Finding(f.rule_id, f.severity, f.message, place.sheet, photo.excel_row, place.column,
                              photo.file_name)
            rows.append(store.finding_row(year, package_id, photo.project_code, located))
    with engine.begin() as conn:
        store.replace_findings(conn, STAGE, rows, year=year, whole_year=True)
    read = [facts[p.sha256] for p in photos if p.sha256 in facts and not facts[p.sha256].error]
    return dict(photos=len(photos), decoded=decoded, without_exif=sum(f.taken_at is None for f in read),
                unreadable=sum(1 for p in photos if p.sha256 in facts and facts[p.sha256].error),
                worker_failures=failed, by_rule=Counter(r["rule_id"] for r in rows), rows=rows)


_SHOWN_FINDINGS = 100


@dg.asset(deps=[package_validation], partitions_def=year_partitions, backfill_policy=single_run,
          group_name="evidence", kinds={"python"})
def photo_evidence(context: dg.AssetExecutionContext, warehouse: WarehouseResource, inbox: InboxResource,
                   registry: RegistryResource) -> dg.MaterializeResult:
    """照片佐证：读取各项目在用材料包影像资料中每张照片的拍摄时间（EXIF）、尺寸和感知哈希（只解码从未见过的照片），
    提示拍摄时间不在年度或服务期内、与登记的拍摄日期不符（M006、M007），与本年度其他项目或以往年度的照片相同或
    高度相似（M008），同一材料包内重复（M009），以及照片过小（M010）。均为警告，不影响材料包是否通过；
    没有 EXIF 拍摄时间的照片不算问题，只计数。"""
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        figures = evidence_year(warehouse.engine(), Path(inbox.path) / str(year), registry.year(year))
        if figures["worker_failures"]:
            context.log.warning(f"photo workers failed on {year}: {figures['worker_failures']}")
        context.log.info(f"photo evidence {year}: {figures['photos']} photos, {figures['decoded']} decoded")
        table = pd.DataFrame([dict(项目=r["project_code"], 规则=r["rule_id"], 行=r["row"], 照片=r["value"],
                                   说明=r["message"]) for r in figures["rows"][:_SHOWN_FINDINGS]])
        metadata[f"{year} 照片"] = dg.MetadataValue.json({
            "在用材料包登记的照片": figures["photos"], "本次新解码": figures["decoded"],
            "无 EXIF 拍摄时间": figures["without_exif"], "无法解码": figures["unreadable"],
            "解码失败的材料包": figures["worker_failures"]})
        metadata[f"{year} 照片问题（按规则）"] = dg.MetadataValue.json(dict(sorted(figures["by_rule"].items())))
        metadata[f"{year} 照片问题（前 {_SHOWN_FINDINGS} 条）"] = dg.MetadataValue.md(
            table.to_markdown(index=False) if len(table) else "无")
    return dg.MaterializeResult(metadata=metadata)
