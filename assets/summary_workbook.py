"""The bureau's workbook `summary.xlsx`: 汇总表, 问题清单, 结余退回, 国家系统报送, 豁免记录, 本次变化.

Built from the export tables exactly as the CSVs hold them (text; money as "100000.00", empty when
unknown). Money is added up in Decimal and only turned into a number when a cell is written, so the
totals an operator prints are exact. Every text cell is written as text (a plain cell or write_text:
assets/plain_cells.py), never through xlsxwriter's `write()`: units type values like "=HYPERLINK(...)",
which it would make live formulas in the bureau's file.
"""

from __future__ import annotations

import filecmp
import functools
import io
import os
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from adapters.registry import LEVEL_ZH, REFUND_TO, SAMPLE_NOTE, TYPE_ZH
from assets.plain_cells import PlainCells, with_plain_cells
from assets.waivers import STATE_ZH as WAIVER_STATE_ZH
from schemas.catalog import NATIONAL_STATUS_ZH, PROJECT_STATUS_ZH, SEVERITY_ZH

# Spreadsheet programs read a cell starting with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@")
MONEY_FORMAT = "#,##0.00"
# Each body (人力资源社会保障部, then 市人力资源社会保障局) once, in the notice's order of sources.
REFUND_BODIES = tuple(dict.fromkeys(REFUND_TO.values()))
NO_NATIONAL_FILINGS = "无国家级项目报送记录"


def text(value: object) -> str:
    """A cell of an export table as text ('' for blank, whether the frame came from a CSV or not)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value).strip()


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows as dicts of Python values, as DataFrame.to_dict("records") gives them, at less than half
    its cost (it boxes each value on its own; tolist converts a column at once)."""
    columns = list(frame.columns)
    return [dict(zip(columns, values)) for values in zip(*(frame[c].tolist() for c in columns))]


def integer(value: object) -> int | None:
    """A whole number of an export table (a finding's row, a count): '3', 3 or 3.0 -> 3; blank -> None."""
    typed = text(value)
    if typed.isdigit():  # the common case, without pandas' per-call cost (a year has thousands of rows)
        return int(typed)
    number = pd.to_numeric(typed or None, errors="coerce")
    return None if pd.isna(number) else int(number)


def money(value: object) -> Decimal | None:
    typed = text(value)
    return Decimal(typed) if typed else None


# Cached: a feedback copy sizes its columns on every cell, and a unit's texts (categories, sources,
# payees) repeat from row to row and from unit to unit.
@functools.lru_cache(maxsize=1 << 16)
def display_width(value: str) -> int:
    """Columns a text takes on screen: CJK characters are twice as wide as Latin ones."""
    if value.isascii():  # most cells (codes, amounts, dates): no per-character lookup
        return len(value)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in value)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a partial name to write to; on success rename it over `path`, so a reader never sees half a
    file. A file whose new bytes are its old ones is left as it was (same time, no churn for whoever
    watches the folder): exports rewrite only what changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial" + path.suffix)
    try:
        yield partial
        if not (path.exists() and filecmp.cmp(partial, path, shallow=False)):
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def xlsx_with_plain_cells(path: Path, properties: dict | None = None
                          ) -> Iterator[tuple[xlsxwriter.Workbook, dict[str, PlainCells]]]:
    """An xlsxwriter workbook and the plain cells of its sheets (sheet name -> PlainCells), written to
    `path` together, atomically, when the block ends (assets/plain_cells.py). In memory: no temporary
    files, and zip members stamped with a fixed time, so the same content gives the same bytes and an
    unchanged file is not rewritten (with a fixed creation time in `properties`). Belt and braces with
    write_text: no text is ever turned into a formula, number or link."""
    written = io.BytesIO()
    book = xlsxwriter.Workbook(written, {"in_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
                                         "strings_to_urls": False})
    if properties:
        book.set_properties(properties)
    plain: dict[str, PlainCells] = {}
    yield book, plain
    book.close()
    with atomic_path(path) as partial:
        partial.write_bytes(with_plain_cells(written.getvalue(), plain))


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"  # text | wrap (long text, wrapped) | money (Decimal) | int
    max_width: int = 40


