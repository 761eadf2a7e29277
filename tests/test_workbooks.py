"""The two workbooks people print and open: the bureau's summary.xlsx and a unit's feedback list.

One real run over a small inbox (two clean projects with money left over, one project handed in twice
with defects, one of them a formula-like value), then both workbooks written from its exports and
warehouse and read back with openpyxl, as Excel would show them.
"""

import io
import zipfile
from datetime import date, datetime, time
from decimal import Decimal

import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook
from sqlalchemy import create_engine

from adapters.warehouse import store
from assets.feedback import FATAL_FILL, WARNING_FILL, write_feedback
from assets.sheets import SheetsRead, dump_grids
from assets.summary_workbook import MONEY_FORMAT, NO_NATIONAL_FILINGS, write_summary
from etl.cli import main as cli_main
from etl.sample.builder import BASIC_FIELDS, EXPENSE_HEADER, SHANGHAI, clean_package
from tests.conftest import Run, project_dict, put

FORMULA = '=HYPERLINK("http://x","y")'
AMOUNT, CATEGORY, DATE = (EXPENSE_HEADER.index(h) for h in ("金额（元）", "支出科目", "支出日期"))
USCC_ROW = BASIC_FIELDS.index("统一社会信用代码") + 1
DEFECTIVE = "2023-ST-03"
SUMMARY_SHEETS = ["汇总表", "问题清单", "结余退回", "国家系统报送", "豁免记录", "本次变化"]


def read_csv(run: Run, name: str) -> pd.DataFrame:
    return pd.read_csv(run.dir / name, encoding="utf-8-sig", dtype=str, keep_default_na=False)


def rows(sheet) -> list[tuple]:
    return [row for row in sheet.iter_rows(values_only=True) if any(v is not None for v in row)]


def formulas_in(path) -> list[str]:
    """Sheet parts of an xlsx that hold a formula element (<f>), whatever openpyxl makes of them."""
    with zipfile.ZipFile(path) as archive:
        return [n for n in archive.namelist() if n.startswith("xl/worksheets/") and b"<f>" in archive.read(n)]


@pytest.fixture(scope="module")
def year(tmp_path_factory, registry):
    """Run the pipeline once; hand back its exports and the defective project's package in use."""
    root = tmp_path_factory.mktemp("workbooks")
    inbox = root / "inbox"
    spec = lambda code, **kw: clean_package(project_dict(registry, code), 2023, **kw)  # noqa: E731
    put(inbox, spec("2023-GT-01", leftover={"部拨经费": Decimal("3860.00"), "市级配套": Decimal("1275.50")}))
    put(inbox, spec("2023-SB-01", leftover={"市级经费": Decimal("5000.00")}))

    first = spec(DEFECTIVE)
    first.name = "上海市环境监测中心-材料（初稿）.zip"
    first.modified_at = datetime(2023, 11, 3, 9, 0, tzinfo=SHANGHAI)
    first.sheets["经费支出"][2][DATE] = "2023-13-01"
    put(inbox, first)

    newest = spec(DEFECTIVE)
    newest.modified_at = datetime(2023, 11, 12, 10, 0, tzinfo=SHANGHAI)  # late: T001, a finding with no cell
    newest.sheets["经费支出"][2][AMOUNT] = "一千元"  # Excel row 3: S002
    newest.sheets["经费支出"][3][CATEGORY] = FORMULA  # Excel row 4: S004, typed as text
    newest.sheets["服务活动"][1][4] = "999999"  # Excel row 2: S010, a warning
    newest.sheets["基本信息"][USCC_ROW - 1][1] = "91310000MA1FL0000X"  # key-value sheet: S009 in column B
    put(inbox, newest)

    url = f"sqlite:///{root / 'w.db'}"
    assert cli_main(["run", "--year", "2023", "--inbox", str(inbox), "--export", str(root / "exports"),
                     "--database-url", url]) == 0
    run = Run(root / "exports")
    engine = create_engine(url)
    with engine.connect() as conn:
        in_use = store.newest_packages(conn, 2023)[DEFECTIVE]
        workbook = store.package_blobs(conn, [in_use.id])[in_use.id][0]
        sheets = {sheet: found for (_, sheet), found in store.package_sheets(conn, [in_use.id]).items()}
    engine.dispose()
    assert in_use.name == newest.name
    return dict(root=root, run=run, reconciliation=read_csv(run, "reconciliation.csv"), workbook=workbook,
                sheets=sheets, package=newest.name, superseded=first.name)


