"""From the texts of a sheet's cells to tidy text frames: find the header, map the columns the unit typed
to the template's fields, drop blank rows and notes, keep the 合计 row aside as the declared total.

Values stay text here, exactly as typed (numbers in their shortest form, dates as ISO dates):
reading them as amounts or dates is the schemas' job, so a bad cell becomes a finding, not a crash.
"""

from __future__ import annotations

import pickle
import re
import struct
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple
from importlib.metadata import version

import numpy as np
import pandas as pd
import pyarrow as pa

from adapters import workbook as workbook_code, xlsx_census
from adapters.workbook import Grid, TextTable, UnreadableWorkbook, Workbook, cell_text, csv_text_table
from assets.incremental import code_hash, digest
from schemas import layout as layout_code
from schemas.layout import BASIC_INFO, EXPENSES, LAYOUTS, SheetLayout

_HEADER_SEARCH_ROWS = 10
# Large units may hand in 经费支出 as this CSV beside the workbook; findings name it as the sheet.
EXPENSES_CSV_NAME = "经费支出.csv"
_TOTAL = re.compile(r"^(合计|总计|合计金额|支出合计)")
_NOTE = re.compile(r"^(注|说明|备注|填表|附|制表)")
# Every way of writing 合计/总计 contains 计, and no other character becomes 计 under NFKC: cells without
# it cannot be the total, and need not be normalised (which costs seconds over a million rows).
_TOTAL_MARK = "计"
# The template's example row (its first cell says 示例) shows how to fill a table; it is never data.
EXAMPLE_MARK = "示例"


