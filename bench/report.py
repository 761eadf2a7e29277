"""The bench's report: figures and their targets, the table, bench/RESULTS*.md and the `bench:` line."""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime
from pathlib import Path

from children import Child

HERE = Path(__file__).resolve().parent
# The order is the `bench:` line's: a new figure goes at the end.
TARGETS = {"e2e_ratio": ("<=", 3), "xlsx_speedup": (">=", 15), "validate_ratio": ("<=", 1.5),
           "backfill_ratio": ("<=", 1.3), "peak_mib": ("<=", 2048), "per_package_ms": ("<=", 10),
           "fast_floor_ratio": ("<=", 2)}
FLOORS = ("floor_pandas", "floor_polars")
PIPELINE_RUNS = ("e2e", "many", "backfill", "empty", "empty_one")


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    from importlib.metadata import version

    packages = ["dagster", "pandas", "numpy", "pandera", "sqlalchemy", "python-calamine", "fastexcel", "pyarrow", "openpyxl",
                "xlsxwriter", "polars"]
    return {
        "cpus": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
        "packages": ", ".join(f"{p} {version(p)}" for p in packages),
    }


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


def fast_floor(children: dict[str, Child]) -> Child | None:
    """The faster of the floors that ran to their end."""
    done = [children[name] for name in FLOORS if name in children and children[name].ok]
    return min(done, key=lambda c: c.wall_s) if done else None


def figures_of(children: dict[str, Child], many_packages: int) -> tuple[dict[str, float | None], dict[str, bool]]:
    """The `bench:` figures and, for each, whether it is a bound (a run stopped at its time cap)."""
    c = children
    e2e, many, backfill, empty, pandas = c["e2e"], c["many"], c["backfill"], c["empty"], c["floor_pandas"]
    fast = fast_floor(c)
    validate, xlsx = c["validate"], c["xlsx"]
    runs = [c[name] for name in PIPELINE_RUNS if not c[name].skipped]
    figures: dict[str, float | None] = {
        "e2e_ratio": e2e.wall_s / pandas.wall_s if pandas.ok and not e2e.skipped else None,
        "xlsx_speedup": xlsx.result.get("speedup"),
        "validate_ratio": validate.result["pipeline_s"] / validate.result["hand_s"] if validate.ok else None,
        "backfill_ratio": backfill.wall_s / empty.wall_s if empty.ok and not backfill.skipped else None,
        "peak_mib": max(r.peak_mib for r in runs) if runs else None,
        "per_package_ms": many.wall_s / many_packages * 1000 if not many.skipped else None,
        "fast_floor_ratio": e2e.wall_s / fast.wall_s if fast and not e2e.skipped else None,
    }
    bound = {"e2e_ratio": e2e.rc is None, "backfill_ratio": backfill.rc is None, "per_package_ms": many.rc is None,
             "peak_mib": any(r.rc is None for r in runs), "validate_ratio": False, "xlsx_speedup": False,
             "fast_floor_ratio": e2e.rc is None}
    return figures, bound


def final_line(figures: dict[str, float | None], bound: dict[str, bool]) -> str:
    return "bench: " + " ".join(
        f"{name}={'nan' if value is None else ('>' if bound[name] else '') + _num(value)}" for name, value in figures.items())