@pytest.fixture(scope="module")
def summary(year):
    run = year["run"]
    path = write_summary(year["root"] / "summary.xlsx", year=2023, projects=run.projects, issues=run.issues,
                         reconciliation=year["reconciliation"], national=pd.DataFrame())
    return openpyxl.load_workbook(path), path


def feedback_for(year, path, *, findings=None, workbook=..., package=None):
    run = year["run"]
    project = run.projects.set_index("project_code").loc[DEFECTIVE]
    return write_feedback(
        path, year=2023,
        project=dict(code=DEFECTIVE, host_unit=project.host_unit, project_name=project.project_name,
                     level=project.level, type=project.type),
        status=project.status, package=year["package"] if package is None else package,
        findings=run.issues[run.issues.project_code == DEFECTIVE] if findings is None else findings,
        workbook=year["workbook"] if workbook is ... else workbook, sheets=year["sheets"], deadline="2023-11-10")


@pytest.fixture(scope="module")
def feedback(year):
    path = feedback_for(year, year["root"] / "feedback" / f"{DEFECTIVE}.xlsx")
    return openpyxl.load_workbook(path), path


# --- summary.xlsx ------------------------------------------------------------------------------------

def test_summary_sheets_in_order_and_written_whole(summary, year):
    book, path = summary
    assert book.sheetnames == SUMMARY_SHEETS
    assert not list(path.parent.glob("*.partial.xlsx"))


def test_summary_one_row_per_project_with_exact_totals(summary, year):
    sheet = summary[0]["汇总表"]
    table = rows(sheet)
    header, body, total = table[0], table[1:-1], table[-1]
    col = {name: i for i, name in enumerate(header)}
    assert [r[0] for r in body] == year["run"].projects.project_code.tolist()  # all 12 registered
    assert total[0] == "合计"
    assert Decimal(str(total[col["拨付（元）"]])) == Decimal("2000000.00")
    # Spent and left over are known only for the two reconciled projects.
    assert Decimal(str(total[col["支出（元）"]])) == Decimal("389864.50")
    assert Decimal(str(total[col["结余（元）"]])) == Decimal("10135.50")
    by_code = {r[0]: r for r in body}
    gt01, st03 = by_code["2023-GT-01"], by_code[DEFECTIVE]
    assert gt01[col["级别"]] == "国家级" and gt01[col["类型"]] == "服务团" and gt01[col["状态"]] == "通过"
    assert gt01[col["结余（元）"]] == 5135.5
    counts = year["run"].projects.set_index("project_code")[["fatal_count", "warning_count"]].astype(int)
    assert {r[0]: (r[col["致命问题数"]], r[col["警告数"]]) for r in body} == \
        {code: tuple(n) for code, n in counts.iterrows()}
    assert st03[col["状态"]] == "退回" and st03[col["是否逾期"]] == "是" and st03[col["材料包"]] == year["package"]
    assert st03[col["支出（元）"]] is None and st03[col["结余（元）"]] is None  # unreconciled: blank, not 0
    assert by_code["2023-SB-05"][col["状态"]] == "未报送"
    assert (total[col["致命问题数"]], total[col["警告数"]]) == tuple(counts.sum())


def test_summary_money_cells_are_numbers_with_format(summary):
    sheet = summary[0]["汇总表"]
    for column in "JKL":
        cell = sheet[f"{column}2"]
        assert cell.data_type == "n" and cell.number_format == MONEY_FORMAT
    assert sheet["J14"].number_format == MONEY_FORMAT  # the 合计 row too
    # A whole amount is written as xlsxwriter writes its first cell ("200000", not "200000.0"), so a
    # script reading the summary sees one type for whole amounts down the column.
    amounts = [c.value for column in "JKL" for c in sheet[column][1:] if c.value is not None]
    assert amounts and all(type(v) is int or not float(v).is_integer() for v in amounts), amounts


