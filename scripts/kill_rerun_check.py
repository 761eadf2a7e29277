"""Kill runs at random moments, rerun them, and check that the exports equal a clean run's.

    .venv/bin/python scripts/kill_rerun_check.py [--packages 400] [--kills 6] [--seed 1] [--keep WORKDIR]

A year of generated xlsx packages (the bench's generator: 200 lines each, a tenth of them defective) is
run once to the end: that run's exports are the reference. Then, KILLS times, a fresh warehouse is
filled by a run that is SIGKILLed (its whole process group: the CLI and its package workers) at a random
moment of a clean run's length, and the same run is started again and let finish. Its exports must hold
the same files with the same bytes as the reference; manifest.json the same entries, bar its run id and
time. It reports, for each kill, when it fell (the last step the killed run had started) and what
differed. Exit 1 when any rerun failed or differed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from children import Child, etl_run, pipeline_env, run_child, run_steps  # noqa: E402
from generate import DataSet, YearSpec, generate  # noqa: E402

_VOLATILE = ("run_id", "time")  # the manifest's keys that name the run, not the exports


def exported(export: Path, year: int) -> dict[str, object]:
    """Every export file's bytes by path; manifest.json as its entries without the volatile ones."""
    root = export / str(year)
    files: dict[str, object] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name == "manifest.json":
            files[name] = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k not in _VOLATILE}
        else:
            files[name] = path.read_bytes()
    return files


def differences(reference: dict[str, object], found: dict[str, object]) -> list[str]:
    missing = sorted(reference.keys() - found.keys())
    extra = sorted(found.keys() - reference.keys())
    changed = sorted(name for name in reference.keys() & found.keys() if reference[name] != found[name])
    return [f"missing {n}" for n in missing] + [f"extra {n}" for n in extra] + [f"differs {n}" for n in changed]


def moment_of_kill(child: Child, home: Path) -> str:
    """Where the killed run was: its unfinished step, from its Dagster event log."""
    steps = [step for step, _ in run_steps(child, home)]
    unfinished = [step for step in steps if step.endswith("(unfinished)")]
    if unfinished:
        return unfinished[-1].removesuffix(" (unfinished)")
    return "start-up" if len(steps) == 1 else "between steps, or at the end"


class Workplace:
    def __init__(self, root: Path, data: DataSet) -> None:
        self.root, self.data, self.year = root, data, data.manifest["year"]

    def run(self, name: str, kill_after: float = 3600) -> tuple[Child, Path]:
        """Run the year into warehouse `name` (kept across calls), killed with its process group after
        kill_after seconds (Child.rc None then); returns the run and its Dagster home."""
        env = pipeline_env(self.root, f"home-{name}", self.data.registry)
        command = etl_run(self.year, self.data.inbox, self.root / f"exports-{name}", self.root / f"{name}.db",
                          self.data.registry)
        return run_child(name, command, env=env, log=self.root / f"{name}.log", timeout=kill_after), \
            self.root / f"home-{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=400)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="kill-rerun-"))
    work.mkdir(parents=True, exist_ok=True)
    data = generate(YearSpec("kill", projects=args.packages, lines=200, fmt="xlsx", seed=2099), log=print)
    place, rng = Workplace(work, data), random.Random(args.seed)
    try:
        clean, _ = place.run("clean")
        if clean.rc != 0:
            print(f"the clean run failed (exit {clean.rc}); see {clean.log}")
            return 1
        reference = exported(work / "exports-clean", place.year)
        print(f"clean run: {clean.wall_s:.1f} s, {len(reference)} export files")
        failed = 0
        for k in range(args.kills):
            name = f"kill{k}"
            killed, home = place.run(name, kill_after=rng.uniform(0.5, clean.wall_s))
            fell = "after the run ended" if killed.rc is not None else f"in {moment_of_kill(killed, home)}"
            rerun, _ = place.run(name)
            found = differences(reference, exported(work / f"exports-{name}", place.year)) if rerun.rc == 0 else []
            ok = rerun.rc == 0 and not found
            failed += not ok
            print(f"kill {k}: at {killed.wall_s:.1f} s ({fell}); rerun exit {rerun.rc} in {rerun.wall_s:.1f} s; "
                  + ("exports equal the clean run's" if ok else f"{len(found)} differences: {found[:5]}"))
        print(f"{args.kills - failed} of {args.kills} killed runs, rerun, gave the clean run's exports")
        return 1 if failed else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
