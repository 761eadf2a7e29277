"""The mock national system: a real HTTP server on loopback speaking openapi.yaml.

State (filings, their revisions, attachments) lives in a SQLite file and survives restarts. The
server is strict where a real filing system would be (token, contract, one filing per project and
year, idempotency by key) so that client bugs show up as wrong state, not as silent success.

It misbehaves on demand, deterministically, from the command line or at runtime through
``POST /_admin/faults``: fail the first N calls with 500/429/503, answer slowly, drop the connection
*after* committing a filing (the case that makes naive clients file twice), refuse reports with a
field-level reason. ``GET /_admin/state`` shows what was filed, for tests and the demo. The admin
endpoints need no token: the mock listens on loopback only and is never the real system.

    python -m etl mock-national --port 8765 [--state FILE] [--fail-first 3 --fail-status 429 ...]
    (the token is read from $NATIONAL_SYSTEM_TOKEN)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from adapters.national_system import TOKEN_ENV

log = logging.getLogger(__name__)

CONTRACT = Path(__file__).with_name("openapi.yaml")
_SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_BODY = 64 << 20


@dataclass
class Faults:
    """How the mock misbehaves (and how its review goes). Counters restart whenever faults are set."""

    fail_first_n: int = 0  # the first N API calls fail …
    fail_status: int = 500  # … with this status (500, 503 or 429)
    retry_after_s: int = 1  # Retry-After sent with 429/503
    slow_ms: int = 0  # answer this late (after the work is done and committed) …
    slow_method: str = ""  # … calls of this method only ('' = every call, "POST" = filings) …
    slow_first_n: int = 0  # … the first N of them (0: all)
    drop_after_commit: int = 0  # the next N filings/corrections are committed, then the socket is closed
    refuse_field: str = ""  # refuse every filing/correction with 422 on this field …
    refuse_reason: str = ""  # … and this reason
    refuse_project: str = ""  # … only for this project code ('' = every project)
    review_after_polls: int = 1  # a received filing is decided at its Nth status poll (0: at once)
    return_reason: str = ""  # decide "returned" with this reason instead of "accepted"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        return cls(**data)


class _Problem(Exception):
    """An error answer: status code plus the contract's Problem body."""

    def __init__(self, status: int, reason: str, field: str | None = None, **extra: Any):
        super().__init__(reason)
        self.status = status
        self.body = {"reason": reason, "field": field, **extra}


# --- the contract ------------------------------------------------------------------------------

# Loaded when first needed: the CLI imports this module on every start, and parsing the contract costs
# ~60 ms that a run without the mock never uses.
@functools.cache
def _contract() -> dict:
    spec = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    return {"schemas": spec["components"]["schemas"], "root": spec["components"]["schemas"]["Report"]}


