"""The list a unit gets back, `feedback/<project_code>.xlsx` (xlsxwriter).

Two sheets come first: 说明 (the verdict in words, what to fix first, what to do next) and 问题清单
(every finding, the package in use first). When a finding of the package in use points at a cell and
the unit's own workbook can be read, they are followed by a copy of it, with each offending cell filled
(red fatal, yellow warning) and commented with the rule and the message, so the unit sees each problem
where it typed it. Findings that point at no cell (the money, a missing sheet or attachment) bring no
copy: it would be the unit's own workbook back, with nothing to see in it.

The copy is rebuilt from the values python-calamine reads; the unit's file is not re-saved (loading and
saving it with openpyxl cost 60–70 ms a project, and a year holds ~1,800 of them). It keeps the values
and their positions: every sheet under its name and in its order, every value at its row and column
with its type (text stays text, so a typed "=…" never becomes a formula; numbers stay numbers; dates
stay dates, shown with a date format). It does not keep the unit's formatting: fonts, fills, borders,
number formats, column widths, hidden sheets, merged ranges (the value stays in the range's first
cell), formulas (their last computed value is kept; an error such as #DIV/0! comes out empty) and
the unit's own comments are all lost.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from adapters.registry import LEVEL_ZH, SAMPLE_NOTE, TYPE_ZH
from adapters.workbook import Grid, UnreadableWorkbook, Workbook
from assets.changes import PackageChanges
from assets.plain_cells import PlainCells, write_text
from assets.sheets import load_grids
from assets.summary_workbook import display_width, integer, text, waiver_note, xlsx_with_plain_cells
from schemas.catalog import PROJECT_STATUS_ZH, RULES, SEVERITY_ZH

COVER, LIST, CHANGES = "说明", "问题清单", "版本变更"
# ARGB, as a reader (openpyxl, Excel's XML) gives a cell's fill back.
FATAL_FILL = "FFFF9999"
WARNING_FILL = "FFFFEB84"
_HEADER_FILL = "#DDEBF7"
_BORDER_COLOUR = "#999999"
_AUTHOR = "市人社局专技处"
# Fixed, so the same project, status and findings give the same bytes (a re-run changes no file).
_CREATED = dt.datetime(2023, 1, 1)
# The cover names only the first few findings; the rest are in 问题清单.
_COVER_LINES = 10
_LIST_COLUMNS = [("材料包", 30), ("规则", 8), ("级别", 8), ("工作表", 14), ("行", 6), ("列", 18), ("填写值", 24),
                 ("怎么改", 60), ("豁免", 30)]
# Columns of the unit's copy: as wide as their widest value, within these bounds.
_COPY_WIDTHS = (8, 60)
# Control characters a unit may have pasted: Excel refuses them in a cell, and they are invisible anyway.
_REFUSED_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Characters Excel refuses in a sheet name (a program other than Excel may have written them).
# Or that no XML can hold: control characters (tabs and line breaks too, which an XML attribute turns
# into spaces, so the name would not read back as written) and U+FFFE/U+FFFF.
_REFUSED_IN_SHEET_NAME = re.compile(r"[\[\]:*?/\\\x00-\x1f\ufffe\uffff]")
_SHEET_NAME_LENGTH = 31
# Excel shows a date-time value as one only with a date format.
_DATE_FORMATS = {dt.datetime: "yyyy-mm-dd hh:mm:ss", dt.date: "yyyy-mm-dd", dt.time: "hh:mm:ss",
                 dt.timedelta: "[h]:mm:ss"}
_FINDING_COLUMNS = ("package", "rule_id", "severity", "sheet", "row", "column", "value", "message", "waived",
                    "waived_by", "waiver_reason")
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
    waiver: str = ""  # 已豁免：<reason>（<who>） when an operator waived it

    @property
    def fatal(self) -> bool:
        """Fatal and not waived: a waived fatal finding no longer rejects the package."""
        return self.severity == "fatal" and not self.waiver

    @property
    def place(self) -> str:
        """Where the unit typed it: 工作表“经费支出”第 3 行“金额（元）”."""
        return "".join([f"工作表“{self.sheet}”" if self.sheet else "", f"第 {self.row} 行" if self.row else "",
                        f"“{self.column}”" if self.column else ""])

    @property
    def line(self) -> str:
        return f"{self.place}：{self.message}" if self.place else self.message


# A marked cell: (row, column), both from 0, as xlsxwriter counts them.
Place = tuple[int, int]
# Sheet as the unit typed it -> marked cell -> the findings of the package in use pointing at it.
Marks = dict[str, dict[Place, list[_Finding]]]


def write_feedback(path: Path, *, year: int, project: dict, status: str, package: str,
                   findings: pd.DataFrame | FindingColumns,
                   workbook: bytes | None, sheets: dict[str, dict], deadline: str = "", unit_grids: bytes | None = None,
                   changes: PackageChanges | None = None, versions: str = "", money: ProjectMoney | None = None,
                   sample: bool = False) -> Path:
    """Write the unit's feedback workbook atomically and return its path.

    findings: the project's rows of issues.csv, every package of it (or their finding_columns); unit_grids:
    the sheets of the package in use as intake read them (assets.sheets.dump_grids), else workbook: its
    .xlsx bytes, or None; sheets: template sheet -> {typed_name, header_row, headers} of that package;
    changes: what changed since the unit's previous version (a 版本变更 sheet); versions: the rule-set and
    registry versions, on the cover.
    """
    rows = _ordered(finding_columns(findings) if isinstance(findings, pd.DataFrame) else findings, package)
    # Without a finding at a cell the unit's sheets are not even loaded. xlsxwriter formats a cell when it
    # is written, and the cover counts the marked cells: mark first.
    pointing = _at_cells(rows)
    grids = (load_grids(unit_grids) if unit_grids is not None else _unit_sheets(workbook)) if pointing else None
    marks = _marks(grids, pointing, sheets) if grids is not None else {}
    # A fixed creation time: the same project, status and findings give the same bytes.
    with xlsx_with_plain_cells(path, {"author": _AUTHOR, "created": _CREATED}) as (book, plain):
        formats = _Formats(book)
        # The first sheet added is the one that opens, and the only one selected.
        cover = book.add_worksheet(COVER)
        _fill_cover(cover, formats, year=year, project=project, status=status,
                    package=package, rows=rows, deadline=deadline, money=money, sample=sample,
                    marked=sum(len(cells) for cells in marks.values()))
        _versions_line(cover, formats, versions)
        _fill_list(book.add_worksheet(LIST), formats, rows)
        if changes is not None:
            _fill_changes(book.add_worksheet(CHANGES), formats, changes)
        if marks:
            plain.update(_copy_unit_sheets(book, formats, grids, marks))
    return path


# A project's findings as write_feedback reads them: issues.csv's columns (_FINDING_COLUMNS) as lists.
FindingColumns = dict[str, list]


def finding_columns(findings: pd.DataFrame) -> FindingColumns:
    """issues.csv's rows (a project's, or the year's to cut per project) as the columns write_feedback
    reads, each a list: cheaper than the frame to cut, to send to a worker and to go through. A table
    without the waiver columns, as older exports have, reads as nothing waived."""
    return {c: findings[c].tolist() if c in findings else [""] * len(findings) for c in _FINDING_COLUMNS}


def _ordered(findings: FindingColumns, package: str) -> list[_Finding]:
    """The package in use first, then superseded packages'; fatal before warning in each; else as given."""
    records = (dict(zip(_FINDING_COLUMNS, values)) for values in zip(*(findings[c] for c in _FINDING_COLUMNS)))
    rows = [
        _Finding(package=text(f["package"]), rule_id=text(f["rule_id"]), severity=text(f["severity"]),
                 sheet=text(f["sheet"]), row=integer(f["row"]), column=text(f["column"]), value=text(f["value"]),
                 message=text(f["message"]), in_use=text(f["package"]) == package, waiver=waiver_note(f))
        for f in records
    ]
    return sorted(rows, key=lambda f: (not f.in_use, not f.fatal))