def test_summary_every_cell_of_a_table_has_its_kinds_format(summary):
    """The first cell of each format is xlsxwriter's, the others are shown like it (assets/plain_cells.py):
    every cell of the table, blank ones too, is framed, and every money cell has the money format."""
    sheet = summary[0]["汇总表"]
    header = [c.value for c in sheet[1]]
    money = {i for i, name in enumerate(header) if name.endswith("（元）")}
    body = list(sheet.iter_rows(min_row=2, max_col=len(header)))
    assert len(body) == 13 and any(c.value is None for row in body for c in row)  # 12 projects, 合计; blanks
    for row in body:
        for i, cell in enumerate(row):
            assert cell.border.left.style == "thin", cell.coordinate
            assert (cell.number_format == MONEY_FORMAT) == (i in money), cell.coordinate
    assert all(c.font.b for c in body[-1]) and not any(c.font.b for c in body[0])  # 合计 is bold


def test_summary_sums_in_decimal_not_float(tmp_path):
    projects = pd.DataFrame([dict(project_code="2023-GT-09", host_unit="某单位", project_name="某项目", level="national",
                                  type="team", package="", received_at="", late="false", status="accepted",
                                  fatal_count="0", warning_count="0")])
    money = pd.DataFrame([dict(project_code="2023-GT-09", funding_source=source, granted=granted, spent="0.00",
                               balance=granted, refund_to="", refund_declared="0.00", status="refund_due")
                          for source, granted in [("部拨经费", "0.10"), ("市级配套", "0.20")]])
    path = write_summary(tmp_path / "s.xlsx", year=2023, projects=projects, issues=pd.DataFrame(columns=[
        "project_code", "package", "rule_id", "severity", "sheet", "row", "column", "value", "message"]),
        reconciliation=money, national=pd.DataFrame())
    sheet = openpyxl.load_workbook(path)["汇总表"]
    assert 0.1 + 0.2 != 0.3 and sheet["J2"].value == 0.3 and sheet["J3"].value == 0.3


def test_summary_header_frozen_filtered_and_printable(summary):
    for sheet in summary[0].worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet.print_title_rows == "$1:$1", sheet.title
        assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.paperSize == 9  # A4
        # One page wide (1 is the file format's default, so it may be left out), any number long.
        assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.page_setup.fitToWidth in (None, 1)
        assert sheet.page_setup.fitToHeight == 0
        assert sheet["A1"].font.bold and sheet["A1"].fill.fgColor.rgb not in (None, "00000000")
    assert summary[0]["汇总表"].auto_filter.ref == "A1:N13"  # the 合计 row stays out of sorting
    assert summary[0]["汇总表"].column_dimensions["C"].width > 20  # project names are wide CJK text


def test_summary_refunds_go_to_the_right_body(summary):
    table = rows(summary[0]["结余退回"])
    header, body = table[0], table[1:]
    col = {name: i for i, name in enumerate(header)}
    lines = {(r[0], r[col["经费来源"]]): r for r in body if r[0].startswith("2023-")}
    assert set(lines) == {("2023-GT-01", "部拨经费"), ("2023-GT-01", "市级配套"), ("2023-SB-01", "市级经费")}
    assert lines["2023-GT-01", "部拨经费"][col["退回对象"]] == "人力资源社会保障部"
    assert lines["2023-GT-01", "市级配套"][col["退回对象"]] == "市人力资源社会保障局"
    assert lines["2023-SB-01", "市级经费"][col["退回对象"]] == "市人力资源社会保障局"
    assert lines["2023-SB-01", "市级经费"][col["应退金额（元）"]] == 5000
    assert all(r[col["核对"]] == "一致" for r in lines.values())
    totals = {r[0]: Decimal(str(r[col["应退金额（元）"]])) for r in body if not r[0].startswith("2023-")}
    assert totals == {"应退回人力资源社会保障部合计": Decimal("3860.00"),
                      "应退回市人力资源社会保障局合计": Decimal("6275.50")}


def test_summary_refund_check_flags_a_wrong_declaration(tmp_path, year):
    money = year["reconciliation"].copy()
    wrong = (money.project_code == "2023-SB-01")
    money.loc[wrong, "refund_to_declared"] = "人力资源社会保障部"
    path = write_summary(tmp_path / "s.xlsx", year=2023, projects=year["run"].projects, issues=year["run"].issues,
                         reconciliation=money, national=pd.DataFrame())
    table = rows(openpyxl.load_workbook(path)["结余退回"])
    check = {(r[0], r[2]): r[-1] for r in table[1:] if r[0].startswith("2023-")}
    assert check == {("2023-GT-01", "部拨经费"): "一致", ("2023-GT-01", "市级配套"): "一致",
                     ("2023-SB-01", "市级经费"): "不一致"}