def validate_report(report: Any) -> tuple[str, str] | None:
    """The first missing or empty required field of the report as (field path, reason), or None.

    Deliberately minimal: the `required` lists, object/array shapes and minItems of openapi.yaml,
    so the contract file is the one place that says what the national system insists on.
    """
    return _check(report, _contract()["root"], "")


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = _contract()["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _check(value: Any, schema: dict, path: str) -> tuple[str, str] | None:
    schema = _resolve(schema)
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return path or "(report)", f"应为对象：{path or '报告'}"
        for name in schema.get("required", []):
            field = f"{path}.{name}" if path else name
            if value.get(name) in (None, ""):
                return field, f"必填字段缺失或为空：{field}"
        for name, sub in schema.get("properties", {}).items():
            if name in value and (problem := _check(value[name], sub, f"{path}.{name}" if path else name)):
                return problem
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return path, f"应为整数：{path}"
    elif kind == "string" and not isinstance(value, str):
        return path, f"应为文本：{path}"
    elif kind == "array":
        if not isinstance(value, list):
            return path, f"应为列表：{path}"
        if len(value) < schema.get("minItems", 0):
            return path, f"至少需要 {schema['minItems']} 项：{path}"
        for i, item in enumerate(value):
            if problem := _check(item, schema.get("items", {}), f"{path}[{i}]"):
                return problem
    return None


def _content_hash(report: Any) -> str:
    # The mock computes its own hash (it stands for an external system and shares no code with
    # the client): the same canonical JSON, so the same report always hashes the same.
    text = json.dumps(report, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(_SHANGHAI).isoformat(timespec="seconds")


# --- the state ---------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS filing (
    receipt_no TEXT PRIMARY KEY, year INTEGER NOT NULL, project_code TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', polls INTEGER NOT NULL DEFAULT 0,
    UNIQUE (year, project_code));
CREATE TABLE IF NOT EXISTS revision (
    receipt_no TEXT NOT NULL REFERENCES filing(receipt_no), revision INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE, content_hash TEXT NOT NULL, report TEXT NOT NULL,
    server_time TEXT NOT NULL, PRIMARY KEY (receipt_no, revision));
CREATE TABLE IF NOT EXISTS attachment (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
"""


class MockState:
    """The mock's durable state. One connection behind one lock: every request is a transaction,
    so two requests racing with the same key still produce one filing."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _tx(self):
        return _Transaction(self)

    # attachments
    def has_attachment(self, sha256: str) -> bool:
        with self._tx() as db:
            return db.execute("SELECT 1 FROM attachment WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def put_attachment(self, sha256: str, data: bytes) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO attachment VALUES (?, ?, ?)", (sha256, len(data), data))
            return cur.rowcount == 1

    # filings
    def receipt_for_key(self, key: str) -> dict | None:
        with self._tx() as db:
            return self._receipt(db, key)

    def _receipt(self, db: sqlite3.Connection, key: str) -> dict | None:
        row = db.execute(
            "SELECT r.receipt_no, r.revision, r.server_time, r.idempotency_key, r.content_hash,"
            " f.status, f.reason, f.year, f.project_code"
            " FROM revision r JOIN filing f USING (receipt_no) WHERE r.idempotency_key = ?", (key,)).fetchone()
        return dict(row) if row else None

    def file(self, key: str, report: dict, *, correcting: str | None, faults: Faults) -> tuple[int, dict]:
        """Commit a filing (or a correction of `correcting`). Returns (HTTP status, receipt)."""
        digest = _content_hash(report)
        with self._tx() as db:
            if known := self._receipt(db, key):
                # Same key, same answer: this is what makes a retry after a lost response safe.
                if known["content_hash"] != digest:
                    raise _Problem(409, "Idempotency-Key 已用于内容不同的报告", "Idempotency-Key")
                return 200, known
            year, code = report["year"], report["project"]["code"]
            if correcting is None:
                held = db.execute("SELECT receipt_no FROM filing WHERE year = ? AND project_code = ?",
                                  (year, code)).fetchone()
                if held:
                    raise _Problem(409, f"该项目本年度已有备案（回执号 {held[0]}），请以更正方式报送",
                                   "project.code", receipt_no=held[0])
                seq = db.execute("SELECT COUNT(*) FROM filing WHERE year = ?", (year,)).fetchone()[0] + 1
                receipt_no, revision = f"ZJFW-{year}-{seq:06d}", 1
                db.execute("INSERT INTO filing (receipt_no, year, project_code, status) VALUES (?, ?, ?, 'received')",
                           (receipt_no, year, code))
            else:
                held = db.execute("SELECT year, project_code FROM filing WHERE receipt_no = ?", (correcting,)).fetchone()
                if not held:
                    raise _Problem(404, f"回执号不存在：{correcting}", "receipt_no")
                if (held["year"], held["project_code"]) != (year, code):
                    raise _Problem(422, "更正报告的项目或年度与原备案不一致", "project.code")
                receipt_no = correcting
                revision = db.execute("SELECT MAX(revision) FROM revision WHERE receipt_no = ?",
                                      (receipt_no,)).fetchone()[0] + 1
                # A new revision is reviewed afresh.
                db.execute("UPDATE filing SET status = 'received', reason = '', polls = 0 WHERE receipt_no = ?",
                           (receipt_no,))
            db.execute("INSERT INTO revision VALUES (?, ?, ?, ?, ?, ?)",
                       (receipt_no, revision, key, digest, json.dumps(report, ensure_ascii=False), _now()))
            if faults.review_after_polls == 0:
                self._decide(db, receipt_no, faults)
            return 201, self._receipt(db, key)

    def poll(self, receipt_no: str, faults: Faults) -> dict:
        with self._tx() as db:
            filing = db.execute("SELECT * FROM filing WHERE receipt_no = ?", (receipt_no,)).fetchone()
            if not filing:
                raise _Problem(404, f"回执号不存在：{receipt_no}", "receipt_no")
            polls = filing["polls"] + 1
            db.execute("UPDATE filing SET polls = ? WHERE receipt_no = ?", (polls, receipt_no))
            if filing["status"] == "received" and polls >= faults.review_after_polls:
                self._decide(db, receipt_no, faults)
            return self._filing(db, receipt_no)

    @staticmethod
    def _decide(db: sqlite3.Connection, receipt_no: str, faults: Faults) -> None:
        status = "returned" if faults.return_reason else "accepted"
        db.execute("UPDATE filing SET status = ?, reason = ? WHERE receipt_no = ?",
                   (status, faults.return_reason, receipt_no))

    def _filing(self, db: sqlite3.Connection, receipt_no: str) -> dict:
        filing = dict(db.execute("SELECT * FROM filing WHERE receipt_no = ?", (receipt_no,)).fetchone())
        revisions = [dict(r) for r in db.execute(
            "SELECT revision, idempotency_key, content_hash, server_time FROM revision"
            " WHERE receipt_no = ? ORDER BY revision", (receipt_no,))]
        latest = revisions[-1]
        return {**filing, "revision": latest["revision"], "server_time": latest["server_time"],
                "idempotency_key": latest["idempotency_key"], "revisions": revisions}

    def snapshot(self) -> dict:
        with self._tx() as db:
            receipts = [r[0] for r in db.execute("SELECT receipt_no FROM filing ORDER BY receipt_no")]
            filings = [self._filing(db, r) for r in receipts]
            attachments = [dict(r) for r in db.execute("SELECT sha256, size FROM attachment ORDER BY sha256")]
        return {"filings": filings, "attachments": attachments}


class _Transaction:
    def __init__(self, state: MockState):
        self.state = state

    def __enter__(self) -> sqlite3.Connection:
        self.state.lock.acquire()
        self.state.db.execute("BEGIN IMMEDIATE")
        return self.state.db

    def __exit__(self, exc_type, *_):
        try:
            self.state.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.state.lock.release()


# --- the server ----------------------------------------------------------------------------------

class MockNationalSystem(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, state: MockState, token: str, faults: Faults):
        self.state = state
        self._token = token
        self.calls: list[dict] = []  # every API call of this run: method, path, status (for tests)
        self._counter_lock = threading.Lock()
        self.set_faults(faults)
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def set_faults(self, faults: Faults) -> None:
        with self._counter_lock:
            self.faults = faults
            self._seen = 0
            self._slow_seen = 0
            self._drops_left = faults.drop_after_commit

    def _next_call(self) -> int:
        with self._counter_lock:
            self._seen += 1
            return self._seen

    def is_slow(self, method: str) -> bool:
        faults = self.faults
        if not faults.slow_ms or faults.slow_method not in ("", method):
            return False
        with self._counter_lock:
            self._slow_seen += 1
            return faults.slow_first_n == 0 or self._slow_seen <= faults.slow_first_n

    def _take_drop(self) -> bool:
        with self._counter_lock:
            if self._drops_left > 0:
                self._drops_left -= 1
                return True
            return False

    def token_ok(self, header: str | None) -> bool:
        expected = f"Bearer {self._token}".encode()
        return header is not None and hmac.compare_digest(header.encode("utf-8", "replace"), expected)

    def handle_error(self, request, client_address) -> None:
        # A client (or a fault proxy) hanging up mid-answer is routine here, not worth a traceback.
        log.debug("connection from %s ended abnormally", client_address, exc_info=True)

    def snapshot(self) -> dict:
        return {**self.state.snapshot(), "calls": list(self.calls), "faults": dataclasses.asdict(self.faults)}

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.state.close()


class _Drop(Exception):
    """Close the socket without answering."""


class _Handler(BaseHTTPRequestHandler):
    server: MockNationalSystem
    server_version = "MockNationalSystem/1.0"
    timeout = 30  # a peer that stops sending mid-request does not hold a thread forever

    def do_GET(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if path.startswith("/_admin/"):
            return self._admin(path)
        call = self.server._next_call()
        faults = self.server.faults
        status = None
        try:
            # Read the whole body first, even when about to fail: closing a socket with unread
            # input makes the kernel reset it, and the client would see a reset, not our answer.
            self._data = self._read_body()
            status, body, headers = self._api(path, query, call, faults)
        except _Drop:
            status = "dropped"
        finally:
            self.server.calls.append({"method": self.command, "path": path, "status": status})
        if status == "dropped":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if self.server.is_slow(self.command):
            time.sleep(faults.slow_ms / 1000)  # the work is done; only the answer is late
        self._reply(status, body, headers)

    def _api(self, path: str, query: dict, call: int, faults: Faults) -> tuple[int, Any, dict]:
        try:
            # Injected failures come first: they stand for a gateway in front of the system.
            if call <= faults.fail_first_n:
                headers = {"Retry-After": str(faults.retry_after_s)} if faults.fail_status in (429, 503) else {}
                return faults.fail_status, {"reason": "系统繁忙，请稍后重试", "field": None}, headers
            if not self.server.token_ok(self.headers.get("Authorization")):
                raise _Problem(401, "令牌缺失或无效")
            return (*self._route(path, query, faults), {})
        except _Problem as problem:
            return problem.status, problem.body, {}
        except (KeyError, TypeError, AttributeError, ValueError, sqlite3.Error):
            # A malformed request the checks above missed, or a bug: answer as a real server would.
            log.exception("mock national system: %s %s failed", self.command, path)
            return 500, {"reason": "系统内部错误", "field": None}, {}

    def _route(self, path: str, query: dict, faults: Faults) -> tuple[int, Any]:
        state = self.server.state
        parts = path.strip("/").split("/")
        method = self.command
        if parts[:3] == ["api", "v1", "attachments"] and len(parts) == 4:
            sha = parts[3]
            if not _SHA256.match(sha):
                raise _Problem(422, "附件标识须为 64 位小写十六进制 SHA-256", "sha256")
            if method == "HEAD":
                return (200 if state.has_attachment(sha) else 404), None
            if method == "PUT":
                data = self._data
                if hashlib.sha256(data).hexdigest() != sha:
                    raise _Problem(422, "附件内容与其 SHA-256 不符", "sha256")
                created = state.put_attachment(sha, data)
                return (201 if created else 200), {"sha256": sha, "size": len(data)}
        elif parts[:3] == ["api", "v1", "filings"]:
            if len(parts) == 3 and method == "GET":
                key = (query.get("idempotency_key") or [""])[0]
                receipt = state.receipt_for_key(key)
                if receipt is None:
                    raise _Problem(404, "未收到该幂等键的报送", "idempotency_key")
                return 200, receipt
            if len(parts) == 3 and method == "POST":
                return self._file(None, faults)
            if len(parts) == 4 and method == "GET":
                return 200, state.poll(parts[3], faults)
            if len(parts) == 5 and parts[4] == "corrections" and method == "POST":
                return self._file(parts[3], faults)
        raise _Problem(404, f"无此接口：{method} {path}")

    def _file(self, correcting: str | None, faults: Faults) -> tuple[int, Any]:
        key = self.headers.get("Idempotency-Key", "")
        if not key or len(key) > 128:
            raise _Problem(400, "缺少或过长的 Idempotency-Key", "Idempotency-Key")
        try:
            report = json.loads(self._data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Problem(400, "请求体不是有效的 JSON") from None
        state = self.server.state
        known = state.receipt_for_key(key)
        if known is None:  # a replay is answered as before, whatever the faults say now
            project = report.get("project") if isinstance(report, dict) else None
            code = project.get("code") if isinstance(project, dict) else None
            if faults.refuse_field and faults.refuse_project in ("", code):
                raise _Problem(422, faults.refuse_reason or f"字段不符合要求：{faults.refuse_field}", faults.refuse_field)
            if problem := validate_report(report):
                raise _Problem(422, problem[1], problem[0])
            for i, attachment in enumerate(report["attachments"]):
                if not state.has_attachment(attachment["sha256"]):
                    raise _Problem(422, f"附件未上传：{attachment['name']}", f"attachments[{i}].sha256")
        status, receipt = state.file(key, report, correcting=correcting, faults=faults)
        if self.server._take_drop():
            raise _Drop()  # committed above; the client never hears of it
        return status, receipt

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise _Drop()
        try:
            data = self.rfile.read(length)
        except OSError:
            raise _Drop() from None
        if len(data) < length:
            raise _Drop()  # the client went away mid-body: nothing to answer
        return data

    def _admin(self, path: str) -> None:
        if path == "/_admin/state" and self.command == "GET":
            return self._reply(200, self.server.snapshot(), {})
        if path == "/_admin/faults" and self.command == "GET":
            return self._reply(200, dataclasses.asdict(self.server.faults), {})
        if path == "/_admin/faults" and self.command == "POST":
            try:
                faults = Faults.from_dict(json.loads(self._read_body() or b"{}"))
            except (ValueError, TypeError) as exc:
                return self._reply(400, {"reason": str(exc), "field": None}, {})
            except _Drop:
                return None
            self.server.set_faults(faults)
            return self._reply(200, dataclasses.asdict(faults), {})
        return self._reply(404, {"reason": f"无此接口：{self.command} {path}", "field": None}, {})

    def _reply(self, status: int, body: Any, headers: dict) -> None:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


# --- entry points ------------------------------------------------------------------------------

def serve(port: int = 0, state_path: str | Path | None = None, token: str | None = None,
          faults: Faults | None = None, host: str = "127.0.0.1") -> MockNationalSystem:
    """Start the mock in a background thread and return it (``.url``, ``.set_faults``, ``.snapshot``,
    ``.stop``). Port 0 picks a free port; no state path means a fresh file in a temp directory."""
    if not token:
        raise ValueError("the mock needs a token to enforce")
    if state_path is None:
        state_path = Path(tempfile.mkdtemp(prefix="national-mock-")) / "state.sqlite3"
    server = MockNationalSystem(host, port, MockState(Path(state_path)), token, faults or Faults())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-national",
                     daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """``python -m etl mock-national [options]``: serve until interrupted (SIGINT/SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m etl mock-national",
                                     description="模拟全国专家服务基层工作信息管理系统（仅本机回环地址）")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state", help="SQLite state file (default: a new file in a temp directory)")
    defaults = Faults()
    parser.add_argument("--fail-first", type=int, default=0, dest="fail_first_n")
    parser.add_argument("--fail-status", type=int, choices=(500, 503, 429), default=defaults.fail_status)
    parser.add_argument("--retry-after", type=int, default=defaults.retry_after_s, dest="retry_after_s")
    parser.add_argument("--slow-ms", type=int, default=0)
    parser.add_argument("--slow-method", default="", help="only calls of this method are slow (e.g. POST)")
    parser.add_argument("--slow-first", type=int, default=0, dest="slow_first_n")
    parser.add_argument("--drop-after-commit", type=int, default=0, help="drop the answer of the next N filings")
    parser.add_argument("--refuse-field", default="")
    parser.add_argument("--refuse-reason", default="")
    parser.add_argument("--refuse-project", default="")
    parser.add_argument("--review-after-polls", type=int, default=defaults.review_after_polls)
    parser.add_argument("--return-reason", default="")
    args = vars(parser.parse_args(argv))
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"set ${TOKEN_ENV}: the mock refuses every call without that token", file=sys.stderr)
        return 2
    host, port, state = args.pop("host"), args.pop("port"), args.pop("state")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = serve(port, state, token, Faults(**args), host=host)
    print(f"mock national system on {server.url} (state: {server.state.path})", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
