"""The list a unit gets back, `feedback/<project_code>.xlsx` (openpyxl).

Two sheets come first: 说明 (the verdict in words, what to fix first, what to do next) and 问题清单
(every finding, the package in use first). When the unit's own workbook is at hand they are put in
front of a copy of it, with each offending cell filled (red fatal, yellow warning) and commented with
the rule and the message, so the unit sees each problem where it typed it. The unit's values are
never changed: only fills and comments are added.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell, MergedCell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from adapters.registry import LEVEL_ZH, TYPE_ZH
from assets.summary_workbook import FORMULA_PREFIXES, atomic_path, integer, text
from schemas.catalog import PROJECT_STATUS_ZH, RULES, SEVERITY_ZH

COVER, LIST = "说明", "问题清单"
FATAL_FILL = PatternFill(fill_type="solid", fgColor="FFFF9999")
WARNING_FILL = PatternFill(fill_type="solid", fgColor="FFFFEB84")
_HEADER_FILL = PatternFill(fill_type="solid", fgColor="FFDDEBF7")
_THIN = Side(style="thin", color="FF999999")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_WRAP = Alignment(wrap_text=True, vertical="top")
_AUTHOR = "市人社局专技处"
# The cover names only the first few findings; the rest are in 问题清单.
_COVER_LINES = 10
_LIST_COLUMNS = [("材料包", 30), ("规则", 8), ("级别", 8), ("工作表", 14), ("行", 6), ("列", 18), ("填写值", 24),
                 ("怎么改", 60)]
_STATUS_SENTENCE = {
    "accepted": "通过：本材料包没有致命问题。",
    "rejected": "退回：本材料包存在致命问题，未通过审核，请改正后重新报送。",
    "missing": "未报送：尚未收到本项目的材料包。",
    "synced": "已报送国家系统：本材料包已通过审核，并已报送全国专家服务基层工作信息管理系统。",
}


@dataclass(frozen=True)
class _Finding:
    package: str
    rule_id: str
    severity: str
    sheet: str
    row: int | None
    column: str
    value: str
    message: str
    in_use: bool  # found in the package in use (not in a superseded one)

    @property
    def fatal(self) -> bool:
        return self.severity == "fatal"

    @property
    def place(self) -> str:
        """Where the unit typed it: 工作表“经费支出”第 3 行“金额（元）”."""
        return "".join([f"工作表“{self.sheet}”" if self.sheet else "", f"第 {self.row} 行" if self.row else "",
                        f"“{self.column}”" if self.column else ""])

    @property
    def line(self) -> str:
        return f"{self.place}：{self.message}" if self.place else self.message


def write_feedback(path: Path, *, year: int, project: dict, status: str, package: str, findings: pd.DataFrame,
                   workbook: bytes | None, sheets: dict[str, dict], deadline: str = "") -> Path:
    """Write the unit's feedback workbook atomically and return its path.

    findings: the project's rows of issues.csv, every package of it; workbook: the .xlsx bytes of the
    package in use, or None; sheets: template sheet -> {typed_name, header_row, headers} of that package.
    """
    rows = _ordered(findings, package)
    book = _load(workbook)
    marked = None  # cells marked in the unit's copy; None when there is no copy
    if book is None:
        book = Workbook()
        book.remove(book.active)
    else:
        marked = _mark_cells(book, [f for f in rows if f.in_use], sheets)
    cover, listing = book.create_sheet(COVER, 0), book.create_sheet(LIST, 1)
    _fill_cover(cover, year=year, project=project, status=status, package=package, rows=rows, marked=marked,
                deadline=deadline)
    _fill_list(listing, rows)
    # The unit's file may have a sheet of its own selected: two selected tabs would open as a group.
    for sheet in book.worksheets:
        sheet.sheet_view.tabSelected = False
    cover.sheet_view.tabSelected = True
    book.active = 0
    with atomic_path(path) as partial:
        book.save(partial)
    return path


def _ordered(findings: pd.DataFrame, package: str) -> list[_Finding]:
    """The package in use first, then superseded packages'; fatal before warning in each; else as given."""
    rows = [
        _Finding(package=text(f["package"]), rule_id=text(f["rule_id"]), severity=text(f["severity"]),
                 sheet=text(f["sheet"]), row=integer(f["row"]), column=text(f["column"]), value=text(f["value"]),
                 message=text(f["message"]), in_use=text(f["package"]) == package)
        for f in findings.to_dict("records")
    ]
    return sorted(rows, key=lambda f: (not f.in_use, not f.fatal))


