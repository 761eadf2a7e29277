"""Progress of a long stage, for the operator: done/total, rate and time left.

Written to the stage's log (the Dagster run's logs, which the CLI prints) every few seconds, so a
5,000-package run says where it is without flooding the event log; on a terminal a status line on
stderr is also kept up to date in between.
"""

from __future__ import annotations

import sys
import time

_LOG_EVERY_S = 5.0
_TERMINAL_EVERY_S = 0.5


class Progress:
    def __init__(self, label: str, total: int, log=None) -> None:
        self.label, self.total, self.done_count = label, total, 0
        self._log = log
        self._start = self._logged = self._drawn = time.monotonic()
        self._terminal = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done_count += n
        now = time.monotonic()
        if self._log is not None and now - self._logged >= _LOG_EVERY_S:
            self._logged = now
            self._log.info(self.line(now))
        if self._terminal and now - self._drawn >= _TERMINAL_EVERY_S:
            self._drawn = now
            sys.stderr.write(f"\r{self.line(now)}\033[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self._terminal and self.total:
            sys.stderr.write("\r\033[K")
        if self._log is not None and self.total:
            self._log.info(self.line(time.monotonic()))

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done_count / elapsed
        left = (self.total - self.done_count) / rate if rate else float("nan")
        eta = f", ~{left:.0f} s left" if self.done_count < self.total and rate else ""
        return f"{self.label}: {self.done_count}/{self.total} ({rate:.1f}/s, {elapsed:.0f} s{eta})"
