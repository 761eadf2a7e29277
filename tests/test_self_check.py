"""`python -m etl check`: one package judged as the pipeline judges it, before it is sent, without
touching the warehouse or the package; and every finding at once (money too) for a rejected package."""

from __future__ import annotations

from decimal import Decimal

import openpyxl
import pandas as pd

from adapters.fee_caps import load_fee_caps
from assets.self_check import NEEDS_OTHER_PACKAGES, check_package
from etl.cli import main
from etl.sample.builder import EXPENSE_HEADER, USCC_ALPHABET
from tests.conftest import put, tree_digest

AMOUNT = EXPENSE_HEADER.index("金额（元）")


def overspent_with_bad_uscc(spec):
    """A package rejected for its credit code that also overspends 500.00 (合计 and audit in step)."""
    basic = {row[0]: row for row in spec.sheets["基本信息"]}
    uscc = basic["统一社会信用代码"]
    uscc[1] = uscc[1][:-1] + USCC_ALPHABET[(USCC_ALPHABET.index(uscc[1][-1]) + 5) % len(USCC_ALPHABET)]
    rows = spec.sheets["经费支出"]
    for row in (rows[2], rows[-1]):
        row[AMOUNT] = Decimal(row[AMOUNT]) + 500
    audited = basic["审计确认支出金额（元）"]
    audited[1] = Decimal(audited[1]) + 500
    return spec


def test_rejected_package_gets_its_money_findings_in_the_same_answer(clean, inbox, database_url, run_etl, tmp_path,
                                                                     capsys):
    path = put(inbox, overspent_with_bad_uscc(clean("2023-ST-02")))
    before = tree_digest(inbox)
    out = tmp_path / "feedback"
    assert main(["check", str(path), "--year", "2023", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "[致命] S009" in printed and "[致命] R001" in printed and "市级经费超支 500.00 元" in printed
    assert "暂定" in printed and "致命问题 2 个" in printed
    assert tree_digest(inbox) == before  # the unit's package is left as it was
    cover = openpyxl.load_workbook(out / "2023-ST-02.xlsx")["说明"]
    text = "\n".join(str(c.value) for row in cover.iter_rows() for c in row if c.value)
    assert "经费对账结果为暂定" in text and "工作表“基本信息”" in text
    overspent = next(line for line in text.splitlines() if line.startswith("市级经费：拨付"))  # the unit's own figures
    assert overspent.endswith("超支 500.00 元。") and "reconciliation.csv" not in text
    assert overspent in printed

    run = run_etl(inbox, database_url)
    assert sorted(run.findings(package=path.name).rule_id) == ["R001", "S009"]
    assert run.status("2023-ST-02") == "rejected"
    money = pd.read_csv(run.dir / "reconciliation.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    row = money.set_index("project_code").loc["2023-ST-02"]
    assert (row.spent, row.balance, row.status, row.provisional) == ("100500.00", "-500.00", "overspent", "true")
    assert list(money.columns)[-1] == "provisional"
    assert set(money[money.project_code != "2023-ST-02"].status) == {"unreconciled"}  # no package: T003 only


def as_set(frame: pd.DataFrame) -> set[tuple[str, ...]]:
    return {tuple("" if pd.isna(v) else str(v) for v in row) for row in frame.itertuples(index=False)}


def test_check_finds_what_the_pipeline_finds(clean, inbox, sqlite_url, run_etl, registry, tmp_path):
    from etl.sample import year_sample

    # Two sample packages with many planted defects: bad accounts, and a wrong identity with a missing column.
    specs = year_sample.sample_inbox(2023, year_sample.DEFAULT_REGISTRY).packages
    paths = [put(inbox, next(s for s in specs if unit in s.name)) for unit in ("环境监测", "科学技术交流")]
    run = run_etl(inbox, sqlite_url)
    caps = load_fee_caps()
    columns = ["rule_id", "severity", "sheet", "row", "column", "value", "message"]
    for path in paths:
        checked = check_package(path, registry, caps).findings
        assert not checked.empty
        piped = run.findings(package=path.name)
        piped = piped[~piped.rule_id.isin(NEEDS_OTHER_PACKAGES)]
        assert as_set(checked[columns]) == as_set(piped[columns]), path.name


def test_check_writes_no_warehouse_and_passes_a_clean_package(clean, inbox, tmp_path, monkeypatch, capsys):
    warehouse = tmp_path / "real-warehouse.db"
    monkeypatch.setenv("ETL_DATABASE_URL", f"sqlite:///{warehouse}")
    path = put(inbox, clean("2023-SB-06"))
    assert main(["check", str(path), "--year", "2023"]) == 0
    printed = capsys.readouterr().out
    assert "致命问题 0 个，警告 0 个" in printed and "最终结果" in printed
    assert not warehouse.exists()
    assert main(["check", str(tmp_path / "nothing.zip"), "--year", "2023"]) == 2


def test_unreadable_amounts_leave_the_money_unreconciled_and_say_so(clean, inbox, tmp_path, registry):
    spec = clean("2023-SB-03")
    spec.sheets["经费支出"][3][AMOUNT] = "一千元"  # S002: the amount cannot be read
    result = check_package(put(inbox, spec), registry, load_fee_caps(), tmp_path)
    assert list(result.findings.rule_id) == ["S002"] and result.money.state == "unreadable"
    cover = openpyxl.load_workbook(result.feedback)["说明"]
    text = "\n".join(str(c.value) for row in cover.iter_rows() for c in row if c.value)
    assert "尚未对账" in text and "金额或经费来源无法识别" in text


def test_a_late_file_time_is_not_a_check_finding(clean, inbox, registry):
    from datetime import datetime

    from etl.sample.builder import SHANGHAI

    spec = clean("2023-ST-01")
    spec.modified_at = datetime(2023, 11, 20, 9, 0, tzinfo=SHANGHAI)  # the pipeline would say T001
    assert check_package(put(inbox, spec), registry, load_fee_caps()).findings.empty


def test_check_a_folder_package_copies_it_with_its_times(clean, inbox, registry, tmp_path):
    spec = clean("2023-GT-02")
    spec.as_zip, spec.name = False, spec.name.removesuffix(".zip")
    del spec.files[next(row[1] for row in spec.sheets["基本信息"] if row[0] == "审计报告文件")]
    folder = put(inbox, spec)
    before = tree_digest(inbox)
    result = check_package(folder, registry, load_fee_caps(), tmp_path)
    assert list(result.findings.rule_id) == ["M002"] and result.money.state == "provisional"
    assert tree_digest(inbox) == before