def table_rows(children: dict[str, Child], figures: dict, bound: dict, *, e2e_manifest: dict, many_manifest: dict,
               many_lines: int, exports: dict[str, dict], cells: str, generation_s: float, bench_s: float) -> list[tuple]:
    """The table's rows: (measure, measured, against, figure)."""
    c = children
    e2e_run, many_run, backfill, empty, empty_one = (c[name] for name in PIPELINE_RUNS)
    validate, xlsx = c["validate"], c["xlsx"]
    v, x = validate.result, xlsx.result
    em, mm = e2e_manifest, many_manifest
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
        if child.skipped:
            return "not run" + status_of(child)
        tries = f" (best of {' and '.join(map(fmt_s, child.tries))})" if len(child.tries) > 1 else ""
        return fmt_s(child.wall_s) + tries + status_of(child)

    def where(child: Child) -> None:
        if child.steps:
            row("  where the time went", " · ".join(f"{name} {fmt_s(s)}" for name, s in child.steps))

    fast = fast_floor(c)
    floors = ", ".join(f"{name.split('_')[1]} {took(c[name])}" for name in FLOORS)
    row(f"e2e: {em['lines']:,} CSV lines in {em['packages']} packages", took(e2e_run),
        f"floors: {floors}; fast: {fast.name.split('_')[1] if fast else 'none'}",
        fig("fast_floor_ratio", f"{figures['fast_floor_ratio'] or 0:.1f}"))
    row("  against the pandas floor alone", took(e2e_run), f"pandas floor {took(c['floor_pandas'])}",
        fig("e2e_ratio", f"{figures['e2e_ratio'] or 0:.1f}"))
    where(e2e_run)
    for name in FLOORS:
        floor = c[name]
        if floor.ok:
            r = floor.result
            rest = floor.wall_s - r["read_s"] - r["checks_s"] - r["reconcile_s"] - r["insert_s"]
            row(f"  {name.split('_')[1]} floor parts (its process, start to exit)",
                f"read {fmt_s(r['read_s'])} · checks {fmt_s(r['checks_s'])} · group-by {fmt_s(r['reconcile_s'])} · "
                f"executemany {fmt_s(r['insert_s'])} · start-up and exit {fmt_s(rest)}",
                f"{r['failing_cells']:,} failing cells, {r['rejected']} packages rejected")
    row("  the floors' failing cells (file, row, column, rule)", cells)
    row("  pipeline outcome", _outcome(exports["e2e"]),
        f"planted {em['planted_total']:,} defective lines in {len(em['defective_packages'])} packages")
    ran = [r for r in (e2e_run, many_run, backfill, empty, empty_one) if not r.skipped]
    top = max(ran, key=lambda r: r.peak_mib) if ran else None
    row("peak RSS of the pipeline runs (process tree)",
        f"{top.peak_mib:,.0f} MiB ({top.name}, {_processes(top)})" if top else "not run",
        " · ".join([f"{r.name} {r.peak_mib:,.0f} MiB" for r in ran]
                   + [f"{name.replace('_', ' ')} {c[name].peak_mib:,.0f} MiB" for name in FLOORS if not c[name].skipped]),
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
        row("  fastexcel's columns alone (the reader under the pipeline's)", fmt_s(x["fastexcel_s"]),
            f"×{x['fastexcel_speedup']:.1f} openpyxl")
    else:
        row("xlsx", took(xlsx), "", fig("xlsx_speedup", ""))
    row(f"many: {mm['packages']:,} xlsx packages × {many_lines} lines, one run", took(many_run),
        f"{mm['lines']:,} lines; peak {many_run.peak_mib:,.0f} MiB", fig("per_package_ms", f"{figures['per_package_ms'] or 0:.0f}"))
    where(many_run)
    row("  pipeline outcome", _outcome(exports["many"]),
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
        row("  outcome after the backfill", _outcome(exports["backfill"]))
    row("generation (cached after the first run)", fmt_s(generation_s),
        f"when generated: e2e {em['generated_s']} s, many {mm['generated_s']} s")
    row("bench wall time", fmt_s(bench_s))
    return rows


def _processes(child: Child) -> str:
    return "one process" if child.processes == 1 else f"up to {child.processes} processes at once"


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _outcome(exports: dict) -> str:
    if not exports:
        return "no exports"
    status = ", ".join(f"{k} {v}" for k, v in sorted(exports.get("status", {}).items()))
    rules = exports.get("rules", {})
    return f"{status}; findings {sum(rules.values()):,} ({', '.join(f'{k} {v}' for k, v in rules.items())})"


def table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("measure", "measured", "against", "figure")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"| {header[0]:<{widths[0]}} | {header[1]:<{widths[1]}} | {header[2]:<{widths[2]}} | {header[3]} |",
             f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|---|"]
    lines += [f"| {a:<{widths[0]}} | {b:<{widths[1]}} | {c:<{widths[2]}} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def write_results(*, scale: float, seed: int, year: int, custom: bool, table_text: str, final: str,
                  children: dict[str, Child]) -> None:
    m = machine()
    name = "RESULTS.md" if scale == 1 and not custom else f"RESULTS.scale-{scale:g}{'-custom' if custom else ''}.md"
    text = [
        f"# Benchmark results (`make bench{'' if scale == 1 else f' SCALE={scale:g}'}`)",
        "",
        f"Written by bench/run.py on {datetime.now().astimezone().isoformat(timespec='seconds')}; scale {scale:g}, "
        f"seed {seed}. Synthetic year {year} (bench/generate.py), never the real data.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['ram']} RAM, Python {m['python']}, {m['os']}.  ",
        f"Packages: {m['packages']}.",
        "",
        table_text,
        "",
        "Processes (wall time from start to exit; peak RSS of the process tree, summed over its processes and "
        "sampled every 20 ms, never below wait4's maxrss):",
        "",
        *[f"- {c.name}: not run ({c.skipped})" if c.skipped else
          f"- {c.name}: {c.wall_s:.1f} s, {c.peak_mib:.0f} MiB (largest process {c.maxrss_mib:.0f} MiB, "
          f"{_processes(c)}), {'ok' if c.ok else 'timed out' if c.rc is None else f'rc {c.rc}'}"
          + (f"; {', '.join(f'{n} {t:.1f} s' for n, t in c.steps)}" if c.steps else "") for c in children.values()],
        "",
        "```",
        final,
        "```",
        "",
    ]
    (HERE / name).write_text("\n".join(text), encoding="utf-8")
    print(f"(written to bench/{name})")