def test_summary_formula_typed_by_a_unit_stays_text(summary):
    book, path = summary
    cells = [c for row in book["问题清单"].iter_rows() for c in row if c.value == FORMULA]
    assert len(cells) == 1 and cells[0].data_type == "s"
    assert formulas_in(path) == []


def test_summary_national_filings(summary, tmp_path, year):
    assert rows(summary[0]["国家系统报送"])[1][0] == NO_NATIONAL_FILINGS
    national = pd.DataFrame([dict(project_code="2023-GT-01", version="1", status="accepted", receipt_no="R-0001",
                                  attempts="2", last_error="", server_time="2023-11-20T10:00:00+08:00")])
    path = write_summary(tmp_path / "s.xlsx", year=2023, projects=year["run"].projects, issues=year["run"].issues,
                         reconciliation=year["reconciliation"], national=national)
    assert rows(openpyxl.load_workbook(path)["国家系统报送"])[1] == (
        "2023-GT-01", 1, "已确认", "R-0001", 2, None, "2023-11-20T10:00:00+08:00")


# --- feedback/<code>.xlsx ----------------------------------------------------------------------------

def unit_book(year):
    return openpyxl.load_workbook(io.BytesIO(year["workbook"]))


def test_feedback_puts_cover_and_list_before_the_units_own_sheets(feedback, year):
    book, path = feedback
    assert book.sheetnames == ["说明", "问题清单", *unit_book(year).sheetnames]
    assert book.active.title == "说明"
    assert not list(path.parent.glob("*.partial.xlsx"))


def test_feedback_keeps_every_value_the_unit_typed(feedback, year):
    book, _ = feedback
    for original in unit_book(year).worksheets:
        copy = book[original.title]
        typed = {c.coordinate: c.value for row in original.iter_rows() for c in row if c.value is not None}
        assert {c.coordinate: c.value for row in copy.iter_rows() for c in row if c.value is not None} == typed


def test_feedback_copy_keeps_dates_as_dates_and_numbers_as_numbers(feedback, year):
    original, copy = unit_book(year)["经费支出"], feedback[0]["经费支出"]
    typed_date, copied_date = original.cell(2, DATE + 1), copy.cell(2, DATE + 1)
    assert copied_date.is_date and isinstance(copied_date.value, datetime) and copied_date.value == typed_date.value
    typed_amount, copied_amount = original.cell(2, AMOUNT + 1), copy.cell(2, AMOUNT + 1)
    assert copied_amount.data_type == "n" and copied_amount.value == typed_amount.value
    assert isinstance(copied_amount.value, (int, float))


def test_feedback_marks_the_offending_cells(feedback):
    book, _ = feedback
    expenses, activities, basic = book["经费支出"], book["服务活动"], book["基本信息"]
    marks = {  # cell -> (fill, rule) ; 经费支出 columns: E 金额（元）, C 支出科目
        (expenses, "E3"): (FATAL_FILL, "S002"),
        (expenses, "C4"): (FATAL_FILL, "S004"),
        (activities, "E2"): (WARNING_FILL, "S010"),
        (basic, f"B{USCC_ROW}"): (FATAL_FILL, "S009"),
    }
    for (sheet, coordinate), (fill, rule_id) in marks.items():
        cell = sheet[coordinate]
        assert cell.fill.fgColor.rgb == fill, coordinate
        assert cell.comment is not None and rule_id in cell.comment.text, coordinate
    commented = [(s.title, c.coordinate) for s in book.worksheets[2:]
                 for row in s.iter_rows() for c in row if c.comment]
    assert sorted(commented) == sorted((s.title, c) for s, c in marks)  # nothing else, e.g. not the late package
    assert expenses["E2"].fill.fgColor.rgb != FATAL_FILL


