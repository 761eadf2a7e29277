"""The short bilingual summary `python -m etl run` prints after a run (read back from the exports)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from schemas.catalog import PROJECT_STATUS_ZH as _STATUS_ZH


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
    for path in sorted(year_dir.rglob("*")):
        if path.is_file():
            print(f"  {path}")