def _load(workbook: bytes | None) -> Workbook | None:
    if workbook is None:
        return None
    try:
        return load_workbook(io.BytesIO(workbook))
    except Exception:  # openpyxl raises many kinds of error on files it cannot read; the list still goes out
        return None


def _safe(value: str) -> str:
    # openpyxl refuses control characters a unit may have pasted; they are invisible anyway.
    return ILLEGAL_CHARACTERS_RE.sub("", value)


def _put(sheet: Worksheet, row: int, column: int, value: str | int | None) -> Cell:
    cell = sheet.cell(row=row, column=column)
    cell.value = _safe(value) if isinstance(value, str) else value
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        cell.data_type = "s"  # openpyxl made it a formula on assignment: what the unit typed stays text
    return cell


# --- the unit's copy, marked ------------------------------------------------------------------------

def _mark_cells(book: Workbook, in_use: list[_Finding], sheets: dict[str, dict]) -> int:
    """Fill and comment every cell a finding of the package in use points at; return how many."""
    by_cell: dict[Cell, list[_Finding]] = defaultdict(list)
    for finding in in_use:
        cell = _locate(book, finding, sheets)
        if cell is not None:
            by_cell[cell].append(finding)
    for cell, found in by_cell.items():
        cell.fill = FATAL_FILL if any(f.fatal for f in found) else WARNING_FILL
        lines = [f"{f.rule_id} {_title(f.rule_id)}（{SEVERITY_ZH.get(f.severity, f.severity)}）：{f.message}"
                 for f in found]
        if cell.comment is not None:
            lines.insert(0, cell.comment.text)  # the unit's own note stays, ours follow it
        note = _safe("\n".join(lines))
        cell.comment = Comment(note, _AUTHOR, width=360, height=max(80, 18 * (len(note) // 24 + len(lines))))
    return len(by_cell)


def _locate(book: Workbook, finding: _Finding, sheets: dict[str, dict]) -> Cell | None:
    """The cell a finding points at, from its sheet (as typed), Excel row and header (as typed)."""
    layout = next((s for s in sheets.values() if s["typed_name"] == finding.sheet), None)
    # A finding without a row (a missing column, the package as a whole) or in 经费支出.csv has no cell here.
    if finding.row is None or layout is None or finding.sheet not in book.sheetnames:
        return None
    sheet = book[finding.sheet]
    if not isinstance(sheet, Worksheet):
        return None
    if layout["header_row"] is None:
        column = 1  # key–value sheet (基本信息): the value sits in column B of the field's row
    else:
        column = next((col for typed, col in layout["headers"].values() if typed == finding.column), None)
        if column is None:
            return None
    cell = sheet.cell(row=finding.row, column=column + 1)
    if isinstance(cell, MergedCell):  # only a merged range's top-left cell holds a value and a comment
        merged = next(r for r in sheet.merged_cells.ranges if cell.coordinate in r)
        cell = sheet.cell(row=merged.min_row, column=merged.min_col)
    return cell


def _title(rule_id: str) -> str:
    rule = RULES.get(rule_id)
    return rule.title if rule else ""


# --- 说明 ----------------------------------------------------------------------------------------------

def _fill_cover(sheet: Worksheet, *, year: int, project: dict, status: str, package: str, rows: list[_Finding],
                marked: int | None, deadline: str) -> None:
    in_use = [f for f in rows if f.in_use]
    fatal, warnings = [f for f in in_use if f.fatal], [f for f in in_use if not f.fatal]
    earlier = len(rows) - len(in_use)
    counts = f"致命问题 {len(fatal)} 个，警告 {len(warnings)} 个"
    if earlier:
        counts += f"（此前报送的版本另有 {earlier} 条问题记录，列在问题清单后部，仅供参考，以当前材料包为准）"
    level, kind = text(project.get("level")), text(project.get("type"))
    facts = [
        ("项目编号", text(project.get("code"))),
        ("项目名称", text(project.get("project_name"))),
        ("依托单位", text(project.get("host_unit"))),
        ("项目类别", f"{LEVEL_ZH.get(level, level)}{TYPE_ZH.get(kind, kind)}"),
        ("材料包", package or "未收到材料包"),
        ("审核结果", _STATUS_SENTENCE.get(status, PROJECT_STATUS_ZH.get(status, status))),
        ("问题数量", counts),
    ]
    title = _put(sheet, 1, 1, f"{year}年度专家服务基层项目材料审核反馈")
    title.font = Font(bold=True, size=14)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=2)
    row = 3
    for label, value in facts:
        _put(sheet, row, 1, label).font = Font(bold=True)
        _put(sheet, row, 2, value)
        row += 1

    if fatal:
        heading, first = "请先处理（致命问题，必须全部改正）", fatal
    elif warnings:
        heading, first = "请核对（警告，不影响审核结果）", warnings
    else:
        heading, first = "当前材料包未发现问题", []
    row = _section(sheet, row + 1, heading, [f.line for f in first[:_COVER_LINES]])
    if len(first) > _COVER_LINES:
        _put(sheet, row, 2, f"……另有 {len(first) - _COVER_LINES} 条，见“{LIST}”工作表。")
        row += 1
    _section(sheet, row + 1, "下一步", _next_steps(status, bool(warnings), marked, deadline))

    sheet.column_dimensions["A"].width = 12
    sheet.column_dimensions["B"].width = 90
    for line in sheet.iter_rows(min_row=2):
        for cell in line:
            cell.alignment = _WRAP
    _print_setup(sheet, landscape=False)


def _section(sheet: Worksheet, row: int, heading: str, lines: list[str]) -> int:
    """A bold heading, then numbered lines; returns the next free row."""
    _put(sheet, row, 1, heading).font = Font(bold=True, size=12)
    sheet.merge_cells(start_row=row, start_column=1, end_row=row, end_column=2)
    for number, line in enumerate(lines, start=1):
        _put(sheet, row + number, 1, f"{number}.")
        _put(sheet, row + number, 2, line)
    return row + len(lines) + 1


def _next_steps(status: str, has_warnings: bool, marked: int | None, deadline: str) -> list[str]:
    by_deadline = f"报送截止日期为 {deadline}，截止日期后收到的材料包将标记为逾期。" if deadline else ""
    if status == "rejected":
        steps = ["请按“问题清单”逐条改正：致命问题必须全部改正，警告请一并核对。",
                 "改正后请重新报送整个材料包（填报工作簿、工作成效总结、第三方审计报告、现场照片等全部材料），"
                 "不要只报送改动的文件；新材料包将替代此前的版本。",
                 by_deadline]
    elif status == "missing":
        steps = ["请按局发模板填写工作簿，连同工作成效总结、第三方审计报告、现场照片及说明一起打包报送。",
                 by_deadline]
    else:
        steps = ["材料包已通过审核，无需重新报送。"]
        if has_warnings:
            steps.append("警告不影响审核结果，请逐条核对；如需更正，请重新报送整个材料包，以最新报送的版本为准。")
    if marked is not None:
        copy = f"本文件“{LIST}”之后的工作表是贵单位报送的工作簿副本"
        steps.append(f"{copy}，有问题的 {marked} 个单元格已标色（红色为致命问题，黄色为警告），单元格批注写明了"
                     "规则编号和修改要求。" if marked else f"{copy}。")
    if marked:
        steps.append(f"请在贵单位的原工作簿中改正；如直接在本文件上修改，报送前请删除“{COVER}”“{LIST}”两张工作表。")
    steps.append("如有疑问，请联系市人力资源社会保障局专业技术人员管理处。")
    return [step for step in steps if step]


# --- 问题清单 ----------------------------------------------------------------------------------------

def _fill_list(sheet: Worksheet, rows: list[_Finding]) -> None:
    for col, (header, width) in enumerate(_LIST_COLUMNS, start=1):
        cell = _put(sheet, 1, col, header)
        cell.font, cell.fill, cell.border = Font(bold=True), _HEADER_FILL, _BORDER
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        sheet.column_dimensions[get_column_letter(col)].width = width
    for r, f in enumerate(rows, start=2):
        values = [f.package, f.rule_id, SEVERITY_ZH.get(f.severity, f.severity), f.sheet, f.row, f.column, f.value,
                  f.message]
        for col, value in enumerate(values, start=1):
            cell = _put(sheet, r, col, value)
            cell.border, cell.alignment = _BORDER, _WRAP
        sheet.cell(row=r, column=3).fill = FATAL_FILL if f.fatal else WARNING_FILL
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(_LIST_COLUMNS))}{len(rows) + 1}"
    else:
        _put(sheet, 2, 1, "未发现问题。")
    sheet.freeze_panes = "A2"
    sheet.print_title_rows = "1:1"
    _print_setup(sheet, landscape=True)


def _print_setup(sheet: Worksheet, *, landscape: bool) -> None:
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.orientation = "landscape" if landscape else "portrait"
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
