"""The bench's child processes: each measurement runs in one, timed from start to exit, its memory
sampled over its whole process tree; and the commands that start them.

Peak RSS: every SAMPLE_S the RSS of the child and of all its descendants (found through
/proc/<pid>/task/<tid>/children) is summed; the peak is the largest sum, and never less than wait4's
ru_maxrss (the largest single process the child waited for), which catches a spike between samples.
Summed RSS counts a page shared by two processes (a forked worker's copy-on-write pages, a shared
library) once per process: the figure errs high, never low. A descendant is counted from YOUNG_S after
its start: between fork (or vfork) and exec, a process spawning a program shows all of its parent's
pages as its own, which would count the parent twice for a moment (seen: a 256 MiB run measured at
489 MiB when a sample fell on Dagster starting `tail` for its compute logs). A worker is counted
from its 50th millisecond on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.02
YOUNG_S = 0.05


@dataclass
class Child:
    name: str
    wall_s: float
    rc: int | None  # None: killed at its timeout
    peak_mib: float  # the process tree's, summed (see above)
    log: Path
    started_at: datetime  # UTC, naive (as Dagster's event log stores times)
    result: dict = field(default_factory=dict)  # a part's JSON
    skipped: str = ""  # why it was not run
    steps: list[tuple[str, float]] = field(default_factory=list)  # pipeline runs: where the time went
    maxrss_mib: float = 0.0  # wait4's: the largest single process
    processes: int = 1  # the most processes seen in its tree at once
    tries: list[float] = field(default_factory=list)  # a measurement taken more than once: each try's wall

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.skipped


def tree_rss(root: int) -> tuple[int, int]:
    """(bytes resident, processes) of root and all its descendants, now; a descendant younger than
    YOUNG_S is not counted (see above)."""
    total, count, stack = 0, 0, [root]
    with open("/proc/uptime", "rb") as uptime:
        now = float(uptime.read().split()[0])
    while stack:
        pid = stack.pop()
        try:
            if pid != root:
                with open(f"/proc/{pid}/stat", "rb") as stat:  # field 22, after the name in parentheses
                    started = int(stat.read().rsplit(b")", 1)[1].split()[19]) / TICKS
            if pid == root or now - started >= YOUNG_S:
                with open(f"/proc/{pid}/statm", "rb") as statm:
                    total += int(statm.read().split()[1]) * PAGE
                count += 1
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", "rb") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue  # it ended while we looked
    return total, count


def run_child(name: str, cmd: list[str], *, env: dict[str, str], log: Path, timeout: float) -> Child:
    """Run cmd to its end (or its timeout); its wall time and the peak RSS of its process tree."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    peak, most = 0, 1
    with log.open("wb") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            resident, count = tree_rss(proc.pid)
            peak, most = max(peak, resident), max(most, count)
            if time.perf_counter() - began > timeout and not timed_out:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # our child's own session, nothing else
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {}
    if not timed_out and proc.returncode == 0:
        last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if last and last[-1].startswith("{"):
            result = json.loads(last[-1])
    maxrss = usage.ru_maxrss / 1024
    return Child(name, wall, None if timed_out else proc.returncode, max(peak / 2**20, maxrss), log, started_at, result,
                 maxrss_mib=maxrss, processes=most)


def run_steps(child: Child, home: Path) -> list[tuple[str, float]]:
    """Where a pipeline run's wall time went, from its Dagster event log: start-up (process start to run
    start: imports, definitions, partitions), each step, and the end (run end to process exit)."""
    import sqlite3

    runs = [p for p in (home / "history" / "runs").glob("*.db") if p.name != "index.db"]
    runs = [p for p in runs if p.stat().st_mtime >= child.started_at.replace(tzinfo=UTC).timestamp() - 1]
    if not runs:
        return [("start-up (no run started)", child.wall_s)]
    with sqlite3.connect(max(runs, key=lambda p: p.stat().st_mtime)) as conn:
        events = conn.execute(
            "SELECT dagster_event_type, step_key, timestamp FROM event_logs WHERE dagster_event_type IN "
            "('PIPELINE_START', 'RUN_START', 'STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE', 'PIPELINE_SUCCESS', "
            "'RUN_SUCCESS', 'PIPELINE_FAILURE', 'RUN_FAILURE') ORDER BY id").fetchall()
    moment = lambda text: datetime.fromisoformat(text)
    steps: list[tuple[str, float]] = []
    began: dict[str, datetime] = {}
    last = child.started_at
    for kind, step, stamp in events:
        at = moment(stamp)
        if kind in ("PIPELINE_START", "RUN_START"):
            steps.append(("start-up", (at - child.started_at).total_seconds()))
        elif kind == "STEP_START":
            began[step] = at
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            steps.append((step + ("" if kind == "STEP_SUCCESS" else " (failed)"), (at - began.pop(step)).total_seconds()))
        last = at
    for step, at in began.items():  # killed at the timeout while in this step
        steps.append((step + " (unfinished)", child.wall_s - (at - child.started_at).total_seconds()))
    if not steps:
        steps.append(("start-up (the run never started)", child.wall_s))
    elif not began:
        steps.append(("end", child.wall_s - (last - child.started_at).total_seconds()))
    return steps


def pipeline_env(work: Path, home_name: str, registry: Path) -> dict[str, str]:
    """The CLI's environment: the synthetic registry, a fresh Dagster home like `make run`'s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DAGSTER_HOME"))}
    home = work / home_name
    home.mkdir(parents=True, exist_ok=True)
    config = ROOT / ".dagster_home" / "dagster.yaml"
    if config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(config, home / "dagster.yaml")
    env.update(DAGSTER_HOME=str(home), ETL_REGISTRY_DIR=str(registry), PYTHONUNBUFFERED="1")
    return env


def etl_run(year: int, inbox: Path, export: Path, db: Path, registry: Path, profile: Path | None = None) -> list[str]:
    head = [PY, str(HERE / "sampler.py"), str(profile), "--"] if profile else [PY]
    return head + ["-m", "etl", "run", "--year", str(year), "--inbox", str(inbox), "--export", str(export),
                   "--database-url", f"sqlite:///{db}", "--registry", str(registry)]


def script(name: str, *args: object, **options: object) -> list[str]:
    """`python bench/<name>.py ARGS --option value …`: a floor or a part, in a process of its own."""
    cmd = [PY, str(HERE / f"{name}.py"), *map(str, args)]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd
