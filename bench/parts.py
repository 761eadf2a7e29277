"""The pipeline's measured parts, each run by the bench in a process of its own:

    python bench/parts.py validate --inbox DIR --registry DIR --year 2099
    python bench/parts.py xlsx --lines 100000

validate: assets.validation.validate_sheets on the CSV year's parsed sheets against the floor's
hand-written masks (floors.hand_checks) on the same lines. xlsx: the pipeline's sheet reading against
openpyxl (and python-calamine's grid alone). The last line printed is the part's JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import generate
from floors import failure_cells, hand_checks, packages, zip_members


def part_validate(inbox: Path, registry_dir: Path, year: int) -> dict:
    """validate_sheets on the year's parsed sheets against the hand masks on the same lines."""
    import pandas as pd

    from adapters.registry import load_year
    from assets.sheets import read_sheets
    from assets.validation import PackageSheets, validate_sheets

    registry = load_year(year, registry_dir)
    began = time.perf_counter()
    batch = []
    for package_id, path in enumerate(packages(inbox, year), start=1):
        sheets = read_sheets(*zip_members(path)).sheets
        code = sheets["基本信息"].first_row()["project_code"]
        batch.append(PackageSheets(package_id, year, registry.project(code), sheets))
    parse_s = time.perf_counter() - began
    lines = sum(len(p.sheets["经费支出"].excel_rows) for p in batch)

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
    checked = hand_checks(frame, year)
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
    reader, for small workbooks and mixed sheets), fastexcel's typed columns alone (the reader a big sheet is read
    with, before the pipeline's census of stray cells and its texts), and openpyxl
    (read_only, values) reading every cell. The speed-up is openpyxl ÷ the pipeline's read."""
    import fastexcel
    import openpyxl

    from python_calamine import CalamineWorkbook

    from assets.sheets import read_sheets

    def pipeline(data: bytes) -> int:
        return len(read_sheets(data).sheets["经费支出"].excel_rows) + 1  # + the header row

    def grid(data: bytes) -> int:
        sheet = CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_name("经费支出")
        return len(sheet.to_python(skip_empty_area=False))

    def columns(data: bytes) -> int:  # what the pipeline's read of a big sheet is made of, without its checks
        return fastexcel.read_excel(data).load_sheet("经费支出", header_row=None).height

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
        for name, fn in (("pipeline", pipeline), ("grid", grid), ("fastexcel", columns), ("openpyxl", with_openpyxl)):
            began = time.perf_counter()
            counts[name] = fn(data)
            times[name] = min(times.get(name, float("inf")), time.perf_counter() - began)
    assert set(counts.values()) == {lines + 1}, counts
    return {"lines": lines, "pipeline_s": times["pipeline"], "grid_s": times["grid"], "fastexcel_s": times["fastexcel"],
            "openpyxl_s": times["openpyxl"], "speedup": times["openpyxl"] / times["pipeline"],
            "grid_speedup": times["openpyxl"] / times["grid"], "fastexcel_speedup": times["openpyxl"] / times["fastexcel"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["validate", "xlsx"])
    parser.add_argument("--inbox", type=Path)
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--year", type=int)
    parser.add_argument("--lines", type=int)
    args = parser.parse_args(argv)
    if args.part == "validate":
        result = part_validate(args.inbox, args.registry, args.year)
    else:
        result = xlsx_measure(args.lines)
    print(json.dumps(result, ensure_ascii=False, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
