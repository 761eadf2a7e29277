"""Shared pieces of the national-system tests: a realistic report, its attachments, the mock in a
thread, a client that records its waits, warehouse rows for the outbox, and a fault proxy."""

from __future__ import annotations

import copy
import hashlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, insert

from adapters.national_system.client import NationalSystemClient
from adapters.national_system.mock_server import Faults, MockNationalSystem, serve
from adapters.warehouse.engine import connect, upgrade
from adapters.warehouse.models import Package

# Never a real token; distinctive so a leak is easy to grep for.
TOKEN = "tok-9f3c2e71d4b8a6055e1f0c3d2b7a9e64"

WORK_SUMMARY = "2023年度专家服务团工作总结\n赴云南德钦开展村庄规划设计服务……".encode()
PHOTOS = [b"\xff\xd8\xff\xe0" + f"photo {i}".encode() * 50 for i in range(2)]
ATTACHMENTS = {hashlib.sha256(data).hexdigest(): data for data in [WORK_SUMMARY, *PHOTOS]}


def fetch_attachment(sha256: str) -> bytes:
    return ATTACHMENTS[sha256]


def sample_report(code: str = "2023-GT-01", year: int = 2023, **changes) -> dict:
    """A national report as the pipeline builds it (the shape of openapi.yaml's Report)."""
    summary_sha, photo1, photo2 = ATTACHMENTS
    report = {
        "year": year,
        "project": {
            "code": code, "name": "上海助力云南德钦乡村振兴村庄规划设计专家服务团", "level": "national",
            "type": "team", "host_unit": "上海现代建筑装饰环境设计研究院有限公司",
            "uscc": "91310000132212345X", "province": "上海市",
        },
        "service": {
            "start_date": "2023-05-08", "end_date": "2023-10-20",
            "places": [{"name": "云南省迪庆藏族自治州德钦县", "region_code": "533422"}],
            "activity_count": 6, "experts": 12, "people_served": 860, "trainees": 215, "problems_solved": 18,
        },
        "money": {
            "granted": {"部拨经费": "100000.00", "市级配套": "100000.00"},
            "spent": {"部拨经费": "98500.00", "市级配套": "100000.00"},
            "balance": {"部拨经费": "1500.00", "市级配套": "0.00"},
            "refunds": [{"source": "部拨经费", "amount": "1500.00", "refund_to": "人力资源社会保障部"}],
            "audit": {"firm": "上海立信会计师事务所", "audited_total": "198500.00"},
        },
        "attachments": [
            {"kind": "work_summary", "name": "工作总结.pdf", "sha256": summary_sha},
            {"kind": "photo", "name": "现场调研.jpg", "sha256": photo1, "caption": "专家现场踏勘村庄",
             "taken_on": "2023-06-12", "place": "德钦县云岭乡"},
            {"kind": "photo", "name": "培训.jpg", "sha256": photo2, "caption": "村干部规划培训",
             "taken_on": "2023-09-03", "place": "德钦县升平镇"},
        ],
        "publicity": [{"title": "专家服务团赴德钦开展规划服务", "outlet": "迪庆日报", "date": "2023-06-20"}],
    }
    for path, value in changes.items():  # e.g. service__people_served=900
        target = report
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return copy.deepcopy(report)


class Sleeps(list):
    """A sleeper that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(base_url: str, token: str = TOKEN, **config) -> NationalSystemClient:
    config.setdefault("timeout_s", 2.0)
    config.setdefault("max_attempts", 5)
    return NationalSystemClient(base_url=base_url, token=token, **config).with_sleep(Sleeps())


def calls(server: MockNationalSystem, method: str | None = None, path_prefix: str = "/api/v1/filings") -> list[dict]:
    return [c for c in server.calls if c["path"].startswith(path_prefix) and method in (None, c["method"])]


def filings_by_project(server: MockNationalSystem) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for filing in server.snapshot()["filings"]:
        out.setdefault(filing["project_code"], []).append(filing)
    return out


@pytest.fixture
def mock(tmp_path) -> Iterator[MockNationalSystem]:
    server = serve(0, tmp_path / "mock.sqlite3", TOKEN, Faults())
    yield server
    server.stop()


# --- the warehouse side -----------------------------------------------------------------------------

def warehouse(url: str) -> Engine:
    engine = connect(url)
    upgrade(engine)
    return engine


def add_package(engine: Engine, code: str, year: int = 2023) -> int:
    """A minimal package row (the outbox's foreign key points at it)."""
    now = datetime(2023, 11, 1, 8, 0)
    name = f"{code}-{uuid.uuid4().hex[:8]}.zip"  # each call a new package version
    with engine.begin() as conn:
        result = conn.execute(insert(Package.__table__).values(
            year=year, name=name, kind="zip", sha256=hashlib.sha256(name.encode()).hexdigest(),
            size=1, modified_at=now, mtime_ns=0, ingested_at=now, intake_status="readable", project_code=code))
        return result.inserted_primary_key[0]


# --- a fault proxy --------------------------------------------------------------------------------

PROXY_ACTIONS = ("pass", "refuse", "cut_request", "drop_answer", "truncate_answer", "late_answer", "bad_gateway")


class FaultProxy:
    """A TCP proxy between client and mock that breaks each connection as `choose(n)` says:
    pass · refuse (close before reading) · cut_request (forward half the request, then close) ·
    drop_answer (forward the request, swallow the answer) · truncate_answer (half of it) ·
    late_answer (after `late_s`) · bad_gateway (forward, then answer 502 itself)."""

    def __init__(self, upstream: str, choose: Callable[[int], str], late_s: float = 1.0):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.choose, self.late_s = choose, late_s
        self.actions: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            action = self.choose(len(self.actions))
            self.actions.append(action)
            threading.Thread(target=self._serve, args=(client, action), daemon=True).start()

    def _serve(self, client: socket.socket, action: str) -> None:
        with client:
            if action == "refuse":
                return
            with socket.create_connection(self.upstream) as upstream:
                request = _read_request(client)
                if action == "cut_request":
                    upstream.sendall(request[: max(1, len(request) // 2)])
                    return
                upstream.sendall(request)
                answer = _read_all(upstream)  # the mock answers HTTP/1.0: it closes when done
                if action == "drop_answer":
                    return
                if action == "truncate_answer":
                    answer = answer[: len(answer) // 2]
                elif action == "late_answer":
                    time.sleep(self.late_s)
                elif action == "bad_gateway":
                    answer = b"HTTP/1.0 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
                try:
                    client.sendall(answer)
                except OSError:
                    pass


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def seeded_chaos(seed: int, pass_share: float = 0.5) -> Callable[[int], str]:
    rng = random.Random(seed)
    broken = PROXY_ACTIONS[1:]
    return lambda _n: "pass" if rng.random() < pass_share else rng.choice(broken)


# --- a deliver run that dies at a step (run in a forked child) ------------------------------------

CRASH_EXIT = 17


def deliver_and_die(database_url: str, base_url: str, die_at: str) -> None:
    """Child process body: deliver, and hard-exit (no cleanup, like kill -9) at step `die_at`."""
    from adapters.national_system import outbox

    def on_step(name: str) -> None:
        if name == die_at:
            os._exit(CRASH_EXIT)

    engine = connect(database_url)
    outbox.deliver(engine, make_client(base_url), fetch_attachment, on_step=on_step)
    os._exit(0)


def assert_token_absent(*texts: object) -> None:
    for text in texts:
        assert TOKEN not in str(text)


def open_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] in ("pending", "dry_run")]

