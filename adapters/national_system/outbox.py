"""The outbox of the national system, in the warehouse (table ``national_filing``).

A report is committed here before anything is sent (``enqueue``); ``deliver`` then sends what is
open and ``poll`` asks for the system's verdict. Every step persists its result before the next
one starts, and every send is preceded by a read-back by idempotency key, so a process killed
between any two steps loses nothing and files nothing twice: the next run carries on.

Statuses: pending → filed (receipt held) → accepted | returned; refused (a 4xx, reason kept: N002);
dry_run (built, not sent; a real run sends it); corrected (an earlier version whose filing was
since corrected by a newer version: same receipt, no longer the live revision).
pending, dry_run and filed are what the operator sees as not yet confirmed (N003).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.national_system.client import NationalSystemClient, Receipt, Refused, Unauthorized, Unavailable
from adapters.warehouse.models import NationalFiling

log = logging.getLogger(__name__)

PENDING, DRY_RUN, FILED, ACCEPTED, RETURNED, REFUSED, CORRECTED = (
    "pending", "dry_run", "filed", "accepted", "returned", "refused", "corrected")
OPEN = (PENDING, DRY_RUN)  # still to be sent
UNCONFIRMED = (PENDING, DRY_RUN, FILED)  # N003: the system has not (yet) said accepted or returned
_FROM_SERVER = {"received": FILED, "accepted": ACCEPTED, "returned": RETURNED}
# After this many projects in a row could not be delivered, the system is down: stop for tonight.
MAX_CONSECUTIVE_UNAVAILABLE = 3

_t = NationalFiling.__table__


def canonical_json(payload: Any) -> str:
    """The one text of a report: sorted keys, Chinese as is, no spaces (hash input and key basis)."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(payload: Any) -> str:
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def idempotency_key(year: int, project_code: str, version: int, content_hash: str) -> str:
    # Same project, year, version and content → same key → the system answers with the same receipt.
    # The version keeps a unit's return to an earlier report (A → B → A) a new correction.
    return f"{year}:{project_code}:v{version}:{content_hash}"


