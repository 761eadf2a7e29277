"""Untrusted work behind one door: each unit file is read in a worker process with bounded memory and time.

A unit's workbook, CSV or photo is untrusted input, and the libraries that read them are native code: a
stray cell at XFD1048576 makes a reader allocate 512 GiB and abort the process, a damaged file raises
whatever its library raises. So every function over a unit's bytes runs through ``map_isolated``: in a
pool of worker processes (one per core by default), each item under an address-space limit and a time
limit. A worker that dies, runs out of memory or out of time costs only its own item, which comes back as
a ``WorkerFailure`` saying which limit it hit; the pool (pebble) replaces the worker and goes on.

Settings (environment, documented in the README):
- ``ETL_WORKERS``: worker processes (default: the machine's cores); 1 runs in-process, for debugging
  (no limits then: a hostile file can stop the run).
- ``ETL_WORKER_MEMORY_MIB``: how far one item may grow its worker's address space (default 1024).
- ``ETL_WORKER_TIMEOUT_S``: seconds one item may take (default 300).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

from pebble import ProcessExpired, ProcessPool

T = TypeVar("T")
R = TypeVar("R")

# How a dead worker died: the Rust readers abort (SIGABRT) when an allocation fails under the limit,
# the kernel kills (SIGKILL) a process the machine cannot hold.
_OUT_OF_MEMORY_SIGNALS = {signal.SIGABRT, signal.SIGKILL}


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
    """An item whose worker hit a limit or died: ``limit`` says which, ``bound`` the limit in force
    (e.g. 1024 for MiB, 300 for seconds), ``detail`` is for the log."""

    limit: Literal["memory", "time", "crash"]
    bound: float
    detail: str


def map_isolated(fn: Callable[[T], R], items: Iterable[T], settings: WorkerSettings | None = None
                 ) -> Iterator[tuple[T, R | WorkerFailure]]:
    """(item, fn(item) or its WorkerFailure) for each item, in the items' order, computed across the pool.

    ``fn`` must be a module-level function, its items and results picklable. It should turn the errors
    it expects into results; any other exception is reported as a crash of that item. Items are taken
    from ``items`` a few at a time (twice the workers ahead), so a generator of big items stays bounded.
    Call it while no other thread of ours is busy: the pool forks its workers, a fork copies only the
    calling thread, and a lock another thread holds at that moment stays locked in the worker for good
    (a worker forked beside a busy thread once hung on an import lock)."""
    settings = settings or WorkerSettings.from_env()
    if settings.workers == 1:
        yield from _in_process(fn, items, settings)
        return
    # fork: a worker starts in milliseconds with every module already imported. Workers never touch the
    # parent's database connections, and end with os._exit, so no inherited socket is ever closed.
    with ProcessPool(max_workers=settings.workers, context=multiprocessing.get_context("fork")) as pool:
        pending: deque = deque()
        for item in items:
            pending.append((item, pool.schedule(_limited, args=(fn, item, settings.memory_mib),
                                                timeout=settings.timeout_s)))
            if len(pending) >= 2 * settings.workers:
                yield _outcome(*pending.popleft(), settings)
        while pending:
            yield _outcome(*pending.popleft(), settings)


def _in_process(fn: Callable[[T], R], items: Iterable[T], settings: WorkerSettings
                ) -> Iterator[tuple[T, R | WorkerFailure]]:
    for item in items:
        try:
            yield item, fn(item)
        except MemoryError as exc:
            yield item, WorkerFailure("memory", settings.memory_mib, repr(exc))
        except Exception as exc:  # noqa: BLE001 - any reader's failure costs only its item
            yield item, WorkerFailure("crash", 0, repr(exc))


def _outcome(item: T, future, settings: WorkerSettings) -> tuple[T, R | WorkerFailure]:
    try:
        return item, future.result()
    except FutureTimeout:
        return item, WorkerFailure("time", settings.timeout_s, f"took more than {settings.timeout_s:g} s")
    except MemoryError as exc:
        return item, WorkerFailure("memory", settings.memory_mib, repr(exc))
    except ProcessExpired as exc:
        if -exc.exitcode in _OUT_OF_MEMORY_SIGNALS:
            return item, WorkerFailure("memory", settings.memory_mib, f"worker died: {exc}")
        return item, WorkerFailure("crash", 0, f"worker died: {exc}")
    except Exception as exc:  # noqa: BLE001 - raised by fn in the worker; costs only its item
        return item, WorkerFailure("crash", 0, repr(exc))


def _limited(fn: Callable[[T], R], item: T, memory_mib: int) -> R:
    """fn(item) with the worker's address space allowed to grow by memory_mib while it runs."""
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * page
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (memory_mib << 20), hard))
    try:
        return fn(item)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def in_background(fn: Callable[..., object], /, *args, **kwargs) -> Iterator[None]:
    """Run fn(*args, **kwargs) in a forked process while the with-block runs in this one; on leaving the
    block, wait for it and raise if it failed. For our own work (no limits: it reads no unit's bytes) that
    would otherwise wait on the serial path, e.g. summary.xlsx written while the feedback pool works.
    The fork is taken before the block starts, so the block's own pools fork beside a process, not a
    thread (see map_isolated). With ETL_WORKERS=1, fn runs in-process first."""
    if WorkerSettings.from_env().workers == 1:
        fn(*args, **kwargs)
        yield
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_report_to, args=(send, fn, args, kwargs), daemon=True)
    child.start()
    send.close()
    try:
        yield
    finally:
        try:
            failure = receive.recv()
        except EOFError:  # it died without a word (killed, or out of memory)
            failure = "its process ended without reporting"
        child.join()
        receive.close()
    if failure is not None:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed in its background process: {failure}")


def _report_to(send, fn: Callable[..., object], args: tuple, kwargs: dict) -> None:
    try:
        fn(*args, **kwargs)
        send.send(None)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it there
        send.send(traceback.format_exc())
    finally:
        send.close()