@dataclass
class ParsedSheet:
    """A sheet's data rows as plain lists, column by column. A year holds thousands of small sheets: a
    pandas frame per sheet cost more to build, keep and load than the rows themselves, so validation
    builds one frame per sheet for a whole batch of packages (assets.validation._batch_frame)."""

    layout: SheetLayout
    typed_name: str  # the sheet's name as the unit typed it
    excel_rows: list[int]  # each data row's Excel row (a key-value sheet has one row, 0)
    cells: dict[str, list[str]]  # field found -> its texts, one per data row
    headers: dict[str, str] = field(default_factory=dict)  # field -> header as typed
    columns: dict[str, int] = field(default_factory=dict)  # field -> 0-based column of its cells
    header_row: int | None = None  # Excel row of the header (tables)
    rows: dict[str, int] = field(default_factory=dict)  # key-value sheets: field -> Excel row
    total: tuple[int, str] | None = None  # the 合计 row: (Excel row, amount as typed)

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a frame (index = Excel row, one text column per field found), for a caller that
        looks at one sheet (tests, the bench's hand checks)."""
        index = pd.Index(self.excel_rows, name="excel_row", dtype=np.int64 if self.excel_rows else object)
        return pd.DataFrame(self.cells, index=index, columns=list(self.cells), dtype=object)

    def first_row(self) -> dict[str, str]:
        """A key-value sheet's (基本信息's) one row: field -> text."""
        return {f: texts[0] for f, texts in self.cells.items() if texts}


def _compact(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def parse_table(cells: Grid | TextTable, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    """Column by column, so that a 100,000-line sheet costs a few array operations per column (and Python
    work per distinct text of a column, not per cell): the rows below the header, less blank rows and
    notes, up to the 合计 row."""
    table = cells if isinstance(cells, TextTable) else TextTable.from_grid(cells)
    header_row, mapping = _find_header(table, layout)
    if header_row is None:
        return ParsedSheet(layout, typed_name, [], {})
    body = _Body(table, header_row)
    amount_col = next((col for col, f in mapping.items() if f == "amount"), None)
    total_line = body.total_line(marker_cols=[col for col, f in mapping.items() if f in ("seq", "summary")])
    end = body.size if total_line is None else total_line
    counts = body.filled[:, :end].sum(axis=0)
    kept = counts > 0  # blank rows go
    for i in np.flatnonzero(counts == 1):
        # A lone cell is a note typed under or between the rows, unless it is a field's value.
        if body.first_col[i] not in mapping or _NOTE.match(_compact(body.first(i))):
            kept[i] = False
    kept &= ~body.first_cell_is(EXAMPLE_MARK)[:len(kept)]
    lines = np.flatnonzero(kept)
    cells = dict(zip(mapping.values(), body.values(list(mapping), lines).tolist()))
    total = None
    if total_line is not None:
        total = (header_row + 1 + total_line, body.text(amount_col, total_line) if amount_col is not None else "")
    header = table.row(header_row - 1)
    return ParsedSheet(layout, typed_name, (header_row + 1 + lines).tolist(), cells,
                       headers={f: header[col] for col, f in mapping.items()},
                       columns={f: col for col, f in mapping.items()}, header_row=header_row, total=total)


class _Body:
    """The lines under a table's header (line 0 is Excel row header_row + 1), column by column."""

    def __init__(self, table: TextTable, header_row: int) -> None:
        self._columns = table.columns
        self._codes = [column.codes[header_row:] for column in table.columns]
        self.size = table.height - header_row
        self.filled = np.array([(column.texts != "")[codes] for column, codes in zip(self._columns, self._codes)],
                               dtype=bool).reshape(len(self._columns), self.size)
        self.first_col = self.filled.argmax(axis=0)  # each line's first filled cell (0 on a blank line)

    def text(self, col: int, line: int) -> str:
        return self._columns[col].texts[self._codes[col][line]]

    def first(self, line: int) -> str:
        return self.text(self.first_col[line], line)

    def values(self, cols: list[int], lines: np.ndarray) -> np.ndarray:
        """The texts of these columns on these lines: one row per column."""
        texts = np.concatenate([self._columns[col].texts for col in cols])
        offsets = np.cumsum([0] + [len(self._columns[col].texts) for col in cols[:-1]])
        return texts[np.array([self._codes[col][lines] for col in cols]).reshape(len(cols), -1) + offsets[:, None]]

    def first_cell_is(self, text: str) -> np.ndarray:
        """For each line, whether its first filled cell reads exactly ``text`` (judged per distinct text)."""
        found = np.zeros(self.size, dtype=bool)
        for col in np.unique(self.first_col).tolist():
            texts = self._columns[col].texts.tolist()
            # Normalise only texts holding the last character: a million line numbers cost no NFKC pass.
            same = np.array([text[-1] in t and _compact(t) == text for t in texts], dtype=bool)[self._codes[col]]
            found |= (self.first_col == col) & same
        return found

    def total_line(self, marker_cols: list[int]) -> int | None:
        """The first line whose first cell, 序号 or 摘要 says 合计: the declared total; notes follow it."""
        first_cols = np.unique(self.first_col).tolist()
        marks = {col: self._has_total_mark(col) for col in {*first_cols, *marker_cols}}
        marked = np.zeros(self.size, dtype=bool)
        for col in first_cols:
            marked |= (self.first_col == col) & marks[col]
        for col in marker_cols:
            marked |= marks[col]
        for line in np.flatnonzero(marked):
            cells = [self.first(line), *(self.text(col, line) for col in marker_cols)]
            if any(_TOTAL_MARK in text and _TOTAL.match(_compact(text)) for text in cells):
                return int(line)
        return None

    def _has_total_mark(self, col: int) -> np.ndarray:
        """For each line, whether column col's cell contains 计 (tested once per distinct text)."""
        texts = self._columns[col].texts.tolist()
        return np.array([_TOTAL_MARK in text for text in texts], dtype=bool)[self._codes[col]]


def _find_header(table: TextTable, layout: SheetLayout) -> tuple[int | None, dict[int, str]]:
    """The Excel row (among the first few) naming the most template columns, and column -> field."""
    best_row, best = None, {}
    for i in range(min(table.height, _HEADER_SEARCH_ROWS)):
        mapping: dict[int, str] = {}
        for col, text in enumerate(table.row(i)):
            column = layout.match(text) if text else None
            if column and column.field not in mapping.values():
                mapping[col] = column.field
        if len(mapping) > len(best):
            best_row, best = i + 1, mapping
            if len(best) == len(layout.columns):
                break  # every template column named: no row below can name more
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
    # Values sit in column B, beside their field's name.
    return ParsedSheet(layout, typed_name, [0], {f: [value] for f, value in values.items()}, headers=headers,
                       columns={f: 1 for f in values}, rows=rows)


def _read_table(book: Workbook, layout: SheetLayout, typed_name: str) -> ParsedSheet:
    table = book.text_table(typed_name)
    sheet = parse_table(table, layout, typed_name)
    if table.column_a_rounded and any(col == 0 and f != "seq" for f, col in sheet.columns.items()):
        # Column A holds a field other than the line numbers: its numbers must be read in full.
        sheet = parse_table(TextTable.from_grid(book.grid(typed_name)), layout, typed_name)
    return sheet


@dataclass
class SheetsRead:
    """What reading a package's workbook (and 经费支出.csv) gave, by template sheet name."""

    # The template sheets the package has, read or not: the workbook's, and 经费支出 when its CSV came (P003).
    found: set[str] = field(default_factory=set)
    sheets: dict[str, ParsedSheet] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # sheet that would not read -> its typed name
    # (Excel row, 1-based column) of each formula cell with no calculated value (S011).
    formulas_without_value: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # Every sheet's grid, in order, when reading built them anyway (a small workbook): the feedback's copy
    # of the unit's workbook is made from them, without opening it again (Workbook.all_grids).
    grids: dict[str, Grid] | None = None


def read_sheets(workbook: bytes, expenses_csv: bytes | None = None, *, whole: bool = True) -> SheetsRead:
    """Every template sheet the workbook has, parsed, and every sheet's grid where reading builds them;
    经费支出.csv stands in for a missing sheet. A sheet a reader cannot read is named in ``unreadable`` (P001),
    whichever library raised: the others still count. ``whole=False`` reads 基本信息 only (the project a
    package names), for a package whose whole reading a worker could not finish.
    Raises UnreadableWorkbook when the workbook itself will not open."""
    book = Workbook(workbook)
    read = SheetsRead()
    read.found = {layout.name for layout in LAYOUTS if book.find_sheet(layout.name) is not None}
    if expenses_csv is not None:
        read.found.add(EXPENSES.name)
    for layout in LAYOUTS if whole else (BASIC_INFO,):
        typed_name = book.find_sheet(layout.name)
        if typed_name is None:
            continue
        try:
            read.sheets[layout.name] = (parse_key_value(book.grid(typed_name), layout, typed_name)
                                        if layout.key_value else _read_table(book, layout, typed_name))
        except UnreadableWorkbook:
            read.unreadable[layout.name] = typed_name
            continue
        formulas = book.formulas_without_value(typed_name)
        if formulas:
            read.formulas_without_value[layout.name] = list(formulas)
    if not whole:
        return read
    if EXPENSES.name not in read.sheets and EXPENSES.name not in read.unreadable and expenses_csv is not None:
        try:
            read.sheets[EXPENSES.name] = parse_table(csv_text_table(expenses_csv), EXPENSES, EXPENSES_CSV_NAME)
        except ValueError:  # pandas' ParserError and UnicodeDecodeError are ValueErrors
            read.unreadable[EXPENSES.name] = EXPENSES_CSV_NAME
    read.grids = book.all_grids() if book.builds_grids else None
    return read


# What a stored reading depends on: the code that reads and parses sheets, and the libraries that read the
# cells and make the frames (a pickle of pandas frames is read back by the pandas that wrote it).
def _reader_key() -> str:
    libraries = [version(name) for name in ("python-calamine", "fastexcel", "pyarrow", "pandas", "numpy")]
    return digest(code_hash(workbook_code, xlsx_census, layout_code, sys.modules[__name__]), libraries)


READER_KEY = _reader_key()


class Reading(NamedTuple):
    """What is kept of a package's reading (package_reading): its sheets (dump_reading), its grids
    (dump_grids) and how many rows its sheets hold, which is what validating it costs in memory."""

    sheets: bytes
    grids: bytes | None
    rows: int

    @property
    def size(self) -> int:
        return len(self.sheets) + len(self.grids or b"")


def reading_of(read: SheetsRead) -> Reading:
    return Reading(dump_reading(read), dump_grids(read), sum(len(sheet.excel_rows) for sheet in read.sheets.values()))


def dump_reading(read: SheetsRead) -> bytes:
    """A package's reading as bytes to keep (package_reading), so that later stages never open the unit's
    file again: each sheet's parse (its layout by name), the unreadable sheets and the formulas without a
    value. Pickled (lists of texts, as they travel back from a worker; pickle keeps a text repeated down
    a column once) and compressed (_packed): a unit's texts repeat, and shrink ~5x."""
    sheets = {name: (sheet.typed_name, sheet.excel_rows, sheet.cells, sheet.headers, sheet.columns, sheet.header_row,
                     sheet.rows, sheet.total) for name, sheet in read.sheets.items()}
    return _packed((read.found, sheets, read.unreadable, read.formulas_without_value))


def load_reading(data: bytes) -> SheetsRead:
    """The SheetsRead that dump_reading kept (made by this code: see READER_KEY), without its grids (they
    are kept apart, for the feedback's copy: load_grids)."""
    found, sheets, unreadable, formulas = _unpacked(data)
    layouts = {layout.name: layout for layout in LAYOUTS}
    return SheetsRead(found, {name: ParsedSheet(layouts[name], *fields) for name, fields in sheets.items()},
                      unreadable, formulas)


def dump_grids(read: SheetsRead) -> bytes | None:
    """The reading's grids as bytes to keep (package_reading.grids), or None when it has none."""
    return None if read.grids is None else _packed(read.grids)


def load_grids(data: bytes) -> dict[str, Grid]:
    return _unpacked(data)


# Zstandard at its fastest level, through pyarrow's codec (no library more): of a 200-line package's pickles
# (35 KiB), it packs in 63 µs and unpacks in 33 where zlib's fastest took 200 and 92, and packs smaller
# (6.0 against 6.7 KiB). Every version is packed at intake and unpacked at validation: ~1.7 s of CPU
# over 5,000 packages. pyarrow needs the unpacked size to unpack: it leads, as 8 little-endian bytes.
_CODEC = pa.Codec("zstd", compression_level=1)
_SIZE = struct.Struct("<Q")


def _packed(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _SIZE.pack(len(data)) + _CODEC.compress(data, asbytes=True)


def _unpacked(data: bytes):
    (size,) = _SIZE.unpack_from(data)
    return pickle.loads(_CODEC.decompress(memoryview(data)[_SIZE.size:], decompressed_size=size, asbytes=True))