def _at_cells(rows: list[_Finding]) -> list[_Finding]:
    """The findings that may mark a cell of the copy: the package in use's, with a row."""
    return [f for f in rows if f.in_use and f.row]


def needs_copy(findings: FindingColumns, package: str) -> bool:
    """Whether the project's feedback may copy the unit's workbook (a finding points at a cell): the
    caller loads the unit's sheets for write_feedback only then."""
    return bool(_at_cells(_ordered(findings, package)))


def _unit_sheets(workbook: bytes | None) -> dict[str, Grid] | None:
    """The unit's sheets in their order, by name as typed, each as its grid of values; None when there
    is no workbook or it cannot be read (the cover and the list still go out)."""
    if workbook is None:
        return None
    try:
        return Workbook(workbook).all_grids()
    except UnreadableWorkbook:
        return None


def _safe(value: str) -> str:
    # isprintable first: nearly every cell passes it, and it is much cheaper than the substitution.
    return value if value.isprintable() else _REFUSED_CHARACTERS.sub("", value)


class _Formats:
    """Every format of the file, each made once: xlsxwriter writes one style record per add_format."""

    def __init__(self, book: xlsxwriter.Workbook) -> None:
        self._book = book
        wrap = {"text_wrap": True, "valign": "top"}
        self.title = book.add_format({"bold": True, "font_size": 14})
        self.heading = book.add_format({**wrap, "bold": True, "font_size": 12})
        self.label = book.add_format({**wrap, "bold": True})
        self.wrap = book.add_format(wrap)
        boxed = {**wrap, "border": 1, "border_color": _BORDER_COLOUR}
        self.header = book.add_format({**boxed, "bold": True, "bg_color": _HEADER_FILL, "align": "center",
                                       "valign": "vcenter"})
        self.boxed = book.add_format(boxed)
        self.severity = {fatal: book.add_format({**boxed, "bg_color": _rgb(_fill(fatal))}) for fatal in (True, False)}
        self._copy: dict[tuple[str | None, str | None], Format] = {}

    def copy(self, number_format: str | None, fill: str | None) -> Format:
        """A cell of the unit's copy: its date format and its mark's fill, either or both."""
        key = (number_format, fill)
        if key not in self._copy:
            properties = {"num_format": number_format, "bg_color": fill and _rgb(fill)}
            self._copy[key] = self._book.add_format({k: v for k, v in properties.items() if v})
        return self._copy[key]


