"""From cell grids to tidy frames: header variants, blank rows, 合计 and notes, key–value sheets."""

import datetime as dt
import io
import sys

import pandas as pd
import pytest
import pyarrow as pa
import pyarrow.compute as pc
import xlsxwriter

from adapters import workbook
from adapters.workbook import TextTable, Workbook, csv_text_table
from assets.sheets import cell_text, parse_key_value, parse_table, read_sheets
from etl.sample import year_sample
from etl.sample.builder import write_workbook
from schemas.layout import BASIC_INFO, EXPENSES, LAYOUTS, SheetLayout

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


# --- the two readers of a workbook agree ----------------------------------------------------------------
# Big workbooks are read through fastexcel's typed columns, small ones (and every sheet fastexcel cannot
# promise) from python-calamine's grid: the same sheet must read the same both ways.


def _xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    """A workbook of these rows: dates and datetimes formatted as such, None a blank cell, a str starting
    with "=" a formula whose cached value is an error."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False})
    formats = {"date": book.add_format({"num_format": "yyyy-mm-dd"}),
               "time": book.add_format({"num_format": "hh:mm:ss"}),
               "datetime": book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})}
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(r, c, value, formats["datetime"])
                elif isinstance(value, dt.date):
                    sheet.write_datetime(r, c, value, formats["date"])
                elif isinstance(value, dt.time):
                    sheet.write_datetime(r, c, value, formats["time"])
                elif isinstance(value, str) and value.startswith("="):
                    sheet.write_formula(r, c, value, None, "#N/A")
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return buffer.getvalue()


def _assert_same_reading(book: Workbook, name: str, layout: SheetLayout) -> bool:
    """Whether fastexcel took the sheet; if it did, its texts and the parsed sheet are the grid's. (Row 1,
    read as column names, is promised for text cells only: in these sheets it holds nothing else.)"""
    typed = book.typed_text_table(name)
    if typed is None:
        return False
    grid = TextTable.from_grid(book.grid(name))
    assert [typed.row(i) for i in range(typed.height)] == [grid.row(i) for i in range(grid.height)]
    a, b = parse_table(typed, layout, name), parse_table(grid, layout, name)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert (a.headers, a.columns, a.header_row, a.total) == (b.headers, b.columns, b.header_row, b.total)
    return True


def _assert_same_sheets(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name].frame, b[name].frame)
        assert a[name].frame.index.dtype == b[name].frame.index.dtype
        assert (a[name].headers, a[name].columns, a[name].header_row, a[name].rows, a[name].total) == (
            b[name].headers, b[name].columns, b[name].header_row, b[name].rows, b[name].total)


def test_both_readers_read_the_sample_packages_alike(monkeypatch):
    typed = 0
    for spec in year_sample.sample_inbox(year_sample.SAMPLE_YEAR, year_sample.DEFAULT_REGISTRY).packages:
        if spec.raw is not None or spec.no_workbook:
            continue
        buffer = io.BytesIO()
        write_workbook(spec.sheets, buffer)
        book = Workbook(buffer.getvalue())
        for layout in LAYOUTS:
            if not layout.key_value and (name := book.find_sheet(layout.name)) is not None:
                typed += _assert_same_reading(book, name, layout)
        from_grids = read_sheets(buffer.getvalue()).sheets
        with monkeypatch.context() as patch:
            patch.setattr(workbook, "_TYPED_READING_FROM", 0)  # read it as a big workbook is read
            _assert_same_sheets(read_sheets(buffer.getvalue()).sheets, from_grids)
    assert typed >= 40  # most sample sheets hold one kind of cell per column, so fastexcel takes them


MESSY_SHEETS = {
    # Title, blank rows, 合计 in column A and in 摘要, notes, full-width digits, text that looks like numbers.
    "title_and_notes": [
        ["2023年经费支出明细表"], [],
        HEADER,
        ["1", "2023/6/1", "差旅费", "市级经费", "１２３４．５０", "甲", "V1", ""],
        [None] * 8,
        ["2", "2023年6月2日", "会议费", "市级经费", "¥1,000.00", " 乙 ", "V2", "\u3000说明\u3000"],
        ["注：本表金额单位为元"],
        ["", "", "", "", "2234.50", "", "", "合计"],
        ["填表人：张三"],
    ],
    # One kind of cell per column: numbers of every shape, dates, datetimes to the millisecond, booleans.
    "typed": [
        ["序号", "支出日期", "金额（元）", "凭证号", "已报销", "摘要"],
        *[[i, dt.date(2023, 6, i), amount, f"V{i}", i % 2 == 0, "x"] for i, amount in enumerate(
            [0.3, 1e-05, 1234.5, 100000.0, 1e16, 123456789.123, -0.0, 2.5e-12, 1.0000000001], start=1)],
        [10, dt.datetime(2023, 6, 10, 12, 30, 0, 125000), 5.0, "V10", True, None],
        ["合计", None, 1234.0, None, None, None],
        ["注：金额为元"],
    ],
    "datetimes": [["序号", "支出日期", "金额（元）"], [1, dt.datetime(2023, 6, 1, 0, 0), 1.0],
                  [2, dt.datetime(2023, 6, 2, 23, 59, 59, 999000), 2.0]],
    # A formula's error (#N/A) reads blank both ways.
    "error": [["序号", "支出日期", "金额（元）"], [1, dt.date(2023, 6, 1), "=1/0"], [2, dt.date(2023, 6, 2), 2.5]],
    # Sheets fastexcel must leave to the grid: a column mixing kinds, a time of day, a number in column A
    # that fastexcel would print to 9 decimals, a boolean among numbers.
    "mixed": [["序号", "支出日期", "金额（元）"], [1, dt.date(2023, 6, 1), 1.5], [2, "2023年6月2日", "1,000.00"]],
    "time": [["序号", "支出日期", "金额（元）"], [1, dt.time(12, 30), 1.5]],
    "decimal_in_a": [["金额（元）", "支出日期", "序号"], [0.3, dt.date(2023, 6, 1), 1], ["合计", None, None]],
    "bool_among_numbers": [["序号", "支出日期", "金额（元）"], [1, dt.date(2023, 6, 1), True], [2, dt.date(2023, 6, 2), 1.0]],
    # Column A empty; a header lower down (its text falls among the numbers: left to the grid).
    "offset": [[None, "序号", "支出日期", "金额（元）"], [], [None, 1, dt.date(2023, 6, 1), 2.5]],
    "lower_header": [[], ["序号", "支出日期", "金额（元）"], [1, dt.date(2023, 6, 1), 2.5]],
}


def test_fastexcel_takes_only_what_it_reads_as_the_grid_does():
    book = Workbook(_xlsx(MESSY_SHEETS))
    taken = {name for name in MESSY_SHEETS if _assert_same_reading(book, name, EXPENSES)}
    assert taken == {"title_and_notes", "typed", "datetimes", "error", "offset"}


def test_typed_reading_keeps_what_the_unit_sees():
    sheet = parse_table(Workbook(_xlsx(MESSY_SHEETS)).typed_text_table("typed"), EXPENSES, "typed")
    assert list(sheet.frame["amount"]) == ["0.3", "1e-05", "1234.5", "100000", "10000000000000000", "123456789.123",
                                           "0", "2.5e-12", "1.0000000001", "5"]
    assert list(sheet.frame["spent_on"])[-2:] == ["2023-06-09", "2023-06-10 12:30:00.125000"]
    assert sheet.total == (12, "1234")


def test_a_field_in_column_a_other_than_line_numbers_is_read_in_full(monkeypatch):
    monkeypatch.setattr(workbook, "_TYPED_READING_FROM", 0)
    data = _xlsx({"经费支出": [["金额（元）", "支出日期", "序号"], [3.0000000001, dt.date(2023, 6, 1), 1],
                              [1e-10, dt.date(2023, 6, 2), 2]]})
    assert Workbook(data).typed_text_table("经费支出").row(1)[0] == "3"  # fastexcel's 9 decimals
    assert list(read_sheets(data).sheets["经费支出"].frame["amount"]) == ["3.0000000001", "1e-10"]


def test_arrow_trims_exactly_what_str_strip_does():
    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    trimmed = pc.utf8_trim_whitespace(pa.array([f"{c}a{c}" for c in characters])).to_pylist()
    assert [c for c, text in zip(characters, trimmed) if text != f"{c}a{c}".strip()] == []


@pytest.mark.parametrize("text", [
    "1,2.50,3\n4,5,6\n",  # numbers only: still text
    'x,y\n"a,b"," c "\n"multi\nline","q""q"\n',  # quoting, a newline inside a field
    "a,b\n\n1,2\n",  # a blank line
    "a,b,c\n1,2\n",  # a short row
    "a,b\n1,\n,\n",  # empty fields
    ",".join(str(i) for i in range(70)) + "\n1\n",  # wider than the text columns arrow is told of
    "1\r\n2\r\n",
    " 1 , N/A ,NULL,nan,true,-0,2023-06-01,\u3000甲\u3000,\n",  # nothing read as null, a number or a date
])
def test_csv_reads_as_pandas_reads_it(text):
    """Arrow reads the usual CSV; pandas' reading is the reference, and the odd file goes to pandas."""
    def cells(table):
        return table.height, [list(column.texts[column.codes]) for column in table.columns]

    for encoding in ("utf-8", "utf-8-sig", "gb18030"):  # the encodings Excel on Chinese Windows writes
        assert cells(csv_text_table(text.encode(encoding))) == cells(workbook.pandas_csv_text_table(text))


def test_expenses_csv_in_gb18030_with_blank_lines_and_short_rows():
    text = ",".join(HEADER) + "\r\n1,2023-06-01,差旅费,市级经费, 100.50 ,甲,V1,\r\n\r\n2,2023-06-02,会议费\r\n合计,,,,100.50\r\n"
    sheet = parse_table(csv_text_table(text.encode("gb18030")), EXPENSES, "经费支出.csv")
    assert list(sheet.frame.index) == [2, 4]
    assert sheet.frame.loc[2, "amount"] == "100.50"
    assert sheet.frame.loc[4, "payee"] == ""
    assert sheet.total == (5, "100.50")
