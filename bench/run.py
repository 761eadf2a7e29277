"""The benchmark: the headless year run at national scale against a floor measured in the same run.

    python bench/run.py [--scale 1.0] [--seed 2099] [--profile] [--keep]      (`make bench [SCALE=0.1]`)

One process tree, one run. This process only orchestrates: every measurement runs in a child process
of its own (`python -m etl run …` for the pipeline, `python bench/run.py --part …` for the rest), whose
wall time and peak RSS (os.wait4's ru_maxrss) are taken when it exits. The synthetic years come from
bench/generate.py (cached under bench/.cache/); nothing of the bureau's real data is read or written.

Measurements (SCALE shrinks the line counts and the number of xlsx packages; ratios keep their sense):
- e2e: the pipeline over 100 CSV packages × 10,000 lines, inbox to exports, fresh SQLite warehouse and
  Dagster home, against the floor: pandas.read_csv of the same CSVs (out of the same zips), the same
  checks as vectorised masks, the group-by reconciliation and a raw sqlite3 executemany of the rows.
- peak RSS of that pipeline process.
- validation: assets.validation.validate_sheets on those lines (parsed by assets.sheets) against the
  same hand-written masks on the same frame.
- xlsx: the pipeline's sheet reading against openpyxl on a 100,000-line 经费支出 sheet.
- many packages: the pipeline over 5,000 xlsx packages × 200 lines (one run): wall and per package.
- backfill: one more package into that warehouse, against the same package into an empty one.

--profile then reruns the e2e and the many-packages pipeline runs under bench/sampler.py (a stack
sampler from the stdlib) and prints the top 25 functions by cumulative and by own time (the timed runs
are never profiled).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import generate

PY = sys.executable
TARGETS = {"e2e_ratio": ("<=", 3), "xlsx_speedup": (">=", 8), "validate_ratio": ("<=", 1.5),
           "backfill_ratio": ("<=", 2), "peak_mib": ("<=", 2048), "per_package_ms": ("<=", 50)}
# A very slow pipeline still leaves a report within the 20 minutes: every child has a cap (seconds)
# and none starts or runs past the whole run's budget.
TIMEOUTS = {"floor": 150, "xlsx": 90, "validate": 240, "e2e": 420, "many": 330, "backfill": 150, "empty": 90,
            "empty_one": 60}
BUDGET_S = 19 * 60


# --- children ------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    wall_s: float
    rc: int | None  # None: killed at its timeout
    peak_mib: float
    log: Path
    started_at: datetime  # UTC, naive (as Dagster's event log stores times)
    result: dict = field(default_factory=dict)  # a --part child's JSON
    skipped: str = ""  # why it was not run
    steps: list[tuple[str, float]] = field(default_factory=list)  # pipeline runs: where the time went

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.skipped


def run_child(name: str, cmd: list[str], *, env: dict[str, str], log: Path, timeout: float) -> Child:
    """Run cmd to its end (or its timeout); wall time and peak RSS of the child and what it waited for."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).replace(tzinfo=None)
    with log.open("wb") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - began > timeout and not timed_out:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # our child's own session, nothing else
            time.sleep(0.01)
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {}
    if not timed_out and proc.returncode == 0:
        last = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        if last and last[-1].startswith("{"):
            result = json.loads(last[-1])
    return Child(name, wall, None if timed_out else proc.returncode, usage.ru_maxrss / 1024, log, started_at, result)


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


