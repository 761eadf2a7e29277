"""From cell grids to tidy frames: header variants, blank rows, 合计 and notes, key–value sheets."""

import datetime as dt

from assets.sheets import cell_text, parse_key_value, parse_table
from schemas.layout import BASIC_INFO, EXPENSES

HEADER = ["序号", "支出日期", "支出科目", "经费来源", "金额（元）", "收款方", "凭证号", "摘要"]


def test_header_variants_map_to_the_template_fields():
    grid = [["序号", "支出日期", "科目", "资金来源", "金额 （元）", "收款单位", "凭证\n号", "用途"],
            [1, dt.date(2023, 6, 1), "差旅费", "市级经费", 100.0, "甲", "V1", "x"]]
    sheet = parse_table(grid, EXPENSES, "经费支出")
    assert list(sheet.frame.columns) == ["seq", "spent_on", "category", "funding_source", "amount", "payee",
                                         "voucher_no", "summary"]
    assert sheet.headers["amount"] == "金额 （元）"  # findings quote the header as the unit typed it


def test_title_rows_blank_rows_total_and_notes():
    grid = [["2023年经费支出明细表"], [],
            HEADER,
            [1, "2023/6/1", "差旅费", "市级经费", "¥1,000.00", "甲", "V1", ""],
            [None] * 8,
            [2, "2023年6月2日", "会议费", "市级经费", 500.5, "乙", "V2", ""],
            ["注：本表金额单位为元"],
            ["合计", "", "", "", 1500.5, "", "", ""],
            ["填表人：张三", "", "", "", "", "", "", ""]]
    sheet = parse_table(grid, EXPENSES, "经费支出")
    assert list(sheet.frame.index) == [4, 6]  # Excel rows as the unit sees them
    assert sheet.frame.loc[6, "amount"] == "500.5"
    assert sheet.total == (8, "1500.5")


def test_a_row_with_only_an_amount_is_data_not_a_note():
    grid = [HEADER, ["", "", "", "", 300.0, "", "", ""]]
    assert list(parse_table(grid, EXPENSES, "经费支出").frame.index) == [2]


def test_header_in_wan_yuan_does_not_match_silently():
    grid = [["支出日期", "支出科目", "金额（万元）"], ["2023-06-01", "差旅费", 1.5]]
    assert "amount" not in parse_table(grid, EXPENSES, "经费支出").headers


def test_key_value_sheet_keeps_each_fields_row():
    grid = [["基本信息"], ["项目编号 ", "2023-ST-01"], ["审计确认支出金额(元)", 100000.0], ["依托单位", "复旦大学附属肿瘤医院"]]
    sheet = parse_key_value(grid, BASIC_INFO, "基本信息")
    assert sheet.frame.loc[0, "audited_total"] == "100000"
    assert sheet.rows == {"project_code": 2, "audited_total": 3, "host_unit": 4}
    assert sheet.headers["audited_total"] == "审计确认支出金额(元)"


def test_cell_text_keeps_what_the_unit_sees():
    assert [cell_text(v) for v in (None, 1234.5, 100000.0, dt.date(2023, 6, 1), dt.datetime(2023, 6, 1), " a ")] == [
        "", "1234.5", "100000", "2023-06-01", "2023-06-01", "a"]