class AttachmentUnreadable(Exception):
    """A file the report lists cannot be read here: a local problem, so the report waits (pending)."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # the warehouse keeps naive UTC


# --- enqueue -------------------------------------------------------------------------------------

def enqueue(engine: Engine, *, year: int, project_code: str, package_id: int, payload: dict) -> int:
    """Commit a report to the outbox and return its row id. The same content as the latest version
    adds nothing; any other content becomes the next version (sent later as a correction)."""
    return enqueue_many(engine, year, [(project_code, package_id, payload)])[0]


def enqueue_many(engine: Engine, year: int, reports: list[tuple[str, int, dict]]) -> list[int]:
    """enqueue for several projects' reports (project code, package id, payload) in one transaction:
    a national year queues some 2,000 at once. Returns their row ids, in order."""
    if not reports:
        return []
    digests = [content_hash(payload) for _, _, payload in reports]
    codes = sorted({code for code, _, _ in reports})
    try:
        with engine.begin() as conn:
            latest = {}
            for start in range(0, len(codes), 1000):  # bounded IN lists
                for row in conn.execute(select(_t.c.id, _t.c.project_code, _t.c.version, _t.c.content_hash)
                                        .where(_t.c.year == year, _t.c.project_code.in_(codes[start:start + 1000]))
                                        .order_by(_t.c.version)):
                    latest[row.project_code] = row  # versions ascending: the last one wins
            ids: list[int | None] = []
            new = []
            for (code, package_id, payload), digest in zip(reports, digests):
                if code in latest and latest[code].content_hash == digest:
                    ids.append(latest[code].id)
                    continue
                version = (latest[code].version if code in latest else 0) + 1
                now = _now()
                new.append((len(ids), dict(
                    year=year, project_code=code, version=version, package_id=package_id, content_hash=digest,
                    idempotency_key=idempotency_key(year, code, version, digest), payload=canonical_json(payload),
                    status=PENDING, attempts=0, last_error="", receipt_no="", corrects_receipt_no="",
                    server_time="", raw_response="", created_at=now, updated_at=now)))
                ids.append(None)
            if new:
                inserted = conn.execute(insert(_t).returning(_t.c.id, sort_by_parameter_order=True),
                                        [values for _, values in new]).scalars().all()
                for (position, _), row_id in zip(new, inserted):
                    ids[position] = row_id
            return ids
    except IntegrityError:
        if len(reports) > 1:  # a concurrent run enqueued some first: each on its own, as below
            return [enqueue(engine, year=year, project_code=code, package_id=package_id, payload=payload)
                    for code, package_id, payload in reports]
        # A concurrent run enqueued a version first: use the latest if it is this content.
        with engine.connect() as conn:
            return [conn.execute(select(_t.c.id).where(_t.c.year == year, _t.c.project_code == codes[0],
                                                       _t.c.content_hash == digests[0])
                                 .order_by(_t.c.version.desc()).limit(1)).scalar_one()]


# --- deliver ---------------------------------------------------------------------------------------

def deliver(engine: Engine, client: NationalSystemClient, fetch_attachment: Callable[[str], bytes], *,
            year: int | None = None, on_step: Callable[[str], None] | None = None) -> dict[str, int]:
    """Send every open report, oldest version first per project; return counts of what happened.

    `fetch_attachment(sha256)` returns a file's bytes (on LookupError/OSError that report waits and
    the others go on). `on_step(name)` is called after each step ("attempt", "readback", "uploaded",
    "sent", "stored", "dry_run"), so tests can kill the process at any of them. Counts returned:
    filed/accepted/returned (sent tonight), recovered (found by read-back: sent by a run that died),
    refused, pending (left for the next run), dry_run, unauthorized.
    """
    step = on_step or (lambda _name: None)
    counts: Counter[str] = Counter()
    down = 0
    for versions in _open_versions(engine, year):
        for row in versions:
            if client.dry_run:
                if row.status != DRY_RUN:
                    _update(engine, row.id, status=DRY_RUN)
                counts[DRY_RUN] += 1
                step("dry_run")
                continue
            try:
                counts[_deliver_one(engine, client, fetch_attachment, row, step)] += 1
                down = 0
            except Unauthorized as exc:
                # Every further call would fail the same way; the reports are not at fault.
                _update(engine, row.id, last_error=exc.message)
                log.error("national system refused the token (HTTP %s): delivery stopped", exc.status_code)
                counts["unauthorized"] += 1
                return dict(counts)
            except Refused as exc:
                _update(engine, row.id, status=REFUSED, last_error=exc.message, raw_response=exc.raw)
                log.warning("national report %s %s v%d refused: %s", row.project_code, row.year, row.version, exc.message)
                counts[REFUSED] += 1
            except AttachmentUnreadable as exc:
                _update(engine, row.id, last_error=str(exc))
                log.error("national report %s %s v%d waits: %s", row.project_code, row.year, row.version, exc)
                counts[PENDING] += 1
                break
            except Unavailable as exc:
                _update(engine, row.id, last_error=exc.last_error)
                log.warning("national report %s %s v%d not delivered, retried next run: %s",
                            row.project_code, row.year, row.version, exc.last_error)
                counts[PENDING] += 1
                down += 1
                # Later versions wait: they would correct a filing whose fate is still unknown.
                break
        if down >= MAX_CONSECUTIVE_UNAVAILABLE:
            log.warning("national system unavailable for %d projects in a row: delivery stopped", down)
            break
    return dict(counts)


def _deliver_one(engine: Engine, client: NationalSystemClient, fetch_attachment: Callable[[str], bytes],
                 row: Row, step: Callable[[str], None]) -> str:
    _update(engine, row.id, attempts=_t.c.attempts + 1)
    step("attempt")
    target = _correction_target(engine, row)
    # Read back first: an earlier run may have been killed after the system committed this key.
    receipt = client.find_by_key(row.idempotency_key)
    step("readback")
    recovered = receipt is not None
    if receipt is None:
        payload = json.loads(row.payload)
        for attachment in payload.get("attachments", []):
            sha256 = attachment["sha256"]
            if not client.has_attachment(sha256):
                try:
                    data = fetch_attachment(sha256)
                except (LookupError, OSError) as exc:
                    raise AttachmentUnreadable(f"附件 {attachment.get('name', sha256)} 无法读取：{exc}") from exc
                client.upload_attachment(sha256, data)
        step("uploaded")
        if target:
            receipt = client.correct_filing(target, row.idempotency_key, payload)
        else:
            receipt = client.file_report(row.idempotency_key, payload)
        step("sent")
    status = _store(engine, row, receipt, target)
    step("stored")
    log.info("national report %s %s v%d %s: receipt %s revision %d%s", row.project_code, row.year, row.version,
             status, receipt.receipt_no, receipt.revision, " (read back)" if recovered else "")
    return "recovered" if recovered else status


def _correction_target(engine: Engine, row: Row) -> str:
    """The receipt of the project's filing, if an earlier version has one ('' → a first filing)."""
    with engine.connect() as conn:
        return conn.execute(
            select(_t.c.receipt_no)
            .where((_t.c.year == row.year) & (_t.c.project_code == row.project_code)
                   & (_t.c.version < row.version) & (_t.c.receipt_no != ""))
            .order_by(_t.c.version.desc()).limit(1)).scalar() or ""