def part(name: str, **options: object) -> list[str]:
    cmd = [PY, str(Path(__file__).resolve()), "--part", name]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def link_tree(source: Path, target: Path) -> None:
    """The inbox packages into a working inbox, as hard links (same bytes, same mtime; never written)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir():
            shutil.copytree(entry, destination, copy_function=os.link)
        else:
            try:
                os.link(entry, destination)
            except OSError:
                shutil.copy2(entry, destination)


def read_exports(year_dir: Path) -> dict:
    import pandas as pd

    out: dict = {}
    projects = year_dir / "projects.csv"
    issues = year_dir / "issues.csv"
    if projects.exists():
        frame = pd.read_csv(projects, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        out["status"] = frame["status"].value_counts().to_dict()
    if issues.exists():
        frame = pd.read_csv(issues, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        out["rules"] = frame["rule_id"].value_counts().sort_index().to_dict()
    return out


# --- the floor and the hand-written checks ----------------------------------------------------------

AMOUNT_NOISE = r"[¥￥,，\s元]"
AMOUNT = r"^(?P<sign>[-+]?)(?P<whole>\d+)(?:\.(?P<frac>\d*))?$"
DATE = r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?$"
REQUIRED = ["spent_on", "category", "funding_source", "amount", "voucher_no"]


def hand_checks(frame, year: int) -> dict:
    """The checks validation makes on 经费支出 (S002–S008), as plain vectorised masks (True = fails).

    frame: one row per expense line, text cells, with package_id and level columns."""
    import pandas as pd

    from schemas.layout import ALLOWED_CATEGORIES, SOURCES_BY_LEVEL

    clean = {c: frame[c].astype("string").fillna("").str.normalize("NFKC").str.strip() for c in REQUIRED}
    blank = {c: clean[c].eq("") for c in REQUIRED}
    amount = clean["amount"].str.replace(AMOUNT_NOISE, "", regex=True).str.extract(AMOUNT)
    readable = amount["whole"].notna()
    frac = amount["frac"].fillna("")
    decimals = frac.str.len()
    exact = readable & (decimals <= 2)
    fen = (pd.to_numeric(amount["whole"].where(exact), errors="coerce") * 100
           + pd.to_numeric(frac.where(exact).str.ljust(2, "0"), errors="coerce"))
    fen = fen.where(amount["sign"] != "-", -fen)
    day = clean["spent_on"].str.extract(DATE)
    spent_on = pd.to_datetime(day["y"] + "-" + day["m"].str.zfill(2) + "-" + day["d"].str.zfill(2),
                              format="%Y-%m-%d", errors="coerce")
    source = clean["funding_source"]
    national, municipal = SOURCES_BY_LEVEL["national"], SOURCES_BY_LEVEL["municipal"]
    source_ok = ((frame["level"] == "national") & source.isin(national)) | ((frame["level"] == "municipal") & source.isin(municipal))
    voucher = clean["voucher_no"]
    repeated = pd.DataFrame({"p": frame["package_id"].to_numpy(), "v": voucher.to_numpy()}).duplicated(keep=False).to_numpy()
    fails = {f"S003:{c}": blank[c] for c in REQUIRED}
    fails["S002:spent_on"] = ~blank["spent_on"] & spent_on.isna()
    fails["S002:amount"] = ~blank["amount"] & ~readable
    fails["S006:amount"] = readable & ~(exact & (fen > 0)).fillna(False)
    fails["S004:category"] = ~blank["category"] & ~clean["category"].isin(ALLOWED_CATEGORIES)
    fails["S005:funding_source"] = ~blank["funding_source"] & ~source_ok
    fails["S007:voucher_no"] = ~blank["voucher_no"] & pd.Series(repeated, index=frame.index)
    fails["S008:spent_on"] = spent_on.notna() & (spent_on.dt.year != year)
    return {"fails": fails, "fen": fen, "spent_on": spent_on, "source": source}


def failure_cells(frame, fails: dict):
    """(package_id, excel_row, rule:column) of every failing cell: what validation turns into findings."""
    import pandas as pd

    parts = [pd.DataFrame({"package_id": frame["package_id"][mask].to_numpy(),
                           "excel_row": frame["excel_row"][mask].to_numpy(), "check": name})
             for name, mask in fails.items() if mask.any()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["package_id", "excel_row", "check"])


def zip_members(path: Path) -> tuple[bytes, bytes | None]:
    """The workbook and 经费支出.csv of a generated package (a zip)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        workbook = next(n for n in names if n.lower().endswith(".xlsx"))
        csv = next((n for n in names if n.endswith("经费支出.csv")), None)
        return archive.read(workbook), (archive.read(csv) if csv else None)


