"""The national-system client against the mock, over real HTTP on loopback, fault by fault."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from email.utils import format_datetime
from datetime import UTC, datetime, timedelta

import pytest
import requests
import yaml

from adapters.national_system.client import Refused, Unauthorized, Unavailable, _retry_after
from adapters.national_system.mock_server import CONTRACT, Faults, serve, validate_report
from adapters.national_system.outbox import content_hash, idempotency_key
from national_helpers import (  # noqa: F401 - `mock` is a fixture
    ATTACHMENTS,
    TOKEN,
    assert_token_absent,
    calls,
    make_client,
    mock,
    sample_report,
)


def key_of(report: dict, version: int = 1) -> str:
    return idempotency_key(report["year"], report["project"]["code"], version, content_hash(report))


def upload_all(client) -> None:
    for sha, data in ATTACHMENTS.items():
        if not client.has_attachment(sha):
            client.upload_attachment(sha, data)


def one_filing(mock, revisions: int = 1) -> dict:
    filings = mock.snapshot()["filings"]
    assert len(filings) == 1
    assert [r["revision"] for r in filings[0]["revisions"]] == list(range(1, revisions + 1))
    return filings[0]


def test_file_read_back_and_status(mock):
    client = make_client(mock.url)
    upload_all(client)
    report = sample_report()
    key = key_of(report)
    assert client.find_by_key(key) is None
    receipt = client.file_report(key, report)
    assert receipt.receipt_no == "ZJFW-2023-000001" and receipt.revision == 1 and receipt.status == "received"
    assert receipt.server_time.startswith(str(datetime.now().year)) and receipt.server_time.endswith("+08:00")
    # The same report again is the same filing: same receipt, nothing new at the system.
    assert client.file_report(key, report) == receipt
    assert client.find_by_key(key) == receipt
    assert client.status(receipt.receipt_no).status == "accepted"  # reviewed at the first poll
    one_filing(mock)
    assert client._sleep == []


def test_the_mock_answers_every_operation_of_the_contract(mock):
    spec = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    operations = [(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in ("get", "head", "put", "post")]
    assert len(operations) == 6
    for method, path in operations:
        url = mock.url + path.format(sha256="0" * 64, receipt_no="ZJFW-2023-000001")
        anonymous = requests.request(method, url, timeout=5)
        assert anonymous.status_code == 401, (method, path)  # the token is required everywhere
        answer = requests.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert answer.status_code != 401 and "无此接口" not in answer.text, (method, path)


def test_attachments_are_uploaded_once_and_checked(mock):
    client = make_client(mock.url)
    sha, data = next(iter(ATTACHMENTS.items()))
    assert not client.has_attachment(sha)
    client.upload_attachment(sha, data)
    client.upload_attachment(sha, data)  # idempotent
    assert client.has_attachment(sha)
    with pytest.raises(Refused) as refused:
        client.upload_attachment(sha, data + b"tampered")
    assert refused.value.status_code == 422 and refused.value.field == "sha256"
    assert mock.snapshot()["attachments"] == [{"sha256": sha, "size": len(data)}]


def test_first_n_500s_are_retried_with_read_back(mock):
    mock.set_faults(Faults(fail_first_n=3, fail_status=500))
    client = make_client(mock.url)
    report = sample_report()
    upload_all(client)  # the three 500s land on the attachment calls and are retried there
    assert len(client._sleep) == 3
    receipt = client.file_report(key_of(report), report)
    assert receipt.revision == 1
    one_filing(mock)
    assert [c["status"] for c in mock.calls[:3]] == [500, 500, 500]


def test_a_500_on_the_filing_is_read_back_before_resending(mock):
    client = make_client(mock.url)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(fail_first_n=2, fail_status=500))
    receipt = client.file_report(key_of(report), report)
    # POST 500 → (a 500 may follow a commit) read back: 500 → read back: 404 → POST 201
    assert [(c["method"], c["status"]) for c in calls(mock)] == [("POST", 500), ("GET", 500), ("GET", 404), ("POST", 201)]
    assert receipt.receipt_no == one_filing(mock)["receipt_no"]


def test_429_waits_at_least_retry_after_and_does_not_read_back(mock):
    client = make_client(mock.url)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(fail_first_n=2, fail_status=429, retry_after_s=7))
    client.file_report(key_of(report), report)
    assert client._sleep and all(wait >= 7 for wait in client._sleep) and len(client._sleep) == 2
    # A 429 is refused before any processing: no read-back needed.
    assert [(c["method"], c["status"]) for c in calls(mock)] == [("POST", 429), ("POST", 429), ("POST", 201)]
    one_filing(mock)


def test_retry_after_longer_than_allowed_leaves_it_for_the_next_run(mock):
    client = make_client(mock.url, retry_after_max_s=60)
    mock.set_faults(Faults(fail_first_n=1, fail_status=503, retry_after_s=3600))
    with pytest.raises(Unavailable, match="3600"):
        client.has_attachment("0" * 64)
    assert client._sleep == []


def test_retry_after_as_http_date():
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _retry_after(soon) <= 30
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert _retry_after("5") == 5 and _retry_after("garbage") is None and _retry_after(None) is None


def test_slow_answer_beyond_the_timeout_is_read_back_not_resent(mock):
    client = make_client(mock.url, timeout_s=0.3)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(slow_ms=1200, slow_first_n=1))
    receipt = client.file_report(key_of(report), report)
    # The first POST was committed; its answer came too late. The read-back found it.
    assert [(c["method"], c["status"]) for c in calls(mock)] == [("POST", 201), ("GET", 200)]
    assert receipt.receipt_no == one_filing(mock)["receipt_no"]
    assert len(client._sleep) == 1


def test_drop_after_commit_files_exactly_once(mock):
    client = make_client(mock.url)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(drop_after_commit=1))
    receipt = client.file_report(key_of(report), report)
    assert [(c["method"], c["status"]) for c in calls(mock)] == [("POST", "dropped"), ("GET", 200)]
    filing = one_filing(mock)
    assert receipt.receipt_no == filing["receipt_no"]
    assert filing["revisions"][0]["idempotency_key"] == key_of(report)


def test_the_mock_itself_deduplicates_by_key(mock):
    """Even a naive client that re-sends blindly gets one filing (server-side idempotency)."""
    upload_all(make_client(mock.url))
    report = sample_report()
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key_of(report)}
    first = requests.post(f"{mock.url}/api/v1/filings", json=report, headers=headers, timeout=5)
    again = requests.post(f"{mock.url}/api/v1/filings", json=report, headers=headers, timeout=5)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["receipt_no"] == again.json()["receipt_no"]
    # The same key with another report is a client bug, refused.
    other = requests.post(f"{mock.url}/api/v1/filings", json=sample_report(service__experts=13),
                          headers=headers, timeout=5)
    assert other.status_code == 409
    one_filing(mock)


def test_field_level_refusal_is_not_retried(mock):
    client = make_client(mock.url)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(refuse_field="project.uscc", refuse_reason="统一社会信用代码不能为空"))
    with pytest.raises(Refused) as refused:
        client.file_report(key_of(report), report)
    assert (refused.value.status_code, refused.value.field) == (422, "project.uscc")
    assert refused.value.message == "国家系统拒绝（HTTP 422）：project.uscc：统一社会信用代码不能为空"
    assert [(c["method"], c["status"]) for c in calls(mock)] == [("POST", 422)]
    assert mock.snapshot()["filings"] == [] and client._sleep == []


def test_the_contract_is_enforced(mock):
    client = make_client(mock.url)
    incomplete = sample_report(project__uscc="")
    with pytest.raises(Refused) as refused:
        client.file_report(key_of(incomplete), incomplete)
    assert refused.value.field == "project.uscc"
    report = sample_report()  # attachments not uploaded yet
    with pytest.raises(Refused) as refused:
        client.file_report(key_of(report), report)
    assert refused.value.field == "attachments[0].sha256" and "附件未上传" in refused.value.reason
    assert validate_report(sample_report()) is None
    assert validate_report(sample_report(service__experts="12")) == ("service.experts", "应为整数：service.experts")
    assert mock.snapshot()["filings"] == []


def test_wrong_token_is_refused_once(mock):
    client = make_client(mock.url, token="not-the-token")
    report = sample_report()
    with pytest.raises(Unauthorized) as refused:
        client.file_report(key_of(report), report)
    assert refused.value.status_code == 401
    assert len(mock.calls) == 1 and client._sleep == []
    missing = requests.get(f"{mock.url}/api/v1/filings", params={"idempotency_key": "x"}, timeout=5)
    assert missing.status_code == 401


def test_a_changed_report_is_a_correction_of_the_same_filing(mock):
    client = make_client(mock.url)
    upload_all(client)
    first, changed = sample_report(), sample_report(service__people_served=900)
    receipt = client.file_report(key_of(first), first)
    client.status(receipt.receipt_no)  # accepted
    corrected = client.correct_filing(receipt.receipt_no, key_of(changed), changed)
    assert (corrected.receipt_no, corrected.revision, corrected.status) == (receipt.receipt_no, 2, "received")
    assert client.correct_filing(receipt.receipt_no, key_of(changed), changed) == corrected  # replay
    assert client.find_by_key(key_of(changed)) == corrected
    assert client.find_by_key(key_of(first)).revision == 1
    # Filing the changed report as new instead would be a second filing: the system says no.
    with pytest.raises(Refused) as refused:
        client.file_report(key_of(changed) + "x", changed)
    assert refused.value.status_code == 409 and receipt.receipt_no in refused.value.reason
    filing = one_filing(mock, revisions=2)
    assert [r["idempotency_key"] for r in filing["revisions"]] == [key_of(first), key_of(changed)]


def test_retries_exhausted_raise_unavailable_with_bounded_jittered_backoff(mock):
    client = make_client(mock.url, max_attempts=4, backoff_base_s=1, backoff_max_s=3)
    mock.set_faults(Faults(fail_first_n=100, fail_status=503, retry_after_s=0))
    with pytest.raises(Unavailable) as unavailable:
        client.has_attachment("0" * 64)
    assert "4 次尝试均失败" in unavailable.value.last_error and "HTTP 503" in unavailable.value.last_error
    assert len(mock.calls) == 4 and len(client._sleep) == 3
    assert all(0 <= wait <= cap for wait, cap in zip(client._sleep, [1, 2, 3]))


def test_connection_refused_is_unavailable(mock):
    client = make_client("http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(Unavailable, match="连接中断"):
        client.status("ZJFW-2023-000001")


def test_dry_run_client_sends_nothing(mock):
    client = make_client(mock.url, dry_run=True)
    with pytest.raises(RuntimeError, match="dry run"):
        client.file_report("k", sample_report())
    assert mock.calls == []


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state.sqlite3"
    server = serve(0, state, TOKEN)
    client = make_client(server.url)
    upload_all(client)
    report = sample_report()
    receipt = client.file_report(key_of(report), report)
    server.stop()
    again = serve(0, state, TOKEN)
    try:
        client = make_client(again.url)
        assert client.find_by_key(key_of(report)) == receipt
        assert client.has_attachment(report["attachments"][0]["sha256"])
        assert len(again.snapshot()["filings"]) == 1
    finally:
        again.stop()


def test_admin_endpoints_switch_faults_at_runtime(mock):
    answer = requests.post(f"{mock.url}/_admin/faults", json={"fail_first_n": 1, "fail_status": 429}, timeout=5)
    assert answer.status_code == 200 and mock.faults.fail_status == 429
    assert requests.post(f"{mock.url}/_admin/faults", json={"bogus": 1}, timeout=5).status_code == 400
    client = make_client(mock.url)
    assert not client.has_attachment("0" * 64)
    state = requests.get(f"{mock.url}/_admin/state", timeout=5).json()
    assert [c["status"] for c in state["calls"]] == [429, 404] and state["filings"] == []


def test_the_token_never_leaks(mock, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(mock.url)
    assert TOKEN not in repr(client) and TOKEN not in str(client)
    upload_all(client)
    report = sample_report()
    mock.set_faults(Faults(fail_first_n=2, fail_status=500, drop_after_commit=1))
    receipt = client.file_report(key_of(report), report)
    mock.set_faults(Faults(refuse_field="project.uscc", refuse_reason=f"回显 {TOKEN}"))
    changed = sample_report(service__experts=20)
    with pytest.raises(Refused) as refused:
        client.correct_filing(receipt.receipt_no, key_of(changed), changed)
    assert_token_absent(refused.value, refused.value.raw, refused.value.reason, receipt.raw, caplog.text)
    assert "***" in refused.value.reason  # a system echoing the token is scrubbed too
    assert caplog.records  # the retries were logged (without the token)


def test_mock_cli_serves_until_terminated(tmp_path):
    state = tmp_path / "cli-state.sqlite3"
    env = {**os.environ, "NATIONAL_SYSTEM_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "adapters.national_system.mock_server", "--port", "0",
                                "--state", str(state), "--fail-first", "1", "--fail-status", "429"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("mock national system on http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[4]
        client = make_client(url)
        assert not client.has_attachment("0" * 64)
        assert client._sleep and client._sleep[0] >= 1  # --fail-first 1 --fail-status 429 (Retry-After 1)
        state_now = requests.get(f"{url}/_admin/state", timeout=5).json()
        assert json.dumps(state_now["faults"]).count("429") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert state.exists()
    without_token = subprocess.run([sys.executable, "-m", "adapters.national_system.mock_server", "--port", "0"],
                                   env={k: v for k, v in env.items() if k != "NATIONAL_SYSTEM_TOKEN"},
                                   capture_output=True, text=True, timeout=60)
    assert without_token.returncode == 2 and "NATIONAL_SYSTEM_TOKEN" in without_token.stderr