def _store(engine: Engine, row: Row, receipt: Receipt, target: str) -> str:
    status = _FROM_SERVER.get(receipt.status, FILED)
    with engine.begin() as conn:
        conn.execute(update(_t).where(_t.c.id == row.id).values(
            status=status, receipt_no=receipt.receipt_no, corrects_receipt_no=target,
            server_time=receipt.server_time, raw_response=receipt.raw,
            last_error=receipt.reason if status == RETURNED else "", updated_at=_now()))
        if target:
            # In the same transaction: the earlier versions stop being the live revision.
            conn.execute(update(_t).where(
                (_t.c.year == row.year) & (_t.c.project_code == row.project_code) & (_t.c.version < row.version)
                & (_t.c.receipt_no == target) & (_t.c.status.in_((FILED, ACCEPTED, RETURNED)))
            ).values(status=CORRECTED, updated_at=_now()))
    return status


# --- poll --------------------------------------------------------------------------------------------

def poll(engine: Engine, client: NationalSystemClient, *, year: int | None = None) -> dict[str, int]:
    """Ask the verdict of every filed report; store accepted, or returned with the system's reason."""
    counts: Counter[str] = Counter()
    if client.dry_run:
        return {}
    query = select(_t).where(_t.c.status == FILED).order_by(_t.c.year, _t.c.project_code, _t.c.version)
    if year is not None:
        query = query.where(_t.c.year == year)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    for row in rows:
        try:
            receipt = client.status(row.receipt_no)
        except Unauthorized as exc:
            _update(engine, row.id, last_error=exc.message)
            counts["unauthorized"] += 1
            break
        except Refused as exc:
            _update(engine, row.id, last_error=exc.message)
            counts[FILED] += 1
            continue
        except Unavailable as exc:
            _update(engine, row.id, last_error=exc.last_error)
            counts[FILED] += 1
            break  # the system is down; the next run asks again
        status = _FROM_SERVER.get(receipt.status, FILED)
        _update(engine, row.id, status=status, last_error=receipt.reason if status == RETURNED else "")
        counts[status] += 1
    return dict(counts)


# --- operator views ----------------------------------------------------------------------------------

def filings(engine: Engine, year: int) -> list[dict]:
    """Every outbox row of a year, for the operator views (payload and raw answer left out)."""
    columns = [_t.c.id, _t.c.project_code, _t.c.version, _t.c.package_id, _t.c.status, _t.c.receipt_no,
               _t.c.corrects_receipt_no, _t.c.attempts, _t.c.last_error, _t.c.server_time,
               _t.c.idempotency_key, _t.c.created_at, _t.c.updated_at]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(_t.c.year == year).order_by(_t.c.project_code, _t.c.version))
        return [dict(r._mapping) for r in rows]


def _open_versions(engine: Engine, year: int | None) -> Iterator[list[Row]]:
    """The open versions of each project with any, oldest first, project by project; read in one query
    (a national year has thousands of projects, a query each cost 0.3 s a night). Delivering one project
    changes no other project's rows, so rows read up front are as good as rows read just before."""
    query = select(_t).where(_t.c.status.in_(OPEN)).order_by(_t.c.year, _t.c.project_code, _t.c.version)
    if year is not None:
        query = query.where(_t.c.year == year)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    for _, versions in groupby(rows, key=lambda row: (row.year, row.project_code)):
        yield list(versions)


def _update(engine: Engine, filing_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(_t).where(_t.c.id == filing_id).values(**values, updated_at=_now()))
