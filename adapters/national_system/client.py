"""The HTTP client of the national system (contract: openapi.yaml), as a Dagster resource.

What a client of a government filing API has to get right, and where it is done here:
- a retry never files twice: every filing carries an Idempotency-Key, and after any failure that
  may have reached the system (timeout, dropped connection, 5xx, garbled answer) the client reads
  back by that key *before* sending again (``_file``);
- retries are bounded, with exponential backoff and full jitter; 429/503 wait at least as long as
  Retry-After says (``_with_retries``); a 4xx is the system's answer and is never retried
  (``Refused``, its reason shown to the operator as N002);
- the token travels in the Authorization header only: never in URLs, logs, exceptions, repr or the
  stored raw responses (``_scrub``).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, TypeVar
from urllib.parse import quote

import dagster as dg
import requests
from pydantic import Field, PrivateAttr

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_MAX_ANSWER = 1 << 20  # our answers are small; anything larger is not the system talking
T = TypeVar("T")


@dataclass(frozen=True)
class Receipt:
    """The system's word on one filing revision (回执)."""

    receipt_no: str
    revision: int
    status: str  # received | accepted | returned
    server_time: str
    reason: str = ""  # why it was returned
    raw: str = ""  # the answer as received (JSON text, token scrubbed), for the outbox


class NationalSystemError(Exception):
    pass


class Refused(NationalSystemError):
    """A 4xx answer: the system understood and said no. Not retried; the reason is kept (N002)."""

    def __init__(self, status_code: int, reason: str, field: str | None = None, raw: str = ""):
        self.status_code, self.reason, self.field, self.raw = status_code, reason, field, raw
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"{self.field}：" if self.field else ""
        return f"国家系统拒绝（HTTP {self.status_code}）：{where}{self.reason}"


class Unauthorized(Refused):
    """401/403: the token is wrong or missing. A configuration problem, not the report's: every
    further call would fail the same way, so callers stop rather than mark reports refused."""


class Unavailable(NationalSystemError):
    """Retries exhausted (timeouts, connection errors, 429, 5xx): try again on the next run (N003)."""

    def __init__(self, last_error: str):
        self.last_error = last_error
        super().__init__(last_error)


class _Transient(Exception):
    """One failed exchange worth retrying. `maybe_landed`: the request may have been processed."""

    def __init__(self, error: str, *, maybe_landed: bool, retry_after: float | None = None):
        super().__init__(error)
        self.error, self.maybe_landed, self.retry_after = error, maybe_landed, retry_after


