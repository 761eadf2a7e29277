"""Hand a directory of spreadsheets no one here wrote to the pipeline, the way units would, and check that
no file can stop the year.

    .venv/bin/python scripts/hostile_check.py DIR [--keep WORKDIR]

For every spreadsheet in DIR (e.g. a reader library's test files: fuzzer-made, damaged, from Excel,
LibreOffice, WPS, Google Sheets) two packages go into a fresh inbox of 2023:
- the spreadsheet handed in as the unit's workbook (beside a clean package's materials);
- for .xlsx/.xlsm, its first sheet grafted in as the 经费支出 sheet of a clean unit workbook.
Then `python -m etl run` runs once over all of them, as a child process whose whole process tree's
resident memory is sampled. It reports: the exit status, the peak memory, whether the inbox is byte- and
time-identical afterwards, and every package that got no finding of its own (P007, "superseded", does
not count: many packages share the 12 projects of 2023).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.registry import load_year  # noqa: E402
from adapters.xlsx_census import sheet_members  # noqa: E402
from etl.sample.builder import clean_package, write_package, write_workbook  # noqa: E402
from etl.sample.year_sample import project_spec  # noqa: E402

SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")


def graft(unit_workbook: bytes, foreign: bytes) -> bytes | None:
    """The unit's workbook with its 经费支出 sheet XML replaced by the foreign workbook's first sheet."""
    try:
        with zipfile.ZipFile(io.BytesIO(foreign)) as archive:
            members = sheet_members(archive)
            sheet_xml = archive.read(next(iter(members.values())))
    except Exception:  # noqa: BLE001 - a foreign file too broken to take a sheet from: not grafted
        return None
    with zipfile.ZipFile(io.BytesIO(unit_workbook)) as archive:
        target = sheet_members(archive)["经费支出"]
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    contents[target] = sheet_xml
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def put_file(folder: Path, name: str, data: bytes) -> None:
    """A file into a package folder, keeping the package's time (else every package would be late, T001)."""
    times = folder.stat()
    (folder / name).write_bytes(data)
    for path in (folder / name, folder):
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def build_inbox(source: Path, inbox: Path) -> dict[str, str]:
    """Package name -> what it holds; packages are folders, so the foreign file goes in as it is."""
    registry = load_year(2023)
    projects = list(registry.projects)
    packages: dict[str, str] = {}
    for i, path in enumerate(sorted(p for p in source.iterdir() if p.suffix.lower() in SPREADSHEETS)):
        project = projects[i % len(projects)]
        spec = clean_package(project_spec(registry, project), 2023, seed=i)
        spec.as_zip = False
        spec.name = f"整本-{i:03d}"
        spec.workbook_name = f"材料{path.suffix.lower()}"
        folder = write_package(spec, inbox / "2023")
        put_file(folder, spec.workbook_name, path.read_bytes())
        packages[spec.name] = f"{path.name} as the workbook"
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            unit = io.BytesIO()
            write_workbook(spec.sheets, unit)
            grafted = graft(unit.getvalue(), path.read_bytes())
            if grafted is not None:
                spec.name, spec.workbook_name = f"经费支出-{i:03d}", "材料.xlsx"
                folder = write_package(spec, inbox / "2023")
                put_file(folder, spec.workbook_name, grafted)
                packages[spec.name] = f"{path.name} grafted as 经费支出"
    return packages


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
            for p in sorted(root.rglob("*")) if p.is_file()}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total


def run(inbox: Path, work: Path) -> tuple[int, int, float]:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "etl", "run", "--year", "2023", "--inbox", str(inbox),
                                "--export", str(work / "exports"), "--database-url",
                                f"sqlite:///{work / 'warehouse.db'}"], cwd=ROOT,
                               stdout=open(work / "run.log", "w"), stderr=subprocess.STDOUT)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    sampler.join()
    return code, peak, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hostile-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    packages = build_inbox(args.source, work / "inbox")
    before = tree_digest(work / "inbox")
    code, peak, seconds = run(work / "inbox", work)
    issues = pd.read_csv(work / "exports" / "2023" / "issues.csv", encoding="utf-8-sig", dtype=str,
                         keep_default_na=False) if code == 0 else pd.DataFrame(columns=["package", "rule_id"])
    own = issues[issues.rule_id != "P007"]
    silent = sorted(name for name in packages if name not in set(own.package))
    print(f"packages: {len(packages)} ({sum('grafted' in v for v in packages.values())} grafted 经费支出)")
    print(f"run: exit {code} in {seconds:.1f} s, peak memory of the process tree {peak / 2**20:.0f} MiB")
    print(f"inbox unchanged: {tree_digest(work / 'inbox') == before}")
    print("findings by rule:", {rule: int(n) for rule, n in own.rule_id.value_counts().sort_index().items()})
    print(f"packages with no finding of their own: {len(silent)}")
    for name in silent:
        print(f"  {name}: {packages[name]}")
    if not args.keep:
        shutil.rmtree(work)
    return 0 if code == 0 and not silent else 1


if __name__ == "__main__":
    sys.exit(main())