Cell = str | Decimal | int | None


class _Formats:
    def __init__(self, book: xlsxwriter.Workbook) -> None:
        base = {"border": 1, "valign": "top", "font_size": 10}
        self.header = book.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "text_wrap": True,
                                       "align": "center", "valign": "vcenter"})
        self.by_kind = {
            "text": book.add_format(base),
            "wrap": book.add_format({**base, "text_wrap": True}),
            "money": book.add_format({**base, "num_format": MONEY_FORMAT}),
            "int": book.add_format({**base, "num_format": "0"}),
        }
        total = {**base, "bold": True, "bg_color": "#F2F2F2"}
        self.total_by_kind = {
            "text": book.add_format(total),
            "wrap": book.add_format({**total, "text_wrap": True}),
            "money": book.add_format({**total, "num_format": MONEY_FORMAT}),
            "int": book.add_format({**total, "num_format": "0"}),
        }


def _cell_value(value: Cell, kind: str) -> object:
    if value is None or value == "":
        return value
    # The exact Decimal becomes a number only here.
    return float(value) if kind == "money" else int(value) if kind == "int" else str(value)


def _write_rows(sheet: Worksheet, plain: PlainCells, top: int, columns: list[Column], rows: Sequence[list[Cell]],
                formats: dict[str, object]) -> None:
    """The rows from row `top`, column by column (plain cells are cheapest a column at a time); a row
    shorter than the header is blank in the columns it lacks."""
    for col, column in enumerate(columns):
        values = [_cell_value(row[col] if col < len(row) else None, column.kind) for row in rows]
        plain.write_column(sheet, col, top, values, formats[column.kind])


def _shown(value: Cell, kind: str) -> str:
    if value is None:
        return ""
    return f"{value:,.2f}" if kind == "money" else str(value)


def _write_table(book: xlsxwriter.Workbook, formats: _Formats, *, name: str, title: str, columns: list[Column],
                 rows: list[list[Cell]], totals: Sequence[list[Cell]] = (), note: str = "", stamp: str = ""
                 ) -> PlainCells:
    """One printable table: bold filled header (frozen, filtered, repeated on every page), then the
    rows, then the totals rows (outside the filter, so sorting keeps them at the bottom). `stamp`
    (the rule-set and registry versions) is printed at the top left of every page. Returns its plain
    cells (xlsx_with_plain_cells puts them into the file)."""
    sheet = book.add_worksheet(name)
    plain = PlainCells()
    for col, column in enumerate(columns):
        sheet.write_string(0, col, column.header, formats.header)
    _write_rows(sheet, plain, 1, columns, rows, formats.by_kind)
    _write_rows(sheet, plain, len(rows) + 1, columns, totals, formats.total_by_kind)
    if note:
        sheet.write_string(1, 0, note)
    for col, column in enumerate(columns):
        widest = display_width(column.header) // 2 + 1  # headers wrap onto two lines
        for values in [*rows, *totals]:
            widest = max(widest, display_width(_shown(values[col], column.kind)))
            if widest + 2 >= column.max_width:
                break  # as wide as the column may be: the other rows cannot change it
        sheet.set_column(col, col, min(max(widest + 2, 8), column.max_width))
    sheet.freeze_panes(1, 0)
    if rows:
        sheet.autofilter(0, 0, len(rows), len(columns) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)  # one page wide, as many pages long as needed
    sheet.repeat_rows(0)
    # A font-size code (&12) would swallow the title's leading year digits; bold needs no number.
    sheet.set_header((f"&L{stamp}" if stamp else "") + f'&C&"-,Bold"{title}')
    sheet.set_footer("&C第 &P 页，共 &N 页")
    return plain


