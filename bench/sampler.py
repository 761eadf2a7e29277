"""A stdlib sampling profiler for the pipeline runs: cProfile's per-call cost distorts pandas-heavy code
(a 70 s run takes many minutes under it); sampling the main thread's stack every few milliseconds costs
a few percent and attributes wall time, waits on SQLite included.

    python bench/sampler.py OUT.txt [interval_ms] -- -m etl run …

writes to OUT.txt the top functions by cumulative share of samples (on the stack) and by own share
(at the top of the stack), and runs the command as `python …` would.
"""

from __future__ import annotations

import runpy
import sys
import threading
import time
from collections import Counter
from pathlib import Path


PROJECT_DIRS = ("assets", "adapters", "schemas", "etl")


class Sampler:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples = 0
        self.cumulative: Counter = Counter()
        self.own: Counter = Counter()
        self.started = time.perf_counter()
        self._target = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._target)
            if frame is None:
                continue
            self.samples += 1
            self.own[_key(frame)] += 1
            seen = set()
            while frame is not None:
                key = _key(frame)
                if key not in seen:
                    seen.add(key)
                    self.cumulative[key] += 1
                frame = frame.f_back

    def report(self, top: int = 25) -> str:
        wall = time.perf_counter() - self.started
        per = wall / max(self.samples, 1)
        lines = [f"{self.samples} samples over {wall:.1f} s (one every {per * 1000:.1f} ms)", "",
                 f"top {top} by cumulative time (on the stack):", "  cum s   cum%   own s  function"]
        for key, n in self.cumulative.most_common(top):
            lines.append(f"{n * per:7.1f} {100 * n / max(self.samples, 1):5.1f}% {self.own[key] * per:7.1f}  {_name(key)}")
        ours = [(k, n) for k, n in self.cumulative.most_common() if any(f"/{d}/" in k[0] for d in PROJECT_DIRS)]
        lines += ["", f"top {top} of the project's own functions by cumulative time:", "  cum s   cum%   own s  function"]
        for key, n in ours[:top]:
            lines.append(f"{n * per:7.1f} {100 * n / max(self.samples, 1):5.1f}% {self.own[key] * per:7.1f}  {_name(key)}")
        lines += ["", f"top {top} by own time (top of the stack):", "  own s   own%  function"]
        for key, n in self.own.most_common(top):
            lines.append(f"{n * per:7.1f} {100 * n / max(self.samples, 1):5.1f}%  {_name(key)}")
        return "\n".join(lines) + "\n"


def _key(frame) -> tuple[str, int, str]:
    code = frame.f_code
    return code.co_filename, code.co_firstlineno, code.co_name


def _name(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


def main() -> int:
    out, rest = sys.argv[1], sys.argv[2:]
    interval = 0.005
    if rest and rest[0] != "--":
        interval, rest = float(rest[0]) / 1000, rest[1:]
    rest = rest[1:] if rest and rest[0] == "--" else rest
    sampler = Sampler(interval)
    sampler.start()
    code = 0
    try:
        if rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = rest
            runpy.run_path(rest[0], run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sampler.stop()
        Path(out).write_text(sampler.report(), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
