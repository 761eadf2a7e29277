"""From cell grids to tidy text frames: find the header, map the columns the unit typed to the
template's fields, drop blank rows and notes, keep the 合计 row aside as the declared total.

Values stay text here, exactly as typed (numbers in their shortest form, dates as ISO dates):
reading them as amounts or dates is the schemas' job, so a bad cell becomes a finding, not a crash.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
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


def _compact_series(s: pd.Series) -> pd.Series:
    return s.astype(str).str.normalize("NFKC").str.replace(r"\s+", "", regex=True)


def text_frame(grid: Grid) -> pd.DataFrame:
    """The grid as a frame of text cells, indexed by Excel row number."""
    frame = pd.DataFrame(grid, dtype=object)
    if frame.empty:
        return frame
    for col in frame.columns:
        values = frame[col]
        # CSV grids are already text; only workbook cells need converting one by one.
        if not all(isinstance(v, str) for v in values):
            frame[col] = values.map(cell_text)
        else:
            frame[col] = values.str.strip()
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


def parse_table(grid: Grid, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    cells = text_frame(grid)
    if cells.empty:
        return ParsedSheet(layout, typed_name, pd.DataFrame(columns=[]))
    header_row, mapping = _find_header(cells, layout)
    if header_row is None:
        return ParsedSheet(layout, typed_name, pd.DataFrame(columns=[]))
    body = cells.loc[header_row + 1 :]
    filled = body.ne("")
    counts = filled.sum(axis=1)

    # Everything from the 合计 row on is the declared total and notes, not expenses: the row whose
    # first cell, 序号 or 摘要 says 合计 (vectorised: a year can hold a million rows).
    cells_np, filled_np = body.to_numpy(), filled.to_numpy()
    first_cell = cells_np[np.arange(len(body)), filled_np.argmax(axis=1)] if len(body) else cells_np[:, 0]
    compact_first = _compact_series(pd.Series(first_cell, index=body.index))
    said_total = compact_first.str.match(_TOTAL.pattern)
    for col, f in mapping.items():
        if f in ("seq", "summary"):
            said_total |= _compact_series(body[col]).str.match(_TOTAL.pattern)
    is_total = said_total
    total = None
    if is_total.any():
        total_row = int(is_total.idxmax())
        amount_col = next((col for col, f in mapping.items() if f == "amount"), None)
        total = (total_row, body.at[total_row, amount_col] if amount_col is not None else "")
        body, counts, compact_first = body.loc[: total_row - 1], counts.loc[: total_row - 1], compact_first.loc[: total_row - 1]

    mapped_cols = list(mapping)
    lone_note = (counts == 1) & (compact_first.str.match(_NOTE.pattern) | ~filled.loc[body.index, mapped_cols].any(axis=1))
    data = body.loc[(counts > 0) & ~lone_note, mapped_cols].rename(columns=mapping)
    data.index.name = "excel_row"
    headers = {f: cells.at[header_row, col] for col, f in mapping.items()}
    columns = {f: int(col) for col, f in mapping.items()}
    return ParsedSheet(layout, typed_name, data, headers=headers, columns=columns, header_row=int(header_row), total=total)


def _find_header(cells: pd.DataFrame, layout: SheetLayout) -> tuple[int | None, dict[int, str]]:
    best_row, best = None, {}
    for row in cells.index[:_HEADER_SEARCH_ROWS]:
        mapping: dict[int, str] = {}
        for col, text in cells.loc[row].items():
            column = layout.match(text)
            if column and column.field not in mapping.values():
                mapping[col] = column.field
        if len(mapping) > len(best):
            best_row, best = row, mapping
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
