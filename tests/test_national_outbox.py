"""The outbox against the mock over real HTTP, on SQLite and PostgreSQL: exactly once through
every fault, a crash at every step, and a proxy that breaks connections at random."""

from __future__ import annotations

import json
import logging
import multiprocessing

import pytest
from sqlalchemy import select

from adapters.national_system import outbox
from adapters.national_system.mock_server import Faults
from adapters.warehouse.models import NationalFiling
from national_helpers import (  # noqa: F401 - `mock` is a fixture
    CRASH_EXIT,
    TOKEN,
    FaultProxy,
    add_package,
    assert_token_absent,
    calls,
    deliver_and_die,
    fetch_attachment,
    filings_by_project,
    make_client,
    mock,
    open_rows,
    sample_report,
    seeded_chaos,
    warehouse,
)

YEAR = 2023


@pytest.fixture
def engine(database_url):
    engine = warehouse(database_url)
    yield engine
    engine.dispose()


def queue(engine, code: str = "2023-GT-01", **changes) -> int:
    return outbox.enqueue(engine, year=YEAR, project_code=code, package_id=add_package(engine, code),
                          payload=sample_report(code, **changes))


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(NationalFiling.__table__).order_by(NationalFiling.project_code, NationalFiling.version))]


def deliver(engine, client, **kw) -> dict:
    return outbox.deliver(engine, client, fetch_attachment, **kw)


def assert_exactly_once(mock, engine) -> None:
    """Per project: one filing at the system, one revision per outbox version that has a receipt,
    each under that version's key, and the outbox holding that receipt."""
    at_system = filings_by_project(mock)
    by_project: dict[str, list[dict]] = {}
    for row in rows(engine):
        by_project.setdefault(row["project_code"], []).append(row)
    for code, versions in by_project.items():
        sent = [v for v in versions if v["receipt_no"]]
        if not sent:
            assert code not in at_system
            continue
        (filing,) = at_system[code]
        assert [r["idempotency_key"] for r in filing["revisions"]] == [v["idempotency_key"] for v in sent]
        assert {v["receipt_no"] for v in sent} == {filing["receipt_no"]}


def test_enqueue_is_idempotent_and_versions_changed_content(engine):
    first = queue(engine)
    assert queue(engine) == first  # the same report again: nothing new
    second = queue(engine, service__people_served=900)
    assert second != first
    stored = rows(engine)
    assert [(r["version"], r["status"], r["attempts"]) for r in stored] == [(1, "pending", 0), (2, "pending", 0)]
    report = sample_report()
    assert stored[0]["content_hash"] == outbox.content_hash(report)
    assert stored[0]["idempotency_key"] == f"2023:2023-GT-01:v1:{outbox.content_hash(report)}"
    assert json.loads(stored[0]["payload"]) == report and "上海市" in stored[0]["payload"]
    # The hash is of canonical JSON: key order does not make a new version.
    reordered = dict(reversed(list(sample_report().items())))
    assert outbox.content_hash(reordered) == outbox.content_hash(report)


def test_enqueue_many_is_enqueue_for_each_report_in_one_transaction(engine):
    codes = ["2023-GT-01", "2023-GB-01", "2023-GT-02"]
    packages = {code: add_package(engine, code) for code in codes}
    before = queue(engine, "2023-GB-01")  # already queued with this content
    changed = queue(engine, "2023-GT-02", service__people_served=1)  # queued with other content
    ids = outbox.enqueue_many(engine, YEAR, [(code, packages[code], sample_report(code)) for code in codes])
    stored = {(r["project_code"], r["version"]): r for r in rows(engine)}
    assert ids[1] == before  # the same content: nothing new, its row's id
    assert stored[("2023-GT-01", 1)]["id"] == ids[0] and stored[("2023-GT-02", 2)]["id"] == ids[2]
    assert changed != ids[2] and stored[("2023-GT-02", 1)]["id"] == changed  # new content: the next version
    assert len(stored) == 4
    for code, row_id in zip(codes, ids):
        row = next(r for r in stored.values() if r["id"] == row_id)
        assert (row["project_code"], json.loads(row["payload"])) == (code, sample_report(code))
    # Again, all the same content: nothing new, the same ids.
    assert outbox.enqueue_many(engine, YEAR, [(c, packages[c], sample_report(c)) for c in codes]) == ids
    assert len(rows(engine)) == 4