def _fill(fatal: bool) -> str:
    return FATAL_FILL if fatal else WARNING_FILL


def _rgb(argb: str) -> str:
    return f"#{argb[2:]}"


def _put(sheet: Worksheet, row: int, column: int, value: str | int | None, fmt: Format | None = None) -> None:
    """One cell of the cover or the list (row and column from 0); text is always text."""
    if value is None or value == "":
        sheet.write_blank(row, column, None, fmt)
    elif isinstance(value, int):
        sheet.write_number(row, column, value, fmt)
    else:
        write_text(sheet, row, column, _safe(value), fmt)


# --- the unit's copy, marked ------------------------------------------------------------------------

def _marks(grids: dict[str, Grid], in_use: list[_Finding], sheets: dict[str, dict]) -> Marks:
    """Every cell a finding of the package in use points at, with the findings pointing at it."""
    marks: Marks = {}
    for finding in in_use:
        place = _locate(finding, grids, sheets)
        if place is not None:
            marks.setdefault(finding.sheet, {}).setdefault(place, []).append(finding)
    return marks


def _locate(finding: _Finding, grids: dict[str, Grid], sheets: dict[str, dict]) -> Place | None:
    """The cell a finding points at, from its sheet (as typed), Excel row and header (as typed)."""
    layout = next((s for s in sheets.values() if s["typed_name"] == finding.sheet), None)
    # A finding without a row (a missing column, the package as a whole) or in 经费支出.csv has no cell here.
    if not finding.row or layout is None or finding.sheet not in grids:
        return None
    if layout["header_row"] is None:
        column = 1  # key–value sheet (基本信息): the value sits in column B of the field's row
    else:
        column = next((col for typed, col in layout["headers"].values() if typed == finding.column), None)
        if column is None:
            return None
    # calamine reports no merged ranges: a finding on a merged cell marks the cell it names.
    return finding.row - 1, column