def test_feedback_lists_every_finding_in_use_first(feedback, year):
    table = rows(feedback[0]["问题清单"])
    header, body = table[0], table[1:]
    assert header == ("材料包", "规则", "级别", "工作表", "行", "列", "填写值", "怎么改", "豁免")
    issues = year["run"].issues[year["run"].issues.project_code == DEFECTIVE]
    assert len(body) == len(issues)
    packages = [r[0] for r in body]
    in_use = packages.count(year["package"])
    assert packages == [year["package"]] * in_use + [year["superseded"]] * (len(body) - in_use)
    rules = [r[1] for r in body[:in_use]]
    assert {"S002", "S004", "S009"} == set(rules[:3]) and {r[2] for r in body[:3]} == {"致命"}  # fatal first
    assert "T001" in rules and "P007" in [r[1] for r in body[in_use:]]  # listed, though no cell is marked
    s002 = next(r for r in body if r[1] == "S002" and r[0] == year["package"])
    assert s002[2:7] == ("致命", "经费支出", 3, "金额（元）", "一千元") and s002[7]


def test_feedback_cover_says_what_to_do(feedback, year):
    text = "\n".join(str(v) for row in rows(feedback[0]["说明"]) for v in row if v is not None)
    assert DEFECTIVE in text and year["package"] in text
    assert "退回" in text and "致命问题 3 个，警告 2 个" in text  # S002 S004 S009; S010 T001
    assert "请先处理" in text and "工作表“经费支出”第 3 行“金额（元）”" in text
    assert "重新报送整个材料包" in text and "2023-11-10" in text


def test_feedback_cover_tells_the_unit_its_own_money(year):
    """A unit never receives reconciliation.csv: the cover of a project with money left over gives its
    figures per funding source, whom to refund, and what its 结余说明 declared."""
    code = "2023-GT-01"
    cover = openpyxl.load_workbook(year["run"].dir / "feedback" / f"{code}.xlsx")["说明"]
    text = [str(c.value) for row in cover.iter_rows() for c in row if c.value]
    money = year["reconciliation"][year["reconciliation"].project_code == code]
    assert set(money.status) == {"refund_due"} and len(money) == 2
    for row in money.itertuples():
        assert (f"{row.funding_source}：拨付 {row.granted} 元，支出 {row.spent} 元，结余 {row.balance} 元，"
                f"应退回{row.refund_to}（结余说明填报 {row.refund_declared} 元）。") in text
    assert any(line.startswith("经费对账结果为最终结果") for line in text)
    assert not any("reconciliation.csv" in line for line in text)


def test_feedback_formula_typed_by_a_unit_stays_text(feedback):
    book, path = feedback
    copy = book["经费支出"]["C4"]
    assert copy.value == FORMULA and copy.data_type == "s"
    listed = [c for row in book["问题清单"].iter_rows() for c in row if c.value == FORMULA]
    assert listed and all(c.data_type == "s" for c in listed)
    assert formulas_in(path) == []


def test_feedback_one_comment_for_several_findings_on_a_cell(year, tmp_path):
    issues = year["run"].issues[year["run"].issues.project_code == DEFECTIVE]
    s002 = issues[issues.rule_id == "S002"].iloc[0]
    second = s002.copy()
    second[["rule_id", "severity", "message"]] = ["R008", "warning", "专家咨询费超过标准上限，请核对。"]
    path = feedback_for(year, tmp_path / "f.xlsx", findings=pd.concat([issues, second.to_frame().T]))
    cell = openpyxl.load_workbook(path)["经费支出"]["E3"]
    assert "S002" in cell.comment.text and "R008" in cell.comment.text
    assert cell.fill.fgColor.rgb == FATAL_FILL  # the fatal one decides the colour


@pytest.mark.parametrize("workbook", [None, b"PK\x03\x04 not really a workbook"])
def test_feedback_without_a_usable_workbook_is_the_two_sheets(year, tmp_path, workbook):
    path = feedback_for(year, tmp_path / "f.xlsx", workbook=workbook)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["说明", "问题清单"]
    assert len(rows(book["问题清单"])) - 1 == (year["run"].issues.project_code == DEFECTIVE).sum()
    assert "标色" not in "".join(str(c.value) for row in book["说明"].iter_rows() for c in row)