def test_enqueue_many_when_another_run_queued_one_first(engine, database_url, monkeypatch):
    """Two runs of a year at once: the other run commits a report between this run's read of the
    latest versions and its insert. The batch's insert then hits the unique version, and each report
    is queued on its own: the one the other run queued is not queued twice, the rest are queued."""
    codes = ["2023-GT-01", "2023-GB-01"]
    packages = {code: add_package(engine, code) for code in codes}
    other = warehouse(database_url)
    stamp, raced = outbox._now, []

    def now_after_another_run():  # called between the read and the insert
        if not raced:
            raced.append(True)
            raced.append(outbox.enqueue(other, year=YEAR, project_code=codes[0], package_id=packages[codes[0]],
                                        payload=sample_report(codes[0])))
        return stamp()

    monkeypatch.setattr(outbox, "_now", now_after_another_run)
    try:
        ids = outbox.enqueue_many(engine, YEAR, [(code, packages[code], sample_report(code)) for code in codes])
    finally:
        other.dispose()
    stored = rows(engine)
    assert [(r["project_code"], r["version"]) for r in stored] == [("2023-GB-01", 1), ("2023-GT-01", 1)]
    assert ids[0] == raced[1]  # the other run's row, not a second version of the same content
    assert ids[1] == next(r["id"] for r in stored if r["project_code"] == "2023-GB-01")


def test_deliver_files_stores_the_receipt_and_poll_gets_the_verdict(engine, mock, caplog):
    caplog.set_level(logging.DEBUG)
    queue(engine, "2023-GT-01")
    queue(engine, "2023-GB-01")
    client = make_client(mock.url)
    assert deliver(engine, client) == {"filed": 2}
    stored = rows(engine)
    assert [(r["status"], r["attempts"], r["last_error"]) for r in stored] == [("filed", 1, "")] * 2
    for row in stored:
        assert row["receipt_no"].startswith("ZJFW-2023-") and row["server_time"].endswith("+08:00")
        assert json.loads(row["raw_response"])["receipt_no"] == row["receipt_no"]
    assert deliver(engine, client) == {}  # nothing open: nothing sent
    assert outbox.poll(engine, client) == {"accepted": 2}
    assert {r["status"] for r in rows(engine)} == {"accepted"}
    assert len(mock.snapshot()["attachments"]) == 3  # uploaded once, shared by both reports
    assert_exactly_once(mock, engine)
    view = outbox.filings(engine, YEAR)
    assert [(v["project_code"], v["version"], v["status"]) for v in view] == [
        ("2023-GB-01", 1, "accepted"), ("2023-GT-01", 1, "accepted")]
    assert {"receipt_no", "attempts", "last_error", "server_time"} <= set(view[0])
    assert_token_absent(stored, rows(engine), caplog.text)


def test_a_changed_report_is_sent_as_a_correction(engine, mock):
    client = make_client(mock.url)
    queue(engine)
    deliver(engine, client)
    outbox.poll(engine, client)
    queue(engine, money__audit__firm="上海众华会计师事务所")
    assert deliver(engine, client) == {"filed": 1}
    first, second = rows(engine)
    assert first["status"] == "corrected" and second["status"] == "filed"
    assert second["receipt_no"] == first["receipt_no"] == second["corrects_receipt_no"]
    (filing,) = filings_by_project(mock)["2023-GT-01"]
    assert [r["revision"] for r in filing["revisions"]] == [1, 2]
    assert outbox.poll(engine, client) == {"accepted": 1}
    assert [r["status"] for r in rows(engine)] == ["corrected", "accepted"]
    assert_exactly_once(mock, engine)


def test_refusal_is_kept_with_its_reason_and_not_retried(engine, mock):
    mock.set_faults(Faults(refuse_field="project.uscc", refuse_reason="统一社会信用代码不能为空"))
    queue(engine)
    client = make_client(mock.url)
    assert deliver(engine, client) == {"refused": 1}
    (row,) = rows(engine)
    assert row["status"] == "refused" and row["receipt_no"] == ""
    assert row["last_error"] == "国家系统拒绝（HTTP 422）：project.uscc：统一社会信用代码不能为空"
    assert json.loads(row["raw_response"])["field"] == "project.uscc"
    assert deliver(engine, client) == {}
    assert len(calls(mock, "POST")) == 1 and client._sleep == []
    # The unit fixes it: the new version is a first filing (nothing was filed before).
    mock.set_faults(Faults())
    queue(engine, project__uscc="91310000132212346Y")
    assert deliver(engine, client) == {"filed": 1}
    assert rows(engine)[1]["corrects_receipt_no"] == ""
    assert_exactly_once(mock, engine)


def test_wrong_token_stops_delivery_and_keeps_reports_pending(engine, mock):
    queue(engine, "2023-GT-01")
    queue(engine, "2023-GT-02")
    client = make_client(mock.url, token="wrong")
    assert deliver(engine, client) == {"unauthorized": 1}
    assert len(mock.calls) == 1  # no retry storm, no second project tried
    stored = rows(engine)
    assert [r["status"] for r in stored] == ["pending", "pending"]
    assert "HTTP 401" in stored[0]["last_error"]
    assert deliver(engine, make_client(mock.url)) == {"filed": 2}