def _copy_unit_sheets(book: xlsxwriter.Workbook, formats: _Formats, grids: dict[str, Grid], marks: Marks
                      ) -> dict[str, PlainCells]:
    """The unit's sheets after ours, each as the name it is added under -> its plain cells (written into
    the file after xlsxwriter closes it: assets/plain_cells.py)."""
    taken = {COVER.lower(), LIST.lower(), CHANGES.lower()}
    plain = {}
    for typed, grid in grids.items():
        name = _copy_name(typed, taken)
        plain[name] = _copy_grid(book.add_worksheet(name), formats, grid, marks.get(typed, {}))
    return plain


def _copy_name(typed: str, taken: set[str]) -> str:
    """The unit's sheet name, unless Excel would refuse it here: one of ours (a unit's own 说明 sheet),
    or a name only a program other than Excel writes. Then the nearest name Excel takes, numbered as
    Excel numbers a copied sheet: 说明 (2)."""
    base = _REFUSED_IN_SHEET_NAME.sub("", typed).strip("'") or "Sheet"
    name, number = base[:_SHEET_NAME_LENGTH], 1
    while name.lower() in taken:  # Excel compares sheet names ignoring case
        number += 1
        suffix = f" ({number})"
        name = base[:_SHEET_NAME_LENGTH - len(suffix)] + suffix
    taken.add(name.lower())
    return name


def _copy_grid(sheet: Worksheet, formats: _Formats, grid: Grid, marks: dict[Place, list[_Finding]]) -> PlainCells:
    """The unit's values where it typed them, its marked cells filled and commented; returned as the
    sheet's plain cells, bar the first cell of each format, which xlsxwriter writes."""
    plain = PlainCells()
    widths: dict[int, int] = {}
    marked: dict[int, set[int]] = {}  # column -> its marked rows, written below
    for row, column in marks:
        marked.setdefault(column, set()).add(row)
    # Column by column: a copy is ~1,750 cells and a national year ~1,800 copies (see _copy_column).
    for column, values in enumerate(itertools.zip_longest(*grid)):
        width = _copy_column(sheet, plain, formats, column, values, marked.get(column, ()))
        if width:
            widths[column] = width
    # Marked cells, empty ones too: a finding may point at a value the unit left out.
    for (row, column), found in marks.items():
        fill = _fill(any(f.fatal for f in found))
        value = grid[row][column] if row < len(grid) and column < len(grid[row]) else None
        if value is None or value == "":
            plain.write(sheet, row, column, None, formats.copy(None, fill))
        else:
            widths[column] = max(_copy_value(sheet, plain, formats, row, column, value, fill), widths.get(column, 0))
        sheet.write_comment(row, column, *_comment(found))
    narrowest, widest = _COPY_WIDTHS
    for column, width in widths.items():
        sheet.set_column(column, column, min(max(width + 2, narrowest), widest))
    return plain