def part_floor(args: argparse.Namespace) -> dict:
    """read_csv + masks + group-by + sqlite3 executemany: what the e2e run cannot go below."""
    import sqlite3

    import pandas as pd
    from python_calamine import CalamineWorkbook

    from adapters.registry import load_year

    began = time.perf_counter()
    registry = load_year(args.year, args.registry)
    frames = []
    for package_id, path in enumerate(sorted((Path(args.inbox) / str(args.year)).glob("*.zip")), start=1):
        workbook, data = zip_members(path)
        basic = CalamineWorkbook.from_filelike(io.BytesIO(workbook)).get_sheet_by_name("基本信息").to_python()
        code = next(str(row[1]) for row in basic if row and row[0] == "项目编号")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030")
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        frame.columns = ["seq", "spent_on", "category", "funding_source", "amount", "payee", "voucher_no", "summary"]
        total = frame.index[frame["seq"].str.strip().str.startswith("合计")]
        if len(total):
            frame = frame.loc[: total[0] - 1]
        frame["excel_row"] = frame.index + 2
        frame["package_id"] = package_id
        frame["level"] = registry.project(code).level
        frame["project_code"] = registry.project(code).code
        frames.append(frame)
    lines = pd.concat(frames, ignore_index=True)
    read_s = time.perf_counter() - began

    t = time.perf_counter()
    checked = hand_checks(lines, args.year)
    failing = pd.concat(list(checked["fails"].values()), axis=1).any(axis=1)
    cells = failure_cells(lines, checked["fails"])
    checks_s = time.perf_counter() - t

    t = time.perf_counter()
    rejected = lines.loc[failing, "package_id"].unique()
    accepted = ~lines["package_id"].isin(rejected)
    spent = (pd.DataFrame({"project_code": lines["project_code"], "source": checked["source"], "fen": checked["fen"]})[accepted]
             .groupby(["project_code", "source"])["fen"].sum())
    granted = {(p.code, s): fen for p in registry.projects for s, fen in registry.grants_for(p).items()}
    granted = pd.Series(list(granted.values()), index=pd.MultiIndex.from_tuples(list(granted), names=spent.index.names))
    balance = granted.sub(spent, fill_value=0)
    reconcile_s = time.perf_counter() - t

    t = time.perf_counter()
    db = Path(args.db)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE expense_line (id INTEGER PRIMARY KEY, package_id INTEGER, excel_row INTEGER, "
                 "spent_on DATE, category TEXT, funding_source TEXT, amount_fen BIGINT, amount_typed TEXT, "
                 "payee TEXT, voucher_no TEXT, summary TEXT)")
    fen = checked["fen"].astype(object).where(checked["fen"].notna(), None)
    spent_on = checked["spent_on"].dt.strftime("%Y-%m-%d").astype(object).where(checked["spent_on"].notna(), None)
    rows = zip(lines["package_id"].tolist(), lines["excel_row"].tolist(), spent_on.tolist(), lines["category"].tolist(),
               checked["source"].tolist(), fen.tolist(), lines["amount"].tolist(), lines["payee"].tolist(),
               lines["voucher_no"].tolist(), lines["summary"].tolist())
    with conn:
        conn.executemany("INSERT INTO expense_line (package_id, excel_row, spent_on, category, funding_source, amount_fen, "
                         "amount_typed, payee, voucher_no, summary) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    conn.close()
    insert_s = time.perf_counter() - t
    return dict(lines=len(lines), failing_cells=len(cells), rejected=len(rejected), balances=len(balance),
                read_s=read_s, checks_s=checks_s, reconcile_s=reconcile_s, insert_s=insert_s,
                by_rule=cells["check"].str.split(":").str[0].value_counts().sort_index().to_dict())


def part_validate(args: argparse.Namespace) -> dict:
    """validate_sheets on the year's parsed sheets against the hand masks on the same lines."""
    import pandas as pd

    from adapters.registry import load_year
    from assets.sheets import read_sheets
    from assets.validation import PackageSheets, validate_sheets

    registry = load_year(args.year, args.registry)
    began = time.perf_counter()
    batch = []
    for package_id, path in enumerate(sorted((Path(args.inbox) / str(args.year)).glob("*.zip")), start=1):
        sheets = read_sheets(*zip_members(path)).sheets
        code = sheets["基本信息"].frame.iloc[0]["project_code"]
        batch.append(PackageSheets(package_id, args.year, registry.project(code), sheets))
    parse_s = time.perf_counter() - began
    lines = sum(len(p.sheets["经费支出"].frame) for p in batch)

    t = time.perf_counter()
    found, _prepared = validate_sheets(batch)
    pipeline_s = time.perf_counter() - t
    rules: dict[str, int] = {}
    for findings in found.values():
        for f in findings:
            rules[f.rule_id] = rules.get(f.rule_id, 0) + 1

    t = time.perf_counter()
    parts = []
    for p in batch:
        part = p.sheets["经费支出"].frame.reset_index()
        part["package_id"] = p.package_id
        part["level"] = p.project.level
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    checked = hand_checks(frame, args.year)
    cells = failure_cells(frame, checked["fails"])
    hand_s = time.perf_counter() - t
    return dict(lines=lines, packages=len(batch), parse_s=parse_s, pipeline_s=pipeline_s, hand_s=hand_s,
                pipeline_findings=sum(rules.values()), pipeline_rules=dict(sorted(rules.items())),
                hand_cells=len(cells), hand_rules=cells["check"].str.split(":").str[0].value_counts().sort_index().to_dict())


def xlsx_sheet(lines: int) -> bytes:
    """A workbook of one 经费支出 sheet of N lines (cached: writing it takes longer than reading it)."""
    path = generate.CACHE_DIR / f"xlsx-{lines}-lines.xlsx"
    if not path.exists():
        from datetime import date, timedelta
        from decimal import Decimal

        from etl.sample.builder import EXPENSE_HEADER, write_workbook

        start = date(2099, 3, 1)
        rows = [EXPENSE_HEADER] + [
            [i, start + timedelta(days=i % 200), "差旅费", "市级经费", Decimal(i % 5000) + Decimal("0.25"), "上海某公司",
             f"记-2099-{i:07d}", "专家赴基层服务交通费"]
            for i in range(1, lines + 1)
        ]
        buffer = io.BytesIO()
        write_workbook({"经费支出": rows}, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_bytes(buffer.getvalue())
        path.with_suffix(".partial").rename(path)
    return path.read_bytes()


def xlsx_measure(lines: int) -> dict[str, float]:
    """The pipeline's read of a 经费支出 sheet (assets.sheets.read_sheets: open, read the cells, find the
    header, make the text frame the schemas check; best of three), python-calamine's grid alone (the reference
    reader, for small workbooks and mixed sheets), and openpyxl
    (read_only, values) reading every cell. The speed-up is openpyxl ÷ the pipeline's read."""
    import openpyxl

    from python_calamine import CalamineWorkbook

    from assets.sheets import read_sheets

    def pipeline(data: bytes) -> int:
        return len(read_sheets(data).sheets["经费支出"].frame) + 1  # + the header row

    def grid(data: bytes) -> int:
        sheet = CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_name("经费支出")
        return len(sheet.to_python(skip_empty_area=False))

    def with_openpyxl(data: bytes) -> int:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        rows = sum(1 for _ in book["经费支出"].iter_rows(values_only=True))
        book.close()
        return rows

    data = xlsx_sheet(lines)
    # First-call costs (imports, pandas, pyarrow) are not the reader's: warm up on a sheet big enough
    # for the path big workbooks take (adapters.workbook reads those through fastexcel).
    pipeline(xlsx_sheet(10_000))
    # Best of three for each reader, taken in turn: one reading of a sub-second call is at the mercy
    # of whatever else the machine does in that second.
    times, counts = {}, {}
    for _ in range(3):
        for name, fn in (("pipeline", pipeline), ("grid", grid), ("openpyxl", with_openpyxl)):
            began = time.perf_counter()
            counts[name] = fn(data)
            times[name] = min(times.get(name, float("inf")), time.perf_counter() - began)
    assert set(counts.values()) == {lines + 1}, counts
    return {"lines": lines, "pipeline_s": times["pipeline"], "grid_s": times["grid"], "openpyxl_s": times["openpyxl"],
            "speedup": times["openpyxl"] / times["pipeline"], "grid_speedup": times["openpyxl"] / times["grid"]}


def part_xlsx(args: argparse.Namespace) -> dict:
    return xlsx_measure(args.lines)


# --- the orchestration ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    from importlib.metadata import version

    packages = ["dagster", "pandas", "numpy", "pandera", "sqlalchemy", "python-calamine", "openpyxl", "xlsxwriter"]
    return {
        "cpus": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
        "packages": ", ".join(f"{p} {version(p)}" for p in packages),
    }


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def verdict(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    op, target = TARGETS[name]
    return "ok" if (value <= target if op == "<=" else value >= target) else "MISSED"


def status_of(child: Child) -> str:
    if child.skipped:
        return f" ({child.skipped})"
    return "" if child.ok else (" (TIMED OUT: lower bound)" if child.rc is None else f" (FAILED rc={child.rc}, see {child.log})")


def orchestrate(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    deadline = began + (args.budget or 10**9)
    only = set(args.only.split(",")) if args.only else set(TIMEOUTS)
    scale, seed = args.scale, args.seed
    work = generate.CACHE_DIR / f"run-scale{scale:g}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    say = lambda text: print(text, flush=True)
    say(f"bench: scale {scale:g}, seed {seed}, work dir {work}")

    t = time.perf_counter()
    specs = generate.datasets(scale, seed)
    data = {name: generate.generate(spec, workers=2, log=say) for name, spec in specs.items()}
    generation_s = time.perf_counter() - t
    e2e, many = data["e2e"], data["many"]
    year = e2e.spec.year
    children: dict[str, Child] = {}

    def step(name: str, cmd: list[str], home: str | None = None, registry: Path = e2e.registry,
             skip: str = "") -> Child:
        left = deadline - time.perf_counter()
        if not skip and name not in only:
            skip = "not asked for (--only)"
        if not skip and left < 15:
            skip = f"out of the {args.budget / 60:g}-minute budget"
        if skip:
            say(f"  {name}: not run ({skip})")
            child = Child(name, 0.0, None, 0.0, work / f"{name}.log", datetime.now(), skipped=skip)
        else:
            say(f"  {name} …")
            cap = TIMEOUTS[name] if args.budget else 10**9
            child = run_child(name, cmd, env=pipeline_env(work, home or "home-parts", registry),
                              log=work / f"{name}.log", timeout=min(cap, left - 10))
            if home:
                child.steps = run_steps(child, work / home)
            say(f"  {name}: {fmt_s(child.wall_s)}, peak {child.peak_mib:.0f} MiB{status_of(child)}")
        children[name] = child
        return child

    # The floor, the reader and validation first: they are quick and do not depend on the pipeline's speed.
    floor = step("floor", part("floor", inbox=e2e.inbox, registry=e2e.registry, year=year, db=work / "floor.db"))
    xlsx = step("xlsx", part("xlsx", lines=max(1000, round(100_000 * scale))))
    validate = step("validate", part("validate", inbox=e2e.inbox, registry=e2e.registry, year=year))
    # e2e: the pipeline over the CSV year (fresh warehouse, fresh Dagster home)
    e2e_run = step("e2e", etl_run(year, e2e.inbox, work / "e2e-exports", work / "e2e.db", e2e.registry), "home-e2e")
    e2e_exports = read_exports(work / "e2e-exports" / str(year))
    # many packages, then one late package into that warehouse, against the same package into an empty one
    inbox = work / "many-inbox"
    link_tree(many.inbox / str(year), inbox / str(year))
    many_run = step("many", etl_run(year, inbox, work / "many-exports", work / "many.db", many.registry),
                    "home-many", many.registry)
    many_exports = read_exports(work / "many-exports" / str(year))
    link_tree(many.late / str(year), inbox / str(year))
    backfill = step("backfill", etl_run(year, inbox, work / "many-exports", work / "many.db", many.registry),
                    "home-many", many.registry, skip="" if many_run.ok else "the many-packages run did not finish")
    backfill_exports = read_exports(work / "many-exports" / str(year)) if backfill.ok else {}
    lone = work / "lone-inbox"
    link_tree(many.late / str(year), lone / str(year))
    empty = step("empty", etl_run(year, lone, work / "empty-exports", work / "empty.db", many.registry),
                 "home-empty", many.registry)
    # the same with a registry of that one project only: how much of a run the registry's size costs
    late_code = generate.project_entry(many.spec, many.spec.projects)["code"]
    one_doc = generate.registry_doc(many.spec)
    one_doc["projects"] = [p for p in one_doc["projects"] if p["code"] == late_code]
    generate.write_registry(one_doc, work / "one-registry")
    empty_one = step("empty_one", etl_run(year, lone, work / "one-exports", work / "one.db", work / "one-registry"),
                     "home-one", work / "one-registry")

    # figures: a pipeline run killed at its timeout gives a bound, not a value
    v, x, fl = validate.result, xlsx.result, floor.result
    figures: dict[str, float | None] = {
        "e2e_ratio": e2e_run.wall_s / floor.wall_s if floor.ok and not e2e_run.skipped else None,
        "xlsx_speedup": x.get("speedup"),
        "validate_ratio": v["pipeline_s"] / v["hand_s"] if validate.ok else None,
        "backfill_ratio": backfill.wall_s / empty.wall_s if empty.ok and not backfill.skipped else None,
        "peak_mib": e2e_run.peak_mib if not e2e_run.skipped else None,
        "per_package_ms": many_run.wall_s / many.spec.projects * 1000 if not many_run.skipped else None,
    }
    bound = {"e2e_ratio": e2e_run.rc is None, "backfill_ratio": backfill.rc is None, "per_package_ms": many_run.rc is None,
             "peak_mib": e2e_run.rc is None, "validate_ratio": False, "xlsx_speedup": False}
    em, mm = e2e.manifest, many.manifest
    rows: list[tuple[str, str, str, str]] = []

    def row(measure: str, value: str, against: str = "", figure: str = "") -> None:
        rows.append((measure, value, against, figure))

    def fig(name: str, text: str) -> str:
        value = figures[name]
        if value is None:
            return f"{name}: n/a"
        op, target = TARGETS[name]
        met = verdict(name, value)
        if bound[name] and met == "ok":
            met = "unknown: stopped at its cap"
        return (f"{name} = {'>' if bound[name] else ''}{text} "
                f"(target {op.replace('<=', '≤').replace('>=', '≥')} {target}: {met})")

    def took(child: Child) -> str:
        return "not run" + status_of(child) if child.skipped else fmt_s(child.wall_s) + status_of(child)

    def where(child: Child) -> None:
        if child.steps:
            row("  where the time went", " · ".join(f"{name} {fmt_s(s)}" for name, s in child.steps))

    row(f"e2e: {em['lines']:,} CSV lines in {em['packages']} packages", took(e2e_run),
        f"floor {took(floor)}", fig("e2e_ratio", f"{figures['e2e_ratio'] or 0:.1f}"))
    where(e2e_run)
    if floor.ok:
        row("  floor parts (its process, start to exit)", f"read_csv {fmt_s(fl['read_s'])} · masks {fmt_s(fl['checks_s'])} · "
            f"group-by {fmt_s(fl['reconcile_s'])} · executemany {fmt_s(fl['insert_s'])}",
            f"{fl['failing_cells']:,} failing cells, {fl['rejected']} packages rejected")
    row("  pipeline outcome", _outcome(e2e_exports),
        f"planted {em['planted_total']:,} defective lines in {len(em['defective_packages'])} packages")
    row("peak RSS of the e2e run", f"{e2e_run.peak_mib:,.0f} MiB", f"floor {floor.peak_mib:,.0f} MiB",
        fig("peak_mib", f"{figures['peak_mib'] or 0:.0f}"))
    if validate.ok:
        row(f"validation: {v['lines']:,} lines (validate_sheets)", fmt_s(v["pipeline_s"]),
            f"hand masks {fmt_s(v['hand_s'])}", fig("validate_ratio", f"{figures['validate_ratio']:.2f}"))
        row("  findings", f"pipeline {v['pipeline_findings']:,}", f"hand masks: {v['hand_cells']:,} failing cells")
    else:
        row("validation", took(validate), "", fig("validate_ratio", ""))
    if xlsx.ok:
        row(f"xlsx: {x['lines']:,}-line sheet, pipeline read", fmt_s(x["pipeline_s"]), f"openpyxl {fmt_s(x['openpyxl_s'])}",
            fig("xlsx_speedup", f"{x['speedup']:.1f}"))
        row("  python-calamine's grid alone", fmt_s(x["grid_s"]), f"×{x['grid_speedup']:.1f} openpyxl")
    else:
        row("xlsx", took(xlsx), "", fig("xlsx_speedup", ""))
    row(f"many: {mm['packages']:,} xlsx packages × {many.spec.lines} lines, one run", took(many_run),
        f"{mm['lines']:,} lines; peak {many_run.peak_mib:,.0f} MiB", fig("per_package_ms", f"{figures['per_package_ms'] or 0:.0f}"))
    where(many_run)
    row("  pipeline outcome", _outcome(many_exports),
        f"planted {mm['planted_total']:,} defective lines in {len(mm['defective_packages'])} packages")
    row(f"backfill: +1 package into the {mm['packages']:,}-package warehouse", took(backfill),
        f"same package, empty warehouse: {took(empty)}", fig("backfill_ratio", f"{figures['backfill_ratio'] or 0:.1f}"))
    where(backfill)
    row("  the same package into an empty warehouse", took(empty), "same registry")
    where(empty)
    row("  … with a registry of that project only", took(empty_one),
        f"the other {mm['packages']:,} registered projects cost {fmt_s(empty.wall_s - empty_one.wall_s)}"
        if empty.ok and empty_one.ok else "")
    where(empty_one)
    if backfill.ok:
        row("  outcome after the backfill", _outcome(backfill_exports))
    row("generation (cached after the first run)", fmt_s(generation_s),
        f"when generated: e2e {em['generated_s']} s, many {mm['generated_s']} s")
    row("bench wall time", fmt_s(time.perf_counter() - began))

    table = _table(rows)
    final = "bench: " + " ".join(
        f"{name}={'nan' if value is None else ('>' if bound[name] else '') + _num(value)}" for name, value in figures.items())
    say("")
    say(table)
    say("")
    _write_results(args, table, final, figures, children)
    if args.profile:
        profile(work, e2e, many, only)
    if not args.keep:
        for pattern in ("*.db", "*.db-wal", "*.db-shm"):
            for path in work.glob(pattern):
                path.unlink()
    say(final)
    return 0


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _outcome(exports: dict) -> str:
    if not exports:
        return "no exports"
    status = ", ".join(f"{k} {v}" for k, v in sorted(exports.get("status", {}).items()))
    rules = exports.get("rules", {})
    return f"{status}; findings {sum(rules.values()):,} ({', '.join(f'{k} {v}' for k, v in rules.items())})"


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("measure", "measured", "against", "figure")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"| {header[0]:<{widths[0]}} | {header[1]:<{widths[1]}} | {header[2]:<{widths[2]}} | {header[3]} |",
             f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|---|"]
    lines += [f"| {a:<{widths[0]}} | {b:<{widths[1]}} | {c:<{widths[2]}} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def _write_results(args: argparse.Namespace, table: str, final: str, figures: dict, children: dict[str, Child]) -> None:
    m = machine()
    custom = bool(args.only) or args.budget != BUDGET_S
    name = "RESULTS.md" if args.scale == 1 and not custom else f"RESULTS.scale-{args.scale:g}{'-custom' if custom else ''}.md"
    text = [
        f"# Benchmark results (`make bench{'' if args.scale == 1 else f' SCALE={args.scale:g}'}`)",
        "",
        f"Written by bench/run.py on {datetime.now().astimezone().isoformat(timespec='seconds')}; scale {args.scale:g}, "
        f"seed {args.seed}. Synthetic year {generate.YEAR} (bench/generate.py), never the real data.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['ram']} RAM, Python {m['python']}, {m['os']}.  ",
        f"Packages: {m['packages']}.",
        "",
        table,
        "",
        "Processes (wall time from start to exit, peak RSS from wait4):",
        "",
        *[f"- {c.name}: not run ({c.skipped})" if c.skipped else
          f"- {c.name}: {c.wall_s:.1f} s, {c.peak_mib:.0f} MiB, "
          f"{'ok' if c.ok else 'timed out' if c.rc is None else f'rc {c.rc}'}"
          + (f"; {', '.join(f'{n} {t:.1f} s' for n, t in c.steps)}" if c.steps else "") for c in children.values()],
        "",
        "```",
        final,
        "```",
        "",
    ]
    (HERE / name).write_text("\n".join(text), encoding="utf-8")
    print(f"(written to bench/{name})")


def profile(work: Path, e2e: generate.DataSet, many: generate.DataSet, only: set[str]) -> None:
    """Rerun the e2e and many-packages pipeline runs under bench/sampler.py (a stack sampler: cProfile's
    per-call cost distorts pandas-heavy code too much) and print where their time goes."""
    year = e2e.spec.year
    inbox = work / "many-inbox-profile"
    link_tree(many.inbox / str(year), inbox / str(year))
    for name, data, box in (("e2e", e2e, e2e.inbox), ("many", many, inbox)):
        if name not in only:
            continue
        out = work / f"profile-{name}.txt"
        child = run_child(f"profile-{name}", etl_run(year, box, work / f"prof-{name}-exports", work / f"prof-{name}.db",
                                                     data.registry, profile=out),
                          env=pipeline_env(work, f"home-prof-{name}", data.registry), log=work / f"profile-{name}.log",
                          timeout=3600)
        print(f"\n== profile of the {name} run: {child.wall_s:.1f} s while sampled{status_of(child)} ==")
        if out.exists():
            print(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SCALE") or 1))
    parser.add_argument("--seed", type=int, default=generate.YEAR)
    parser.add_argument("--profile", action="store_true", help="also profile the e2e and many-packages runs")
    parser.add_argument("--keep", action="store_true", help="keep the warehouses of the run in bench/.cache/run-*/")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds for the whole run (default {BUDGET_S}); 0: no budget and no caps per step")
    parser.add_argument("--only", help=f"comma-separated steps to run, of {','.join(TIMEOUTS)}")
    parser.add_argument("--part", choices=["floor", "validate", "xlsx"], help=argparse.SUPPRESS)
    parser.add_argument("--inbox", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--year", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--lines", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        result = {"floor": part_floor, "validate": part_validate, "xlsx": part_xlsx}[args.part](args)
        print(json.dumps(result, ensure_ascii=False, default=float))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
