"""From cell grids to tidy text frames: find the header, map the columns the unit typed to the
template's fields, drop blank rows and notes, keep the 合计 row aside as the declared total.

Values stay text here, exactly as typed (numbers in their shortest form, dates as ISO dates):
reading them as amounts or dates is the schemas' job, so a bad cell becomes a finding, not a crash.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from adapters.workbook import Grid, Workbook, csv_grid
from schemas.layout import EXPENSES, LAYOUTS, SheetLayout

_HEADER_SEARCH_ROWS = 10
# Large units may hand in 经费支出 as this CSV beside the workbook; findings name it as the sheet.
EXPENSES_CSV_NAME = "经费支出.csv"
_TOTAL = re.compile(r"^(合计|总计|合计金额|支出合计)")
_NOTE = re.compile(r"^(注|说明|备注|填表|附|制表)")


@dataclass
class ParsedSheet:
    layout: SheetLayout
    typed_name: str  # the sheet's name as the unit typed it
    frame: pd.DataFrame  # one row per data row, index = Excel row; one text column per field found
    headers: dict[str, str] = field(default_factory=dict)  # field -> header as typed
    columns: dict[str, int] = field(default_factory=dict)  # field -> 0-based column of its cells
    header_row: int | None = None  # Excel row of the header (tables)
    rows: dict[str, int] = field(default_factory=dict)  # key-value sheets: field -> Excel row
    total: tuple[int, str] | None = None  # the 合计 row: (Excel row, amount as typed)


def cell_text(value: object) -> str:
    """One cell as the unit sees it: '1234.5', '100000', '2023-06-01', '' for blank."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


def _compact(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def parse_table(grid: Grid, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    """One pass over the rows in plain Python, then one frame: per-row work is a few string tests,
    and a workbook's small sheets must not pay pandas' per-call cost (a year holds thousands)."""
    header_row, mapping = _find_header(grid, layout)
    if header_row is None:
        return ParsedSheet(layout, typed_name, pd.DataFrame(columns=[]))
    mapped = list(mapping)
    marker_cols = [col for col, f in mapping.items() if f in ("seq", "summary")]
    amount_col = next((col for col, f in mapping.items() if f == "amount"), None)
    records, rows, total = [], [], None
    for i in range(header_row, len(grid)):  # grid index i is Excel row i + 1
        cells = [cell_text(v) for v in grid[i]]
        filled = [c for c in cells if c]
        if not filled:
            continue  # blank row
        first = _compact(filled[0])
        # The row whose first cell, 序号 or 摘要 says 合计 is the declared total; what follows are notes.
        # ("计" in …: most cells cannot say 合计/总计, and normalising every cell of a million rows costs seconds.)
        if _TOTAL.match(first) or any(col < len(cells) and "计" in cells[col] and _TOTAL.match(_compact(cells[col]))
                                      for col in marker_cols):
            total = (i + 1, cells[amount_col] if amount_col is not None and amount_col < len(cells) else "")
            break
        values = [cells[col] if col < len(cells) else "" for col in mapped]
        if len(filled) == 1 and (_NOTE.match(first) or not any(values)):
            continue  # a note typed under or between the rows
        records.append(values)
        rows.append(i + 1)
    data = pd.DataFrame(records, columns=[mapping[col] for col in mapped], index=pd.Index(rows, name="excel_row"),
                        dtype=object)
    header = grid[header_row - 1]
    headers = {f: cell_text(header[col]) for col, f in mapping.items()}
    return ParsedSheet(layout, typed_name, data, headers=headers, columns=dict(zip(mapping.values(), mapped)),
                       header_row=header_row, total=total)


def _find_header(grid: Grid, layout: SheetLayout) -> tuple[int | None, dict[int, str]]:
    """The Excel row (among the first few) naming the most template columns, and column -> field."""
    best_row, best = None, {}
    for i, row in enumerate(grid[:_HEADER_SEARCH_ROWS]):
        mapping: dict[int, str] = {}
        for col, value in enumerate(row):
            column = layout.match(cell_text(value))
            if column and column.field not in mapping.values():
                mapping[col] = column.field
        if len(mapping) > len(best):
            best_row, best = i + 1, mapping
    # One matching cell could be a title ("经费支出"); a header has at least two template columns.
    return (best_row, best) if len(best) >= 2 else (None, {})


def parse_key_value(grid: Grid, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    """基本信息: column A names the field, column B holds the value. One row frame (index 0)."""
    values: dict[str, str] = {}
    headers: dict[str, str] = {}
    rows: dict[str, int] = {}
    for excel_row, row in enumerate(grid, start=1):
        if not row:
            continue
        key = cell_text(row[0])
        column = layout.match(key)
        if column is None or column.field in values:
            continue
        values[column.field] = cell_text(row[1]) if len(row) > 1 else ""
        headers[column.field] = key
        rows[column.field] = excel_row
    frame = pd.DataFrame([values], index=pd.Index([0], name="excel_row"), dtype=object)
    # Values sit in column B, beside their field's name.
    return ParsedSheet(layout, typed_name, frame, headers=headers, columns={f: 1 for f in values}, rows=rows)


def parse_sheet(grid: Grid, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    return (parse_key_value if layout.key_value else parse_table)(grid, layout, typed_name)


def read_sheets(workbook: bytes, expenses_csv: bytes | None = None) -> dict[str, ParsedSheet]:
    """Every template sheet the workbook has, parsed; 经费支出.csv stands in for a missing sheet."""
    book = Workbook(workbook)
    sheets: dict[str, ParsedSheet] = {}
    for layout in LAYOUTS:
        typed_name = book.find_sheet(layout.name)
        if typed_name is not None:
            sheets[layout.name] = parse_sheet(book.grid(typed_name), layout, typed_name)
    if EXPENSES.name not in sheets and expenses_csv is not None:
        sheets[EXPENSES.name] = parse_sheet(csv_grid(expenses_csv), EXPENSES, EXPENSES_CSV_NAME)
    return sheets