class NationalSystemClient(dg.ConfigurableResource):
    """The national system (全国专家服务基层工作信息管理系统), over HTTP.

    Wire the token from the environment: ``token=dg.EnvVar("NATIONAL_SYSTEM_TOKEN")``.
    ``dry_run`` builds and stores payloads but sends nothing (the outbox honours it; the client
    refuses to send as a last guard).
    """

    base_url: str = Field(description="e.g. http://127.0.0.1:8765 (the mock) — no trailing /api/v1")
    token: str = Field(repr=False, description="bearer token; from the environment, never from code or config in git")
    timeout_s: float = Field(default=10.0, description="connect/read timeout, and the bound on reading one answer")
    max_attempts: int = Field(default=5, description="tries per call, the first included")
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = Field(default=300.0, description="a longer Retry-After ends the call; the next run retries")
    dry_run: bool = False

    _session: requests.Session | None = PrivateAttr(default=None)
    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)
    _random: random.Random = PrivateAttr(default_factory=random.Random)

    def with_sleep(self, sleep: Callable[[float], None]) -> Self:
        """Replace the sleeper between retries (tests record the waits instead of waiting)."""
        self._sleep = sleep
        return self

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # --- the contract's operations ---------------------------------------------------------------

    def has_attachment(self, sha256: str) -> bool:
        status, _ = self._call("HEAD", f"/attachments/{sha256}", accept=(404,))
        return status != 404

    def upload_attachment(self, sha256: str, data: bytes) -> None:
        """PUT by hash: idempotent, so a retry after a lost answer is harmless."""
        self._call("PUT", f"/attachments/{sha256}", data=data, headers={"Content-Type": "application/octet-stream"})

    def file_report(self, idempotency_key: str, payload: dict) -> Receipt:
        """The first filing of a project and year."""
        return self._file("/filings", idempotency_key, payload)

    def correct_filing(self, receipt_no: str, idempotency_key: str, payload: dict) -> Receipt:
        """A changed report: a new revision of filing `receipt_no` (same receipt number)."""
        return self._file(f"/filings/{quote(receipt_no, safe='')}/corrections", idempotency_key, payload)

    def find_by_key(self, idempotency_key: str) -> Receipt | None:
        """Read back: the receipt of the filing or correction sent under this key, if it arrived."""
        return self._with_retries(lambda: self._find_once(idempotency_key), "read back")

    def status(self, receipt_no: str) -> Receipt:
        """The filing's current status and latest revision."""
        _, body = self._call("GET", f"/filings/{quote(receipt_no, safe='')}")
        return self._receipt(body, None)

    # --- filing, exactly once --------------------------------------------------------------------

    def _file(self, path: str, key: str, payload: dict) -> Receipt:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Idempotency-Key": key, "Content-Type": "application/json; charset=utf-8"}
        maybe_landed = False

        def attempt() -> Receipt:
            nonlocal maybe_landed
            if maybe_landed:
                # The last send may have been committed with its answer lost: ask before re-sending.
                # (The system also de-duplicates by key; this is the belt to that pair of braces.)
                if found := self._find_once(key):
                    return found
                maybe_landed = False
            try:
                _, answer = self._once("POST", path, data=body, headers=headers)
                return self._receipt(answer, key)
            except _Transient as exc:
                maybe_landed = exc.maybe_landed
                raise

        return self._with_retries(attempt, f"POST {path}")

    def _find_once(self, key: str) -> Receipt | None:
        status, body = self._once("GET", "/filings", params={"idempotency_key": key}, accept=(404,))
        return None if status == 404 else self._receipt(body, key)

    def _receipt(self, body: Any, key: str | None) -> Receipt:
        # A 2xx without a usable receipt is not the system's answer (a proxy or a cut-off body):
        # treat it as lost, so the read-back decides.
        if not isinstance(body, dict) or not body.get("receipt_no") or (
                key is not None and body.get("idempotency_key", key) != key):
            raise _Transient("应答中没有可用的回执", maybe_landed=True)
        return Receipt(receipt_no=str(body["receipt_no"]), revision=int(body.get("revision") or 1),
                       status=str(body.get("status") or "received"), server_time=str(body.get("server_time") or ""),
                       reason=str(body.get("reason") or ""), raw=self._scrub(json.dumps(body, ensure_ascii=False)))

    # --- one exchange, and retrying it -----------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self._with_retries(lambda: self._once(method, path, **kwargs), f"{method} {path}")

    def _with_retries(self, attempt: Callable[[], T], what: str) -> T:
        last = ""
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except _Transient as exc:
                last = exc.error
                if number == self.max_attempts:
                    break
                wait = self._backoff(number)
                if exc.retry_after is not None:
                    if exc.retry_after > self.retry_after_max_s:
                        raise Unavailable(f"{what}：国家系统要求 {exc.retry_after:.0f} 秒后再试（{last}）") from None
                    wait = max(wait, exc.retry_after)
                log.warning("national system: %s failed (%s), attempt %d/%d; retrying in %.2f s",
                            what, last, number, self.max_attempts, wait)
                self._sleep(wait)
        raise Unavailable(f"{what}：{self.max_attempts} 次尝试均失败，最后一次：{last}")

    def _backoff(self, number: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many clients over the whole window.
        return self._random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (number - 1)))

    def _once(self, method: str, path: str, *, accept: tuple[int, ...] = (), **kwargs: Any) -> tuple[int, Any]:
        """One HTTP exchange. Returns (status, parsed JSON or None) for 2xx and `accept`ed statuses;
        raises _Transient (retry), Unauthorized or Refused (don't)."""
        if self.dry_run:
            raise RuntimeError("dry run: nothing is sent to the national system")
        try:
            response = self._session_().request(method, self.base_url.rstrip("/") + API_PREFIX + path,
                                                timeout=self.timeout_s, stream=True, allow_redirects=False, **kwargs)
            with response:
                text = self._read(response)
        except requests.Timeout:
            raise _Transient(f"超时（{self.timeout_s:g} 秒内无应答）", maybe_landed=True) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise _Transient(f"连接中断（{type(exc).__name__}）", maybe_landed=True) from None
        status = response.status_code
        if 200 <= status < 300 or status in accept:
            if not text.strip() or status in accept:
                return status, None
            try:
                return status, json.loads(text)
            except json.JSONDecodeError:
                raise _Transient(f"HTTP {status} 的应答无法解析", maybe_landed=True) from None
        if status == 429 or status == 503 or status >= 500 or status == 408:
            # A 429 is a refusal before any processing; a 5xx (or a proxy's 502/504) may follow it.
            raise _Transient(f"HTTP {status}", maybe_landed=status != 429,
                             retry_after=_retry_after(response.headers.get("Retry-After")))
        reason, field = self._problem(text)
        error = Unauthorized if status in (401, 403) else Refused
        raise error(status, reason or f"HTTP {status}", field, raw=self._scrub(text))

    def _read(self, response: requests.Response) -> str:
        # requests' timeout bounds each socket read, not the whole answer: a peer trickling bytes
        # could hold us forever, so the whole body gets the same bound.
        started, chunks, size = time.monotonic(), [], 0
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_ANSWER or time.monotonic() - started > self.timeout_s:
                raise requests.Timeout("answer too slow or too large")
        return b"".join(chunks).decode("utf-8", "replace")

    def _problem(self, text: str) -> tuple[str, str | None]:
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            return self._scrub(text.strip()[:500]), None
        if not isinstance(body, dict):
            return self._scrub(text.strip()[:500]), None
        field = body.get("field")
        return self._scrub(str(body.get("reason") or "")), (str(field) if field else None)

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def _session_(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.headers["Accept"] = "application/json"
            self._session = session
        return self._session


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
