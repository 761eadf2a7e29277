"""The short bilingual summary `python -m etl run` prints after a run (read back from the exports)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from schemas.catalog import PROJECT_STATUS_ZH as _STATUS_ZH

# A folder with more files than this (a national year's 5,000 templates, its feedback workbooks) is one
# line with its count, so that the summary stays readable on a terminal.
_FILES_LISTED_PER_FOLDER = 12


def print_summary(year_dir: Path) -> None:
    projects = pd.read_csv(year_dir / "projects.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    issues = pd.read_csv(year_dir / "issues.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    print()
    print(f"== 项目状态 Projects by status ({len(projects)}) ==")
    for status, count in projects["status"].value_counts().items():
        print(f"  {_STATUS_ZH.get(status, status)} {status}: {count}")
    print(f"== 问题 Findings by rule ({len(issues)}) ==")
    if len(issues):
        table = issues.groupby(["rule_id", "severity"]).size().reset_index(name="n")
        for row in table.itertuples():
            print(f"  {row.rule_id} {row.severity:<7} {row.n}")
    print("== 导出文件 Exports ==")
    for folder in [year_dir, *sorted(p for p in year_dir.rglob("*") if p.is_dir())]:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if len(files) > _FILES_LISTED_PER_FOLDER:
            print(f"  {folder}{os.sep}  （{len(files):,} 个文件 files）")
        else:
            for path in files:
                print(f"  {path}")