def _copy_column(sheet: Worksheet, plain: PlainCells, formats: _Formats, column: int, values: Sequence[object],
                 skipped: Collection[int]) -> int:
    """_copy_value of each unmarked value of a column, the texts and numbers handed to the plain cells as
    one column (PlainCells.write_column: no call per cell); returns how many columns the widest takes."""
    cells: list[object] = []
    texts: set[str] = set()
    width = 0
    for row, value in enumerate(values):
        kind = type(value)
        if value is None or value == "" or row in skipped:
            value = None
        elif kind is str:
            value = _safe(value)
            texts.add(value)
        elif kind is float or kind is int or kind is bool:
            width = max(width, len("FALSE") if kind is bool else len(str(value)))
        else:  # a date, or what no workbook gives today: a cell of its own (_copy_value)
            width = max(width, _copy_value(sheet, plain, formats, row, column, value, None))
            value = None
        cells.append(value)
    plain.write_column(sheet, column, 0, cells)
    return max(width, _widest(texts))


def _widest(texts: Collection[str]) -> int:
    """The widest text's display width. A text is as wide as its length or up to twice it (CJK), so the
    longest are measured first and the others only while they could be wider (a column of CJK names
    and sentences was 9% of a copy's time, measured text by text)."""
    widest = 0
    for text in sorted(texts, key=len, reverse=True):
        if 2 * len(text) <= widest:
            break
        widest = max(widest, _text_width(text))
    return widest


def _text_width(value: str) -> int:
    return max(map(display_width, value.split("\n"))) if "\n" in value else display_width(value)


def _copy_value(sheet: Worksheet, plain: PlainCells, formats: _Formats, row: int, column: int, value: object,
                fill: str | None) -> int:
    """Write one value the unit typed with its type kept; return how many columns it takes on screen.
    (Runs for every cell of every copy: types are told apart by identity, the commonest first.)"""
    kind = type(value)
    if kind is str:
        value = _safe(value)
    elif not (kind is float or kind is int or kind is bool or kind in _DATE_FORMATS):
        # Nothing else comes out of a workbook today; should it, the unit still sees what it typed, as text.
        kind, value = str, _safe(str(value))
    number_format = _DATE_FORMATS.get(kind)
    plain.write(sheet, row, column, value, formats.copy(number_format, fill) if number_format or fill else None)
    if kind is str:
        return _text_width(value)
    if kind is bool:
        return len("FALSE")
    return len(number_format) if number_format else len(str(value))  # a date is shown as wide as its format