def _sum(values: list[Decimal | None]) -> Decimal | None:
    """Exact sum; unknown (None) as soon as one part is unknown."""
    return None if not values or any(v is None for v in values) else sum(values, Decimal(0))


def _sum_known(values: list[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))


def _received(value: object) -> str:
    """'2023-11-06T15:20:00+08:00' -> '2023-11-06 15:20' (the exports' times are Asia/Shanghai)."""
    typed = text(value)
    try:
        return datetime.fromisoformat(typed).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return typed


def _is_late(value: object) -> bool:
    return text(value).lower() == "true"


SUMMARY_COLUMNS = [
    Column("项目编号", max_width=14), Column("依托单位", "wrap", 24), Column("项目名称", "wrap", 30),
    Column("级别"), Column("类型"), Column("状态"), Column("材料包", "wrap", 30), Column("收到时间", max_width=18),
    Column("是否逾期"), Column("拨付（元）", "money"), Column("支出（元）", "money"), Column("结余（元）", "money"),
    Column("致命问题数", "int"), Column("警告数", "int"),
]


def summary_rows(projects: pd.DataFrame, reconciliation: pd.DataFrame) -> tuple[list[list[Cell]], list[Cell]]:
    """汇总表: one row per project, money summed over its funding sources; and the 合计 row."""
    by_project: dict[str, list[dict]] = {}
    for line in records(reconciliation):
        by_project.setdefault(text(line["project_code"]), []).append(line)
    rows: list[list[Cell]] = []
    for p in records(projects):
        lines = by_project.get(text(p["project_code"]), [])
        rows.append([
            text(p["project_code"]), text(p["host_unit"]), text(p["project_name"]),
            LEVEL_ZH.get(text(p["level"]), text(p["level"])), TYPE_ZH.get(text(p["type"]), text(p["type"])),
            PROJECT_STATUS_ZH.get(text(p["status"]), text(p["status"])), text(p["package"]), _received(p["received_at"]),
            "是" if _is_late(p["late"]) else "否",
            _sum([money(line["granted"]) for line in lines]),
            _sum([money(line["spent"]) for line in lines]),
            _sum([money(line["balance"]) for line in lines]),
            integer(p["fatal_count"]) or 0, integer(p["warning_count"]) or 0,
        ])
    money_cols = range(9, 12)
    total: list[Cell] = ["合计", f"共 {len(rows)} 个项目", *[""] * 7,
                         *[_sum_known([row[c] for row in rows]) for c in money_cols],
                         sum(row[12] for row in rows), sum(row[13] for row in rows)]
    return rows, total


ISSUE_COLUMNS = [
    Column("项目编号", max_width=14), Column("材料包", "wrap", 30), Column("规则", max_width=8), Column("级别"),
    Column("工作表", max_width=16), Column("行", "int"), Column("列", max_width=20), Column("填写值", "wrap", 24),
    Column("问题说明", "wrap", 60), Column("豁免", "wrap", 30),
]


def waiver_note(finding: dict) -> str:
    """已豁免：<reason>（<who>） for a waived finding of issues.csv, else ''. (Older exports have no
    waived column.)"""
    if text(finding.get("waived")).lower() != "true":
        return ""
    return f"已豁免：{text(finding.get('waiver_reason'))}（{text(finding.get('waived_by'))}）"


def issue_rows(issues: pd.DataFrame) -> list[list[Cell]]:
    return [
        [text(f["project_code"]), text(f["package"]), text(f["rule_id"]),
         SEVERITY_ZH.get(text(f["severity"]), text(f["severity"])), text(f["sheet"]), integer(f["row"]),
         text(f["column"]), text(f["value"]), text(f["message"]), waiver_note(f)]
        for f in records(issues)
    ]