def test_retries_exhausted_stay_pending_and_the_next_run_finishes(engine, mock):
    queue(engine)
    mock.set_faults(Faults(fail_first_n=100, fail_status=500))
    client = make_client(mock.url, max_attempts=3)
    assert deliver(engine, client) == {"pending": 1}
    (row,) = rows(engine)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "3 次尝试均失败" in row["last_error"] and "HTTP 500" in row["last_error"]
    assert len(client._sleep) == 2
    assert deliver(engine, client) == {"pending": 1}
    mock.set_faults(Faults())  # the system is back
    assert deliver(engine, client) == {"filed": 1}
    (row,) = rows(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == ("filed", 3, "")
    assert_exactly_once(mock, engine)


def test_an_undelivered_version_holds_back_the_next(engine, mock):
    queue(engine)
    mock.set_faults(Faults(fail_first_n=100))
    deliver(engine, make_client(mock.url, max_attempts=2))
    queue(engine, service__trainees=300)
    deliver(engine, make_client(mock.url, max_attempts=2))
    assert [r["status"] for r in rows(engine)] == ["pending", "pending"]
    assert [r["attempts"] for r in rows(engine)] == [2, 0]  # version 2 never tried before version 1
    mock.set_faults(Faults())
    assert deliver(engine, make_client(mock.url)) == {"filed": 2}
    first, second = rows(engine)
    assert (first["status"], second["status"]) == ("corrected", "filed")
    assert_exactly_once(mock, engine)


def test_an_unreadable_attachment_holds_only_its_own_report(engine, mock):
    queue(engine, "2023-GT-01", attachments=[{"kind": "work_summary", "name": "丢失.pdf", "sha256": "ab" * 32}])
    queue(engine, "2023-GT-02")
    assert deliver(engine, make_client(mock.url)) == {"pending": 1, "filed": 1}
    lost, sent = rows(engine)
    assert lost["status"] == "pending" and "丢失.pdf 无法读取" in lost["last_error"]
    assert sent["status"] == "filed"
    assert_exactly_once(mock, engine)


def test_the_system_being_down_stops_the_run_after_three_projects(engine, mock):
    for i in range(5):
        queue(engine, f"2023-GT-{i:02d}")
    mock.set_faults(Faults(fail_first_n=1000))
    assert deliver(engine, make_client(mock.url, max_attempts=2)) == {"pending": 3}
    assert [r["attempts"] for r in rows(engine)] == [1, 1, 1, 0, 0]


@pytest.mark.parametrize("fault", [
    Faults(drop_after_commit=1),
    Faults(slow_ms=1500, slow_method="POST", slow_first_n=1),
    Faults(fail_first_n=4, fail_status=500),
    Faults(fail_first_n=4, fail_status=429, retry_after_s=2),
], ids=["drop_after_commit", "slow", "500s", "429s"])
def test_each_fault_ends_in_exactly_one_filing(engine, mock, fault):
    queue(engine)
    mock.set_faults(fault)
    client = make_client(mock.url, timeout_s=0.5, max_attempts=8)
    assert deliver(engine, client).keys() <= {"filed", "recovered"}
    (row,) = rows(engine)
    assert row["status"] == "filed" and row["receipt_no"]
    assert_exactly_once(mock, engine)
    if fault.fail_status == 429 and fault.fail_first_n:
        assert client._sleep and min(client._sleep) >= 2


def test_a_system_too_slow_tonight_is_finished_tomorrow(engine, mock):
    queue(engine)
    mock.set_faults(Faults(slow_ms=800))  # every answer later than the client waits
    client = make_client(mock.url, timeout_s=0.3, max_attempts=2)
    assert deliver(engine, client) == {"pending": 1}
    assert "超时" in rows(engine)[0]["last_error"]
    mock.set_faults(Faults())
    assert deliver(engine, client) == {"filed": 1}
    assert_exactly_once(mock, engine)


def test_dry_run_builds_and_stores_but_sends_nothing(engine, mock):
    queue(engine)
    dry = make_client(mock.url, dry_run=True)
    assert deliver(engine, dry) == {"dry_run": 1}
    assert outbox.poll(engine, dry) == {}
    (row,) = rows(engine)
    assert row["status"] == "dry_run" and json.loads(row["payload"])["project"]["province"] == "上海市"
    assert mock.calls == []
    assert deliver(engine, make_client(mock.url)) == {"filed": 1}  # a real run sends it
    assert_exactly_once(mock, engine)


def test_a_returned_filing_keeps_the_reason(engine, mock):
    mock.set_faults(Faults(review_after_polls=2, return_reason="照片说明与活动不符，请补充"))
    queue(engine)
    client = make_client(mock.url)
    deliver(engine, client)
    assert outbox.poll(engine, client) == {"filed": 1}  # not decided at the first poll
    assert outbox.poll(engine, client) == {"returned": 1}
    (row,) = rows(engine)
    assert (row["status"], row["last_error"]) == ("returned", "照片说明与活动不符，请补充")
    # The unit resubmits: a correction, reviewed afresh.
    mock.set_faults(Faults(review_after_polls=0))
    queue(engine, attachments=sample_report()["attachments"][:2])
    assert deliver(engine, client) == {"accepted": 1}
    assert [r["status"] for r in rows(engine)] == ["corrected", "accepted"]
    assert_exactly_once(mock, engine)


STEPS = ["attempt", "readback", "uploaded", "sent", "stored"]


def test_a_crash_at_any_step_loses_nothing_and_duplicates_nothing(engine, mock, database_url):
    fork = multiprocessing.get_context("fork")
    client = make_client(mock.url)
    for i, step in enumerate(STEPS):
        code = f"2023-CR-{i:02d}"
        for version, changes in enumerate([{}, {"service__activity_count": 7}], start=1):
            queue(engine, code, **changes)
            engine.dispose()  # the child must not share the parent's pooled connections
            child = fork.Process(target=deliver_and_die, args=(database_url, mock.url, step))
            child.start()
            child.join(60)
            assert child.exitcode == CRASH_EXIT, f"v{version} did not die at {step}"
            assert deliver(engine, client).keys() <= {"filed", "recovered"}
            assert open_rows(rows(engine)) == []
    assert_exactly_once(mock, engine)
    # Each version was POSTed exactly once across the killed run and the next: after a crash at
    # "sent" or "stored", the next run read it back instead of sending it again.
    assert len(calls(mock, "POST")) == 2 * len(STEPS)
    at_system = filings_by_project(mock)
    for row in rows(engine):
        assert row["status"] == ("corrected" if row["version"] == 1 else "filed")
        assert len(at_system[row["project_code"]][0]["revisions"]) == 2


def test_exactly_once_through_a_proxy_that_breaks_connections(engine, mock):
    proxy = FaultProxy(mock.url, seeded_chaos(seed=20231110), late_s=0.8)
    client = make_client(proxy.url, timeout_s=0.5, max_attempts=6)
    codes = [f"2023-GT-{i:02d}" for i in range(4)]
    try:
        for changes in [{}, {"service__problems_solved": 20}]:
            for code in codes:
                queue(engine, code, **changes)
            for _ in range(30):
                if not open_rows(rows(engine)):
                    break
                deliver(engine, client)
            assert open_rows(rows(engine)) == []
            for _ in range(30):
                if all(r["status"] != "filed" for r in rows(engine)):
                    break
                outbox.poll(engine, client)
    finally:
        proxy.close()
    assert len(set(proxy.actions) - {"pass"}) >= 5, proxy.actions  # the proxy really did break things
    assert [r["status"] for r in rows(engine)] == ["corrected", "accepted"] * len(codes)
    assert_exactly_once(mock, engine)
    assert all(len(f[0]["revisions"]) == 2 for f in filings_by_project(mock).values())


def test_the_token_is_in_no_outbox_row(engine, mock):
    mock.set_faults(Faults(fail_first_n=1, drop_after_commit=1))
    queue(engine)
    deliver(engine, make_client(mock.url))
    mock.set_faults(Faults(refuse_field="money.audit", refuse_reason=f"令牌 {TOKEN} 已记录"))
    queue(engine, service__experts=14)
    deliver(engine, make_client(mock.url))
    stored = rows(engine)
    assert [r["status"] for r in stored] == ["filed", "refused"]
    for row in stored:
        assert_token_absent(*row.values())



def test_a_return_to_an_earlier_report_is_filed_as_a_new_correction(engine, mock):
    """A → B → A: the third report is version 3, sent as a correction, not swallowed by version 1."""
    a = queue(engine)
    b = queue(engine, service__people_served=900)
    again = queue(engine)
    assert len({a, b, again}) == 3 and queue(engine) == again  # a repeat of the latest adds nothing
    deliver(engine, make_client(mock.url))
    stored = rows(engine)
    assert [(r["version"], r["status"]) for r in stored] == [(1, "corrected"), (2, "corrected"), (3, "filed")]
    assert_exactly_once(mock, engine)
