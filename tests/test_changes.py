"""What changed between two versions of a unit's package, on SQLite and PostgreSQL: a corrected
package with one line fewer and a changed amount names each fixed finding and changed line."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from openpyxl import load_workbook
from sqlalchemy import create_engine

from assets.changes import package_changes
from etl.cli import main as cli_main
from tests.conftest import put

CODE = "2023-ST-04"


def _versions(clean):
    first = clean(CODE)
    first.name = "超算中心-初稿.zip"
    first.sheets["经费支出"][2][2] = "设备购置费"  # S004 on Excel row 3, fixed in the correction
    second = clean(CODE)
    second.name = "超算中心-更正.zip"
    second.modified_at = first.modified_at + timedelta(days=1)
    expenses = second.sheets["经费支出"]
    removed = expenses.pop(-2)  # the last line before 合计
    old_amount = expenses[1][4]
    expenses[1][4] = old_amount - Decimal("100.00")
    return first, second, removed, old_amount, expenses[1]


def test_diff_between_two_versions(clean, inbox, database_url, run_etl, tmp_path, capsys):
    first, second, removed, old_amount, changed = _versions(clean)
    put(inbox, first)
    put(inbox, clean("2023-ST-01"))
    run_etl(inbox, database_url, tmp_path / "e1")
    put(inbox, second)
    run = run_etl(inbox, database_url, tmp_path / "e2")

    engine = create_engine(database_url)
    with engine.connect() as conn:
        changes = package_changes(conn, 2023, CODE)
    engine.dispose()
    assert (changes.old, changes.new) == ("超算中心-初稿.zip", "超算中心-更正.zip")
    fixed = [row for row in changes.findings if row[0] == "已改正"]
    assert [(row[1], row[4]) for row in fixed] == [("S004", 3)]
    # The correction spends less than granted: its new money findings are named as new.
    assert {row[1] for row in changes.findings if row[0] == "新出现"} >= {"R006"}
    by_change = {}
    for row in changes.lines:
        by_change.setdefault(row[0], []).append(row)
    assert [(row[1], row[3]) for row in by_change["删除"]] == [(len(second.sheets["经费支出"]), removed[6])]
    assert "新增" not in by_change
    edits = {row[3]: row[6] for row in by_change["修改"]}
    assert edits == {changed[6]: f"金额（元）：{old_amount} → {changed[4]}",
                     second.sheets["经费支出"][2][6]: f"支出科目：设备购置费 → {second.sheets['经费支出'][2][2]}"}
    source = changed[3]
    before, after = next((row[1], row[2]) for row in changes.money if row[0] == source)
    assert Decimal(before) - Decimal(after) == Decimal("100.00") + (removed[4] if removed[3] == source else 0)
    assert ("内容有变化", "专家服务基层材料.xlsx") in changes.materials

    # The same, as files and as the operator's command.
    book = load_workbook(run.dir / "changes" / f"{CODE}.xlsx", read_only=True)
    assert book.sheetnames == ["问题变化", "支出明细变化", "经费来源", "材料文件变化"]
    assert any(row[0] == "已改正" and row[1] == "S004" for row in book["问题变化"].iter_rows(values_only=True))
    feedback = load_workbook(run.dir / "feedback" / f"{CODE}.xlsx", read_only=True)
    assert feedback.sheetnames[:3] == ["说明", "问题清单", "版本变更"]
    assert not (run.dir / "changes" / "2023-ST-01.xlsx").exists()  # one version: nothing to compare
    capsys.readouterr()
    assert cli_main(["diff", "--year", "2023", "--project", CODE, "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert "超算中心-初稿.zip → 超算中心-更正.zip" in out and "已改正 1 条" in out
    assert f"改动的单元格：金额（元）：{old_amount} → {changed[4]}" in out
    assert cli_main(["diff", "--year", "2023", "--project", "2023-ST-01", "--database-url", database_url]) == 2
    assert cli_main(["diff", "--year", "2023", "--project", CODE, "--from", "无此版本.zip",
                     "--database-url", database_url]) == 2