def test_feedback_whose_findings_point_at_no_cell_has_no_copy(year, tmp_path):
    # The money, a missing attachment, a superseded version: nothing to mark, so no copy of the unit's
    # own workbook comes back, and the cover does not speak of one.
    issues = year["run"].issues[year["run"].issues.project_code == DEFECTIVE]
    no_cell = issues[issues["row"].astype(str).str.strip().isin(["", "nan", "None"])]
    assert len(no_cell) and len(no_cell) < len(issues)
    book = openpyxl.load_workbook(feedback_for(year, tmp_path / "f.xlsx", findings=no_cell))
    assert book.sheetnames == ["说明", "问题清单"]
    assert len(rows(book["问题清单"])) - 1 == len(no_cell)
    assert "副本" not in "".join(str(c.value) for row in book["说明"].iter_rows() for c in row)


def unit_workbook(sheets: dict[str, list[list]]) -> bytes:
    """A unit's .xlsx as Excel writes it: values of every type, dates with a date format."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    formats = {datetime: "yyyy-mm-dd hh:mm", date: "yyyy-mm-dd", time: "hh:mm"}
    for name, grid in sheets.items():
        sheet = book.add_worksheet(name)
        for r, values in enumerate(grid):
            for c, value in enumerate(values):
                if type(value) in formats:
                    sheet.write_datetime(r, c, value, book.add_format({"num_format": formats[type(value)]}))
                elif isinstance(value, str):
                    sheet.write_string(r, c, value)
                elif value is not None:
                    sheet.write(r, c, value)
    book.close()
    return buffer.getvalue()


def test_feedback_copy_keeps_each_type_marks_empty_cells_and_leaves_our_sheet_names_to_us(year, tmp_path):
    workbook = unit_workbook({
        "说明": [["本工作簿由财务处填写"]],  # the unit's own sheet: it must not take the cover's name
        "经费支出": [["序号", "支出日期", "金额（元）", "收款方", "已付"],
                 [1, datetime(2023, 6, 1, 9, 30), 1234.5, FORMULA, True],
                 [2, date(2023, 6, 2), 100.0, None, False],
                 [3, time(14, 5), 0.1, "上海某公司", None]],
    })
    sheets = {"经费支出": dict(typed_name="经费支出", header_row=1,
                           headers={"payee": ["收款方", 3], "amount": ["金额（元）", 2]})}
    findings = pd.DataFrame([dict(package="p.zip", rule_id=rule, severity="fatal", sheet="经费支出", row=row,
                                  column=column, value="", message="请改正。")
                             for rule, row, column in [("S001", 3, "收款方"), ("S006", 4, "金额（元）")]])
    arguments = dict(year=2023, project=dict(code=DEFECTIVE), status="rejected", package="p.zip",
                     findings=findings, workbook=workbook, sheets=sheets)
    path = write_feedback(tmp_path / "f.xlsx", **arguments)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["说明", "问题清单", "说明 (2)", "经费支出"]
    assert book["说明 (2)"]["A1"].value == "本工作簿由财务处填写"
    copy = book["经费支出"]
    assert [c.value for c in copy[2]] == [1, datetime(2023, 6, 1, 9, 30), 1234.5, FORMULA, True]
    assert [c.value for c in copy[3]] == [2, datetime(2023, 6, 2), 100, None, False]
    assert copy["B4"].value == time(14, 5) and copy["C4"].value == 0.1
    assert [copy[c].data_type for c in ("A2", "C3", "D2", "E2")] == ["n", "n", "s", "b"]
    assert copy["B2"].is_date and copy["B3"].is_date
    # A value the unit left out is marked where it should have been typed.
    assert copy["D3"].value is None and copy["D3"].fill.fgColor.rgb == FATAL_FILL and "S001" in copy["D3"].comment.text
    assert copy["C4"].fill.fgColor.rgb == FATAL_FILL and "S006" in copy["C4"].comment.text
    assert formulas_in(path) == []
    # The same inputs give the same bytes, so a re-run leaves an unchanged file as it was.
    assert write_feedback(tmp_path / "again.xlsx", **arguments).read_bytes() == path.read_bytes()


def test_feedback_copy_keeps_texts_xml_would_misread(year, tmp_path):
    """The copy's plain cells are written as XML text (assets/plain_cells.py): what XML or Excel would
    otherwise read differently comes back as the unit typed it, and a text past Excel's limit is cut there
    as xlsxwriter cuts it; a marked cell amid them keeps its fill and its row the other cells."""
    texts = ["  两端有空格  ", "A & B <公司>", "_x000D_ 原样", "第一行\r\n第二行", "😀" * 20_000, "x" * 40_000]
    grid = [["序号", "金额（元）", *[f"列{i}" for i in range(len(texts))], "日期"],
            [1, "一千元", *texts, date(2023, 6, 1)], [2, 1234.56, *texts, date(1900, 1, 15)]]
    sheets = {"经费支出": dict(typed_name="经费支出", header_row=1, headers={"amount": ["金额（元）", 1]})}
    findings = pd.DataFrame([dict(package="p.zip", rule_id="S002", severity="fatal", sheet="经费支出", row=2,
                                  column="金额（元）", value="一千元", message="请填写数字金额。")])
    path = write_feedback(tmp_path / "f.xlsx", year=2023, project=dict(code=DEFECTIVE), status="rejected",
                          package="p.zip", findings=findings, workbook=None, sheets=sheets,
                          unit_grids=dump_grids(SheetsRead(grids={"经费支出": grid})))
    copy = openpyxl.load_workbook(path)["经费支出"]
    cut = ["😀" * 16_383, "x" * 32_767]  # 32,767 UTF-16 units: a pair for each emoji, and no half pair
    # Read back as the pipeline reads (python-calamine undoes Excel's _xHHHH_ escapes, openpyxl does not).
    values = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("经费支出").to_python()
    assert values[1] == [1, "一千元", *texts[:4], *cut, date(2023, 6, 1)]
    assert values[2] == [2, 1234.56, *texts[:4], *cut, date(1900, 1, 15)]
    assert copy["B2"].fill.fgColor.rgb == FATAL_FILL and "S002" in copy["B2"].comment.text
    assert copy["C2"].fill.fgColor.rgb != FATAL_FILL and copy.max_column == 3 + len(texts)
    assert formulas_in(path) == []
    # A tool may write a NaN or an infinity, which no cell holds: the unit sees it as text. A character XML
    # cannot hold (U+FFFF) is xlsxwriter's to escape: raw, it would make the file unreadable.
    grid[2][1] = float("nan")
    grid[1][0] = float("-inf")
    grid[1][2] = "非字符\uffff"
    odd = write_feedback(tmp_path / "g.xlsx", year=2023, project=dict(code=DEFECTIVE), status="rejected",
                         package="p.zip", findings=findings, workbook=None, sheets=sheets,
                         unit_grids=dump_grids(SheetsRead(grids={"经费支出": grid})))
    copy = openpyxl.load_workbook(odd)["经费支出"]
    assert (copy["A2"].value, copy["B2"].value, copy["B3"].value) == ("-inf", "一千元", "nan")
    assert copy["C2"].value.startswith("非字符")
    assert copy["B2"].fill.fgColor.rgb == FATAL_FILL
    # What openpyxl reads either way, Excel would not: spaces at the ends kept only when the XML says so,
    # and _x000D_ read as a carriage return unless escaped (which xlsxwriter's shared strings do).
    with zipfile.ZipFile(path) as book:
        xml = book.read("xl/worksheets/sheet3.xml").decode()
    assert xml.count('<t xml:space="preserve">  两端有空格  </t>') == 2
    assert "_x000D_" not in xml and "\r" not in xml


def test_a_text_shaped_like_xlsxwriters_rich_text_is_written_as_typed(year, tmp_path):
    """xlsxwriter writes a text <r>…</r> into the file unescaped, as its own rich-text XML: a unit typing
    "<r>a<b</r>" made the feedback and the summary unreadable. Every writer shows it as typed."""
    typed = "<r>a<b</r>"
    issues = year["run"].issues.copy()
    issues.loc[issues.index[0], ["project_code", "value"]] = [typed, typed]  # the first text cell: xlsxwriter's
    summary_path = write_summary(tmp_path / "s.xlsx", year=2023, projects=year["run"].projects, issues=issues,
                                 reconciliation=year["reconciliation"], national=pd.DataFrame())
    listed = [c.value for row in openpyxl.load_workbook(summary_path)["问题清单"].iter_rows() for c in row]
    assert listed.count(typed) == 2
    findings = pd.DataFrame([dict(package="p.zip", rule_id="S002", severity="fatal", sheet="经费支出", row=2,
                                  column="金额（元）", value=typed, message="请填写数字金额。")])
    sheets = {"经费支出": dict(typed_name="经费支出", header_row=1, headers={"amount": ["金额（元）", 1]})}
    path = write_feedback(tmp_path / "f.xlsx", year=2023, project=dict(code=DEFECTIVE), status="rejected",
                          package="p.zip", findings=findings, workbook=None, sheets=sheets,
                          unit_grids=dump_grids(SheetsRead(grids={"经费支出": [["序号", "金额（元）"], [1, typed]]})))
    book = openpyxl.load_workbook(path)
    assert book["经费支出"]["B2"].value == typed and book["经费支出"]["B2"].fill.fgColor.rgb == FATAL_FILL
    assert typed in [c.value for row in book["问题清单"].iter_rows() for c in row]


def test_feedback_copy_names_a_sheet_xml_cannot_name_as_typed(tmp_path):
    """A tool can write sheet names with a tab, a line break, a control character or U+FFFF. XML cannot
    hold some of them, and an attribute turns tabs and line breaks into spaces: the copy drops them, and
    the feedback opens."""
    grid = [["序号", "金额（元）"], [1, "一千元"]]
    typed = {"经费\t支出": "经费支出", "说明\r\n": "说明 (2)", "非字符\uffff": "非字符", "x\x01y": "xy"}
    findings = pd.DataFrame([dict(package="p.zip", rule_id="S002", severity="fatal", sheet="经费\t支出", row=2,
                                  column="金额（元）", value="一千元", message="请填写数字金额。")])
    sheets = {"经费支出": dict(typed_name="经费\t支出", header_row=1, headers={"amount": ["金额（元）", 1]})}
    path = write_feedback(tmp_path / "f.xlsx", year=2023, project=dict(code=DEFECTIVE), status="rejected",
                          package="p.zip", findings=findings, workbook=None, sheets=sheets,
                          unit_grids=dump_grids(SheetsRead(grids={name: grid for name in typed})))
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["说明", "问题清单", *typed.values()]
    assert book["经费支出"]["B2"].value == "一千元" and book["经费支出"]["B2"].fill.fgColor.rgb == FATAL_FILL


def test_a_column_of_plain_cells_is_the_cells_written_one_by_one(tmp_path):
    """PlainCells.write_column (a table a column at a time) gives the cells write() gives one by one:
    values, types, formats, and the values it hands to xlsxwriter (a control character, a date, NaN)."""
    from assets.plain_cells import PlainCells
    from assets.summary_workbook import xlsx_with_plain_cells

    values = ["文本", "a & b < c", " 前后有空格 ", "", None, 0, 12, 3.5, 200000.0, -0.25, True, False,
              "bell\x07", "_x0041_", float("nan"), float("inf"), date(2023, 6, 1), "x" * 20_000, "最后"]
    books = {}
    for how in ("cell", "column"):
        path = tmp_path / f"{how}.xlsx"
        with xlsx_with_plain_cells(path) as (book, plain):
            framed, bare = book.add_format({"border": 1, "num_format": "0.00"}), None
            sheet = book.add_worksheet("表")
            cells = plain["表"] = PlainCells()
            for column, fmt in enumerate((framed, bare)):
                if how == "cell":
                    for row, value in enumerate(values, start=1):
                        cells.write(sheet, row, column, value, fmt)
                else:
                    cells.write_column(sheet, column, 1, values, fmt)
        books[how] = openpyxl.load_workbook(path)["表"]

    def shown(sheet):
        return {c.coordinate: (c.value, type(c.value), c.number_format, c.border.left.style)
                for row in sheet.iter_rows() for c in row if c.value is not None or c.has_style}

    by_cell, by_column = shown(books["cell"]), shown(books["column"])
    assert by_column == by_cell
    assert by_column["A2"] == ("文本", str, "0.00", "thin") and by_column["B3"][0] == "a & b < c"
    assert by_column["A5"][3] == "thin" and "B5" not in by_column  # a blank is a cell only with a format
    assert by_column["A10"][:2] == (200000, int) and by_column["B16"][0] == "nan"
