"""A synthetic reporting year at national scale, for the benchmark (never the bureau's real data).

    python bench/generate.py [--scale 1.0] [--seed 2099]     writes both data sets and prints where

A data set is a year of its own (2099): its registry YAML (N projects, grants per level/type), an
inbox of N packages (one per project) and, for the backfill measurement, one late package of an
extra registered project kept aside in late/<year>/. Packages come from etl.sample.builder's
`clean_package` (every sheet, a work summary and an audit report PDF, 1–2 small photos of its own, so
no photo is reused across projects and M008 flags none) with the
expense table replaced by M/N synthetic lines whose amounts add up to the grant to the fen (or to the
grant less a declared 结余说明 leftover), handed in as the 经费支出 sheet or as `经费支出.csv`.

About 1% of all expense lines are defective (unreadable amount, impossible date, a date of another
year, a repeated 凭证号, a refused or unknown 支出科目, a blank required cell, a funding source the
project's level has not got, three decimals). They are concentrated in a share of the packages (20%
by default), so those packages are rejected with real findings while the rest are accepted and
reconciled. A manifest.json records what was planted, per rule.

Everything follows from the parameters and the seed; a data set is cached under
bench/.cache/<name>-<parameters>-<hash of this file>/ and reused while both stay the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from etl.sample import builder
from etl.sample.builder import (
    BASIC_INFO,
    EXPENSE_HEADER,
    EXPENSES,
    PHOTOS,
    SHANGHAI,
    TOTAL_LABEL,
    clean_package,
    uscc_for,
    write_package,
)

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
YEAR = 2099
# (code letters, level, type): G national, S municipal (shì); T team, B base.
KINDS = [("GT", "national", "team"), ("GB", "national", "base"), ("ST", "municipal", "team"), ("SB", "municipal", "base")]
SOURCES = {"national": ["部拨经费", "市级配套"], "municipal": ["市级经费"]}
# Categories paid to firms: no expert fee caps (R008) apply, so clean lines stay clean.
FIRM_CATEGORIES = sorted(builder._BIG_EXPENSES)
DEFECTS = ["S002:amount", "S002:date", "S008", "S007", "S004:refused", "S004:unknown", "S003", "S005", "S006"]


@dataclass(frozen=True)
class YearSpec:
    """One synthetic data set."""

    name: str  # "e2e" or "many"
    projects: int  # packages in the inbox (one per project)
    lines: int  # expense lines per package
    fmt: str  # "csv" (经费支出.csv beside the workbook) or "xlsx" (the 经费支出 sheet)
    seed: int
    late: int = 0  # extra registered projects whose package is kept aside in late/<year>/
    defect_rate: float = 0.01  # share of all expense lines that are defective
    defective_share: float = 0.2  # share of packages carrying those defects
    leftover_share: float = 0.2  # share of clean packages declaring money left over (R006 warnings)
    year: int = YEAR

    @property
    def key(self) -> str:
        params = json.dumps(asdict(self), sort_keys=True)
        digest = hashlib.sha256(params.encode() + Path(__file__).read_bytes()).hexdigest()[:10]
        return f"{self.name}-seed{self.seed}-p{self.projects}+{self.late}-l{self.lines}-{self.fmt}-{digest}"


@dataclass
class DataSet:
    spec: YearSpec
    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def late(self) -> Path:
        return self.root / "late"

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text(encoding="utf-8"))


def datasets(scale: float, seed: int) -> dict[str, YearSpec]:
    """The two data sets of a benchmark run. SCALE shrinks lines per CSV package, the number of xlsx
    packages and nothing else, so the quick run keeps the shapes of the real one."""
    return {
        "e2e": YearSpec("e2e", projects=100, lines=max(100, round(10_000 * scale)), fmt="csv", seed=seed),
        "many": YearSpec("many", projects=max(20, round(5_000 * scale)), lines=200, fmt="xlsx", seed=seed, late=1),
    }


# --- registry ----------------------------------------------------------------------------------


def project_entry(spec: YearSpec, index: int) -> dict:
    letters, level, kind = KINDS[index % len(KINDS)]
    number = index // len(KINDS) + 1
    if number > 9999:
        raise ValueError("more than 4 × 9999 projects do not fit the registry's code shape")
    host_unit = f"上海市合成测试单位{index + 1:05d}"
    return dict(code=f"{spec.year}-{letters}-{number:02d}", level=level, type=kind, host_unit=host_unit,
                project_name=f"合成测试专家服务项目{index + 1:05d}", uscc=uscc_for(host_unit))


def grants(spec: YearSpec) -> dict[str, dict[str, dict[str, str]]]:
    """Grants scale with the lines, so a line is a few hundred yuan whatever the size."""
    unit = Decimal(max(1, spec.lines * 150 // 1000) * 1000)
    amount = lambda k: f"{unit * k:.2f}"
    return {
        "national": {"team": {"部拨经费": amount(1), "市级配套": amount(1)},
                     "base": {"部拨经费": amount(2), "市级配套": amount(2)}},
        "municipal": {"team": {"市级经费": amount(1)}, "base": {"市级经费": amount(2)}},
    }


def registry_doc(spec: YearSpec) -> dict:
    return {
        "year": spec.year,
        "notice": f"合成基准数据（{spec.name}，seed {spec.seed}）",
        "deadline": date(spec.year, 11, 10),
        "team_completion_date": date(spec.year, 11, 10),
        "grants": grants(spec),
        "projects": [project_entry(spec, i) for i in range(spec.projects + spec.late)],
    }


def write_registry(doc: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['year']}.yaml"
    path.write_text("# Synthetic benchmark year: bench/generate.py, not real data.\n"
                    + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --- packages ----------------------------------------------------------------------------------


def _split_fen(rng: random.Random, total: int, count: int) -> list[int]:
    """count positive amounts in fen adding up to total exactly."""
    weights = [rng.randint(40, 160) for _ in range(count)]
    scale = sum(weights)
    parts = [max(1, total * w // scale) for w in weights]
    parts[-1] = total - sum(parts[:-1])
    if parts[-1] <= 0:
        raise ValueError("grant too small for the lines")
    return parts


def _yuan(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


def build_package(spec: YearSpec, index: int, grant: dict[str, Decimal], defective: bool,
                  leftover: bool) -> tuple[builder.PackageSpec, dict[str, int]]:
    """One package of project `index` and the defects planted in it, per kind."""
    project = {**project_entry(spec, index), "grants": grant}
    rng = random.Random(f"{spec.seed}/{spec.name}/{index}")
    sources = list(grant)
    left = {s: Decimal(rng.randint(500, 5000)) + Decimal("0.50") for s in sources} if leftover else {}
    package = clean_package(project, spec.year, seed=index, leftover=left)
    year, code = spec.year, project["code"]

    # 1–2 photos instead of 3–5.
    photos = package.sheets[PHOTOS]
    keep = 1 + rng.randrange(2)
    for row in photos[1 + keep:]:
        package.files.pop(row[1], None)
    del photos[1 + keep:]

    # The expense table: lines spread over the sources, each source adding up to its grant less leftover.
    rows: list[list] = [list(EXPENSE_HEADER)]
    per_source = [spec.lines // len(sources) + (1 if i < spec.lines % len(sources) else 0) for i in range(len(sources))]
    start, span = date(year, 6, 5), (date(year, 10, 31) - date(year, 6, 5)).days
    textual = spec.fmt == "csv"
    spent = 0
    for source, count in zip(sources, per_source):
        to_spend = int((grant[source] - left.get(source, Decimal(0))) * 100)
        spent += to_spend
        for fen in _split_fen(rng, to_spend, count):
            day = start + timedelta(days=rng.randrange(span))
            category = rng.choice(FIRM_CATEGORIES)
            payees, summary = builder._BIG_EXPENSES[category]
            amount: object = _yuan(fen)
            roll = rng.random()
            if roll < 0.05:
                amount = f"{_yuan(fen):,.2f}"  # typed with thousands separators
            elif roll < 0.08:
                day = f"{day.year}年{day.month}月{day.day}日"  # type: ignore[assignment]
            elif roll < 0.10 and not textual:
                day = day.strftime("%Y/%m/%d")  # type: ignore[assignment]
            rows.append([None, day, category, source, amount, rng.choice(payees), None,
                         summary.format(place="基层服务点")])
    rng.shuffle(body := rows[1:])
    rows[1:] = sorted(body, key=lambda r: str(r[1]))
    for number, row in enumerate(rows[1:], start=1):
        row[0] = number
        row[6] = f"记-{year}-{index + 1:05d}-{number:06d}"  # unique across the year: no R007 by chance

    planted: dict[str, int] = {}
    if defective:
        wanted = max(1, round(spec.lines * spec.defect_rate / spec.defective_share))
        for number, position in enumerate(rng.sample(range(2, len(rows)), min(wanted, len(rows) - 2))):
            kind = DEFECTS[(number + index) % len(DEFECTS)]
            _plant(rows, position, kind, project["level"], year)
            planted[kind] = planted.get(kind, 0) + 1
    rows.append([TOTAL_LABEL, None, None, None, _yuan(spent), None, None, None])
    package.sheets[EXPENSES] = rows
    next(row for row in package.sheets[BASIC_INFO] if row[0].startswith("审计确认支出金额"))[1] = _yuan(spent)
    if spec.fmt == "csv":
        package.expenses_csv = "gbk" if index % 5 == 4 else "utf-8-sig"
    return package, planted


def _plant(rows: list[list], position: int, kind: str, level: str, year: int) -> None:
    row = rows[position]
    if kind == "S002:amount":
        row[4] = f"约{row[4]}"
    elif kind == "S002:date":
        row[1] = f"{year}-06-31"
    elif kind == "S008":
        row[1] = f"{year - 1}-12-{10 + position % 18}"
    elif kind == "S007":
        row[6] = rows[position - 1][6]
    elif kind == "S004:refused":
        row[2] = "招待费"
    elif kind == "S004:unknown":
        row[2] = "办公用品费"
    elif kind == "S003":
        row[3] = None
    elif kind == "S005":
        row[3] = "市级经费" if level == "national" else "部拨经费"
    elif kind == "S006":
        row[4] = f"{Decimal(str(row[4]).replace(',', '')):.2f}7"
    else:
        raise ValueError(kind)


def _plan(spec: YearSpec) -> tuple[set[int], set[int]]:
    rng = random.Random(f"{spec.seed}/{spec.name}/plan")
    defective = set(rng.sample(range(spec.projects), round(spec.projects * spec.defective_share)))
    clean = [i for i in range(spec.projects) if i not in defective]
    leftover = set(rng.sample(clean, round(len(clean) * spec.leftover_share)))
    return defective, leftover


def _project_grants(doc: dict, index: int) -> dict[str, Decimal]:
    p = doc["projects"][index]
    return {s: Decimal(a) for s, a in doc["grants"][p["level"]][p["type"]].items()}


def _write_range(args: tuple[YearSpec, str, list[int]]) -> dict[str, int]:
    spec, root, indices = args
    doc = registry_doc(spec)
    defective, leftover = _plan(spec)
    planted: dict[str, int] = {}
    for index in indices:
        package, found = build_package(spec, index, _project_grants(doc, index), index in defective, index in leftover)
        target = Path(root) / ("late" if index >= spec.projects else "inbox") / str(spec.year)
        if index >= spec.projects:  # the late package arrives a few days after the others
            package.modified_at = datetime(spec.year, 11, 9, 15, 30, tzinfo=SHANGHAI)
        write_package(package, target)
        for kind, n in found.items():
            planted[kind] = planted.get(kind, 0) + n
    return planted


def generate(spec: YearSpec, *, workers: int = 2, cache_dir: Path = CACHE_DIR, log=print) -> DataSet:
    """The data set of spec, from the cache when it is there."""
    root = cache_dir / spec.key
    if (root / "manifest.json").exists():
        return DataSet(spec, root)
    if root.exists():
        shutil.rmtree(root)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    began = time.perf_counter()
    doc = registry_doc(spec)
    write_registry(doc, partial / "registry")
    indices = list(range(spec.projects + spec.late))
    chunks = [indices[i::workers * 8] for i in range(workers * 8)]
    jobs = [(spec, str(partial), chunk) for chunk in chunks if chunk]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_write_range, jobs)
    else:
        results = [_write_range(job) for job in jobs]
    planted: dict[str, int] = {}
    for found in results:
        for kind, n in found.items():
            planted[kind] = planted.get(kind, 0) + n
    defective, leftover = _plan(spec)
    manifest = dict(
        spec=asdict(spec), key=spec.key, year=spec.year, packages=spec.projects, late=spec.late,
        lines=spec.projects * spec.lines, defective_packages=sorted(project_entry(spec, i)["code"] for i in defective),
        leftover_packages=len(leftover), planted=planted, planted_total=sum(planted.values()),
        generated_s=round(time.perf_counter() - began, 1), generated_at=datetime.now().isoformat(timespec="seconds"),
    )
    (partial / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.rename(root)
    log(f"generated {spec.name}: {spec.projects}+{spec.late} packages × {spec.lines} lines ({spec.fmt}) "
        f"in {manifest['generated_s']} s -> {root}")
    return DataSet(spec, root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SCALE", "1") or 1))
    parser.add_argument("--seed", type=int, default=YEAR)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    for spec in datasets(args.scale, args.seed).values():
        data = generate(spec, workers=args.workers)
        m = data.manifest
        print(f"{spec.name}: {data.root} ({m['packages']}+{m['late']} packages, {m['lines']} lines, "
              f"{m['planted_total']} defective lines in {len(m['defective_packages'])} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