REFUND_COLUMNS = [
    Column("项目编号", max_width=14), Column("依托单位", "wrap", 24), Column("经费来源"), Column("拨付（元）", "money"),
    Column("支出（元）", "money"), Column("应退金额（元）", "money"), Column("退回对象", max_width=26),
    Column("单位填报结余（元）", "money"), Column("单位填报退回对象", max_width=26), Column("核对"),
]


def refund_rows(projects: pd.DataFrame, reconciliation: pd.DataFrame) -> tuple[list[list[Cell]], list[list[Cell]]]:
    """结余退回: each project and source with money left over or a refund the unit declared, checked
    against what the unit typed in its 结余说明; then what goes back to each body in total."""
    units = {text(p["project_code"]): text(p["host_unit"]) for p in records(projects)}
    rows: list[list[Cell]] = []
    for line in records(reconciliation):
        balance, declared = money(line["balance"]), money(line["refund_declared"]) or Decimal(0)
        if balance is None or (balance <= 0 and declared <= 0):
            continue  # not reconciled (nothing known to refund), or nothing left and nothing declared
        due = max(balance, Decimal(0))
        body = REFUND_TO.get(text(line["funding_source"]), "") if due > 0 else ""
        # refund_to_declared was added after the contract's columns: absent from older exports.
        declared_body = text(line.get("refund_to_declared"))
        agrees = declared == due and (due == 0 or declared_body == body)
        rows.append([text(line["project_code"]), units.get(text(line["project_code"]), ""),
                     text(line["funding_source"]), money(line["granted"]), money(line["spent"]), due, body,
                     declared, declared_body, "一致" if agrees else "不一致"])
    totals: list[list[Cell]] = [
        [f"应退回{body}合计", "", "", None, None, _sum_known([r[5] for r in rows if r[6] == body]), body,
         None, "", ""]
        for body in REFUND_BODIES
    ]
    return rows, totals


NATIONAL_COLUMNS = [
    Column("项目编号", max_width=14), Column("版本", "int"), Column("状态", max_width=16), Column("回执号", max_width=30),
    Column("尝试次数", "int"), Column("最近错误", "wrap", 50), Column("系统时间", max_width=22),
]


def national_rows(national: pd.DataFrame | None) -> list[list[Cell]]:
    if national is None or national.empty:
        return []
    return [
        [text(n["project_code"]), integer(n["version"]),
         NATIONAL_STATUS_ZH.get(text(n["status"]), text(n["status"])), text(n["receipt_no"]),
         integer(n["attempts"]), text(n["last_error"]), text(n["server_time"])]
        for n in records(national)
    ]


WAIVER_COLUMNS = [
    Column("编号", "int"), Column("项目编号", max_width=14), Column("规则", max_width=8), Column("材料包", "wrap", 30),
    Column("工作表", max_width=16), Column("行", "int"), Column("有效期至", max_width=12), Column("状态"),
    Column("豁免人", max_width=12), Column("登记时间", max_width=18), Column("豁免理由", "wrap", 40),
    Column("撤销人", max_width=12), Column("撤销时间", max_width=18), Column("撤销理由", "wrap", 30),
    Column("当前覆盖问题数", "int"),
]
NO_WAIVERS = "本年度没有豁免记录"


def waiver_rows(waivers: pd.DataFrame | None) -> list[list[Cell]]:
    """豁免记录: every waiver of the year, revoked and expired ones included (the register is append-only)."""
    if waivers is None or waivers.empty:
        return []
    return [
        [integer(w["id"]), text(w["project_code"]), text(w["rule_id"]), text(w["package"]) or "在用材料包",
         text(w["sheet"]), integer(w["row"]), text(w["until"]), WAIVER_STATE_ZH.get(text(w["state"]), text(w["state"])),
         text(w["recorded_by"]), text(w["recorded_at"]), text(w["reason"]), text(w["revoked_by"]),
         text(w["revoked_at"]), text(w["revoke_reason"]), integer(w["matched"]) or 0]
        for w in records(waivers)
    ]