def _comment(found: list[_Finding]) -> tuple[str, dict]:
    """One comment for all the findings on a cell: a line each, rule and message."""
    lines = [f"{f.rule_id} {_title(f.rule_id)}（{SEVERITY_ZH.get(f.severity, f.severity)}）：{f.message}"
             + (f"（{f.waiver}）" if f.waiver else "") for f in found]
    note = _safe("\n".join(lines))
    return note, {"author": _AUTHOR, "width": 360, "height": max(80, 18 * (len(note) // 24 + len(lines)))}


def _title(rule_id: str) -> str:
    rule = RULES.get(rule_id)
    return rule.title if rule else ""


# --- 说明 ----------------------------------------------------------------------------------------------

# What the cover says of the money: its state, then the project's figures (ProjectMoney).
MONEY_STATES = {
    "final": "经费对账结果为最终结果：本材料包没有致命问题，以下各经费来源的拨付、支出、结余数即为审核结果。",
    "provisional": "经费对账结果为暂定：已按本材料包的经费支出对账（超支、结余等问题已一并列出），但材料包还有致命问题，"
                   "改正重新报送后将重新对账，数字可能变化。",
    "unreadable": "尚未对账：经费支出中有金额或经费来源无法识别（或材料包无法读取），请先改正经费支出表中的金额、"
                  "经费来源后重新报送，届时一并对账。",
    "no_package": "尚未对账：尚未收到本项目的材料包。",
}


@dataclass(frozen=True)
class ProjectMoney:
    """What a cover says of its project's money: the state (a MONEY_STATES key) and, where the project
    was reconciled, a sentence per funding source (money_sentence). The unit never receives
    reconciliation.csv: its own figures, and what it must refund to whom, are told here."""

    state: str
    lines: tuple[str, ...] = ()

    @property
    def text(self) -> list[str]:
        return [MONEY_STATES[self.state], *self.lines]


def money_sentence(*, funding_source: str, granted: str, spent: str, balance: str, refund_to: str,
                   refund_declared: str, status: str) -> str:
    """A reconciled funding source's row of reconciliation.csv (its columns by name, exact decimals as
    exported) as the unit reads it."""
    head = f"{funding_source}：拨付 {granted} 元，支出 {spent} 元"
    if status == "overspent":
        return f"{head}，超支 {balance.removeprefix('-')} 元。"
    if status == "refund_due":
        return f"{head}，结余 {balance} 元，应退回{refund_to}（结余说明填报 {refund_declared} 元）。"
    return f"{head}，收支相符。"


def _fill_cover(sheet: Worksheet, formats: _Formats, *, year: int, project: dict, status: str, package: str,
                rows: list[_Finding], marked: int, deadline: str, money: ProjectMoney | None = None,
                sample: bool = False) -> None:
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
    if money is not None:
        facts += [("经费对账" if i == 0 else "", line) for i, line in enumerate(money.text)]
    _merged(sheet, 0, f"{year}年度{SAMPLE_NOTE if sample else ''}专家服务基层项目材料审核反馈", formats.title)
    row = 2
    for label, value in facts:
        _put(sheet, row, 0, label, formats.label)
        _put(sheet, row, 1, value, formats.wrap)
        row += 1

    if fatal:
        row = _fatal_by_sheet(sheet, formats, row + 1, fatal)
    else:
        heading, lines = ("请核对（警告，不影响审核结果）", [f.line for f in warnings]) if warnings \
            else ("当前材料包未发现问题", [])
        row = _section(sheet, formats, row + 1, heading, lines[:_COVER_LINES])
        if len(lines) > _COVER_LINES:
            _put(sheet, row, 1, f"……另有 {len(lines) - _COVER_LINES} 条，见“{LIST}”工作表。", formats.wrap)
            row += 1
    _section(sheet, formats, row + 1, "下一步", _next_steps(status, bool(warnings), marked, deadline))

    sheet.set_column(0, 0, 12)
    sheet.set_column(1, 1, 90)
    _print_setup(sheet, landscape=False)


def _fatal_by_sheet(sheet: Worksheet, formats: _Formats, row: int, fatal: list[_Finding]) -> int:
    """The fatal findings to fix first, grouped by the sheet they point at (package-wide ones first),
    at most _COVER_LINES in all; returns the next free row."""
    _merged(sheet, row, f"请先处理（致命问题 {len(fatal)} 个，必须全部改正）", formats.heading)
    row += 1
    groups: dict[str, list[_Finding]] = {}
    for finding in sorted(fatal, key=lambda f: (f.sheet != "", f.sheet, f.row or 0)):
        groups.setdefault(finding.sheet, []).append(finding)
    shown = 0
    for name, found in groups.items():
        if shown >= _COVER_LINES:
            break
        _put(sheet, row, 0, f"工作表“{name}”" if name else "材料包", formats.label)
        _put(sheet, row, 1, f"{len(found)} 个致命问题", formats.label)
        row += 1
        for finding in found[:_COVER_LINES - shown]:
            shown += 1
            _put(sheet, row, 0, f"{shown}.", formats.wrap)
            _put(sheet, row, 1, finding.line, formats.wrap)
            row += 1
    if len(fatal) > shown:
        _put(sheet, row, 1, f"……另有 {len(fatal) - shown} 条致命问题，见“{LIST}”工作表。", formats.wrap)
        row += 1
    return row


def _merged(sheet: Worksheet, row: int, value: str, fmt: Format) -> None:
    """A line across columns A:B. merge_range would guess the value's type: it is written as text."""
    sheet.merge_range(row, 0, row, 1, "", fmt)
    _put(sheet, row, 0, value, fmt)


def _section(sheet: Worksheet, formats: _Formats, row: int, heading: str, lines: list[str]) -> int:
    """A bold heading, then numbered lines; returns the next free row."""
    _merged(sheet, row, heading, formats.heading)
    for number, line in enumerate(lines, start=1):
        _put(sheet, row + number, 0, f"{number}.", formats.wrap)
        _put(sheet, row + number, 1, line, formats.wrap)
    return row + len(lines) + 1


def _next_steps(status: str, has_warnings: bool, marked: int, deadline: str) -> list[str]:
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
    if marked:
        steps.append(f"本文件“{LIST}”之后的工作表是贵单位报送的工作簿副本，有问题的 {marked} 个单元格已标色（红色为"
                     "致命问题，黄色为警告），单元格批注写明了规则编号和修改要求。")
        steps.append(f"请在贵单位的原工作簿中改正；如直接在本文件上修改，报送前请删除“{COVER}”“{LIST}”两张工作表。")
    steps.append("如有疑问，请联系市人力资源社会保障局专业技术人员管理处。")
    return [step for step in steps if step]


def _versions_line(sheet: Worksheet, formats: _Formats, versions: str) -> None:
    """Under the title: the rule-set and registry versions the findings were made with."""
    if versions:
        _merged(sheet, 1, versions, formats.wrap)


# --- 版本变更 ------------------------------------------------------------------------------------------

def _fill_changes(sheet: Worksheet, formats: _Formats, changes: PackageChanges) -> None:
    """What changed since the unit's previous version: each section a heading and a boxed table."""
    _put(sheet, 0, 0, f"{changes.old} → {changes.new}：问题已改正 {changes.count('已改正')} 条，新出现 "
                      f"{changes.count('新出现')} 条，仍存在 {changes.count('仍存在')} 条", formats.title)
    row = 2
    for section in changes.sections():
        _put(sheet, row, 0, section.title, formats.heading)
        for col, header in enumerate(section.headers):
            _put(sheet, row + 1, col, header, formats.header)
        for r, values in enumerate(section.rows, start=row + 2):
            for col, value in enumerate(values):
                _put(sheet, r, col, value, formats.boxed)
        if not section.rows:
            _put(sheet, row + 2, 0, "无", formats.wrap)
        row += max(len(section.rows), 1) + 3
    for col, width in enumerate((10, 10, 10, 16, 14, 14, 24, 60)):
        sheet.set_column(col, col, width)
    _print_setup(sheet, landscape=True)


# --- 问题清单 ----------------------------------------------------------------------------------------

def _fill_list(sheet: Worksheet, formats: _Formats, rows: list[_Finding]) -> None:
    for col, (header, width) in enumerate(_LIST_COLUMNS):
        _put(sheet, 0, col, header, formats.header)
        sheet.set_column(col, col, width)
    for r, f in enumerate(rows, start=1):
        values = [f.package, f.rule_id, SEVERITY_ZH.get(f.severity, f.severity), f.sheet, f.row, f.column, f.value,
                  f.message, f.waiver]
        for col, value in enumerate(values):
            _put(sheet, r, col, value, formats.severity[f.fatal] if col == 2 else formats.boxed)
    if rows:
        sheet.autofilter(0, 0, len(rows), len(_LIST_COLUMNS) - 1)
    else:
        _put(sheet, 1, 0, "未发现问题。")
    sheet.freeze_panes(1, 0)
    sheet.repeat_rows(0)
    _print_setup(sheet, landscape=True)


def _print_setup(sheet: Worksheet, *, landscape: bool) -> None:
    sheet.set_paper(9)  # A4
    if landscape:
        sheet.set_landscape()
    else:
        sheet.set_portrait()
    sheet.fit_to_pages(1, 0)  # one page wide, as many pages long as needed