CHANGED_COLUMNS = [
    Column("项目编号", max_width=14), Column("此前状态"), Column("现在状态"), Column("此前支出（元）", "money"),
    Column("现在支出（元）", "money"), Column("变化原因", "wrap", 40),
]
NO_CHANGES = "与上次导出相比，没有项目的状态或金额发生变化（或这是本年度的第一次导出）"


def changed_rows(changed: list[dict] | None) -> list[list[Cell]]:
    """本次变化: projects whose status or money changed since the previous export, and why."""
    return [[c["project_code"], PROJECT_STATUS_ZH.get(c["status_before"], c["status_before"]),
             PROJECT_STATUS_ZH.get(c["status_now"], c["status_now"]), money(c["spent_before"]), money(c["spent_now"]),
             c["reasons"]] for c in changed or []]


def write_tables(path: Path, tables: Sequence[dict]) -> Path:
    """A workbook of printable tables (each: name, title, columns, rows, optional note), atomically."""
    with xlsx_with_plain_cells(path) as (book, plain):
        formats = _Formats(book)
        for table in tables:
            plain[table["name"]] = _write_table(book, formats, **table)
    return path


def write_summary(path: Path, *, year: int, projects: pd.DataFrame, issues: pd.DataFrame,
                  reconciliation: pd.DataFrame, national: pd.DataFrame | None, waivers: pd.DataFrame | None = None,
                  changed: list[dict] | None = None, versions: str = "", sample: bool = False,
                  more_sheets: Sequence[Callable[[xlsxwriter.Workbook, _Formats], dict[str, PlainCells]]] = ()
                  ) -> Path:
    """Write summary.xlsx (汇总表, 问题清单, 结余退回, 国家系统报送, 豁免记录, 本次变化, then `more_sheets`'
    sheets, e.g. assets.outcomes_sheet's 服务成效, each adding its sheets and returning their plain cells)
    atomically; return its path. `versions` (rule set and registry) heads 汇总表 and is printed on every
    page."""
    rows, total = summary_rows(projects, reconciliation)
    period = f"{year}年度" + (SAMPLE_NOTE if sample else "")
    title = f"{period}专家服务基层项目汇总表" + (f"（{versions}）" if versions else "")
    refunds, refund_totals = refund_rows(projects, reconciliation)
    filings, waived, changes = national_rows(national), waiver_rows(waivers), changed_rows(changed)
    tables = [
        dict(name="汇总表", title=title, columns=SUMMARY_COLUMNS, rows=rows, totals=[total]),
        dict(name="问题清单", title=f"{period}专家服务基层项目问题清单", columns=ISSUE_COLUMNS, rows=issue_rows(issues)),
        dict(name="结余退回", title=f"{period}专家服务基层项目结余退回", columns=REFUND_COLUMNS, rows=refunds,
             totals=refund_totals),
        dict(name="国家系统报送", title=f"{period}国家级项目国家系统报送情况", columns=NATIONAL_COLUMNS, rows=filings,
             note="" if filings else NO_NATIONAL_FILINGS),
        dict(name="豁免记录", title=f"{period}问题豁免记录", columns=WAIVER_COLUMNS, rows=waived,
             note="" if waived else NO_WAIVERS),
        dict(name="本次变化", title=f"{period}与上次导出相比状态或金额有变化的项目", columns=CHANGED_COLUMNS, rows=changes,
             note="" if changes else NO_CHANGES),
    ]
    # A fixed creation time: the same year gives the same bytes.
    with xlsx_with_plain_cells(path, {"created": datetime(year, 1, 1)}) as (book, plain):
        formats = _Formats(book)
        for table in tables:
            plain[table["name"]] = _write_table(book, formats, **table, stamp=versions)
        for add_sheet in more_sheets:  # each returns its sheets' plain cells
            plain.update(add_sheet(book, formats))
    return path
