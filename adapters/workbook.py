"""Reading a unit's workbook or its 经费支出.csv into the texts of its cells (cell_text).

Two readers over one Rust library (calamine):
- python-calamine gives every cell as a Python value (`grid`), dates as `datetime.date`, so nothing here
  guesses at Excel serial numbers. It is the reference, and reads small workbooks, key-value sheets and
  every sheet fastexcel cannot promise (a column mixing numbers and text, say).
- fastexcel reads a sheet into typed Arrow columns without a Python object per cell: about twice as fast
  on a big sheet. A big workbook's table sheets are read with it whenever its columns provably give back
  the grid's texts (Workbook.typed_text_table).
Grids and text tables keep absolute positions: grid[i][j] is Excel row i+1, column j+1.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import fastexcel
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from python_calamine import CalamineWorkbook

from adapters.xlsx_census import Census

Grid = list[list[object]]

# Arrow's buffers come from the C library's malloc, as the rest of the process's do. Its default (mimalloc)
# reserves address space in large segments, and under a package worker's RLIMIT_AS it aborts the worker on a
# small allocation rather than report it, so a normal CSV would cost its package a P008.
pa.set_memory_pool(pa.system_memory_pool())


class UnreadableWorkbook(Exception):
    """The workbook, or one of its sheets, will not read (corrupt, encrypted, not really a spreadsheet)."""

    def __init__(self, detail: str, sheet: str = "") -> None:
        super().__init__(f"{sheet}: {detail}" if sheet else detail)
        self.sheet = sheet


def _reader_error(exc: BaseException) -> bool:
    """Whether an exception came from reading the file. The Rust readers raise their own error types, and a
    panic inside them arrives as pyo3's PanicException, which derives from BaseException."""
    return not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError))


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


@dataclass(frozen=True)
class TextColumn:
    """The cell texts of one column: texts[codes[i]] is row i's. A column that repeats its dates, amounts
    and categories lists each distinct text once, so that work per text is not work per cell."""

    texts: np.ndarray  # object array of str; "" is a blank cell
    codes: np.ndarray  # int array, one per row


@dataclass(frozen=True)
class TextTable:
    """A sheet's cells as text: columns[j] is Excel column j+1, its row i Excel row i+1."""

    columns: list[TextColumn]
    height: int
    # Read by fastexcel with column A as text, where it prints a number to 9 decimals: a number within
    # 5e-10 of an integer (a formula's rounding noise) would read as that integer there. Harmless for line
    # numbers, the one field template sheets have in column A; the caller re-reads any other from the grid.
    column_a_rounded: bool = False

    @classmethod
    def from_grid(cls, grid: Grid) -> TextTable:
        width = max((len(row) for row in grid), default=0)
        if any(len(row) < width for row in grid):  # python-calamine's rows are all as wide; hand-made ones not
            grid = [row + [""] * (width - len(row)) for row in grid]
        return cls([_text_column(column) for column in zip(*grid)], len(grid))

    def row(self, i: int) -> list[str]:
        return [column.texts[column.codes[i]] for column in self.columns]


# Whether a column's values nearly all differ is judged on its first cells (SAMPLE of them). Work done
# once per distinct value pays only where they repeat; hashing a column of vouchers costs more than it saves.
SAMPLE = 1000


def nearly_all_differ(distinct: int, cells: int) -> bool:
    return 2 * distinct > cells


def _text_column(values: Sequence[object]) -> TextColumn:
    """cell_text of each value (of a grid's or a CSV's column). A long column that repeats its values (dates,
    categories, amounts) formats each distinct one once, unless it holds booleans among numbers: True and
    1.0 are one value to a hash table."""
    sample = values[:SAMPLE]
    if len(values) >= SAMPLE and not nearly_all_differ(len(set(sample)), len(sample)):
        kinds = set(map(type, values))
        if not (bool in kinds and kinds & {int, float}):
            codes, distinct = pd.factorize(np.array(values, dtype=object))
            return TextColumn(np.array([cell_text(value) for value in distinct.tolist()], dtype=object), codes)
    # str is nearly every cell (python-calamine gives "" for a blank one): strip it without the call.
    texts = [v.strip() if type(v) is str else cell_text(v) for v in values]
    return TextColumn(np.array(texts, dtype=object), np.arange(len(values)))


# From this size on, a workbook's table sheets are read through fastexcel. Below it they are small, and
# python-calamine's Python objects cost less than Arrow's fixed cost per sheet and column (a package with
# 200 expense lines is under 20 KiB; 256 KiB holds some 6,000).
_TYPED_READING_FROM = 256 * 1024


class Workbook:
    def __init__(self, data: bytes) -> None:
        # Each sheet is looked at before a reader builds it; the readers get a copy without stray far cells
        # (the unit's bytes are kept as they are).
        self._census = Census(data)
        self._opened_on = self._census.data  # the bytes the readers below were opened on
        self._book: CalamineWorkbook | None = None
        self._reader: fastexcel.ExcelReader | None = None
        self._typed_reading = len(data) >= _TYPED_READING_FROM
        self._grids: dict[str, Grid] = {}  # a small workbook's grids, built once (see all_grids)
        try:  # the reader the workbook is mostly read with opens it now, so that a broken file fails here
            opened = self._fastexcel() if self._typed_reading else self._calamine()
        except BaseException as exc:
            if not _reader_error(exc):
                raise
            raise UnreadableWorkbook(str(exc)) from exc
        # Sheet names as typed, found by their normalised form (units add spaces or full-width forms).
        self.sheet_names: list[str] = list(opened.sheet_names)
        self._by_key = {sheet_key(name): name for name in self.sheet_names}

    def find_sheet(self, name: str) -> str | None:
        return self._by_key.get(sheet_key(name))

    def formulas_without_value(self, typed_name: str) -> tuple[tuple[int, int], ...]:
        """(Excel row, 1-based column) of each formula cell of the sheet with no calculated value (S011)."""
        return self._census.sheet(typed_name).formulas_without_value

    def _looked_at(self, typed_name: str) -> None:
        self._census.sheet(typed_name)
        if self._census.data is not self._opened_on:  # stray cells dropped: reopen on the copy without them
            self._book = self._reader = None
            self._opened_on = self._census.data

    def grid(self, typed_name: str) -> Grid:
        if typed_name in self._grids:
            return self._grids[typed_name]
        self._looked_at(typed_name)
        try:
            grid = self._calamine().get_sheet_by_name(typed_name).to_python(skip_empty_area=False)
        except BaseException as exc:
            if not _reader_error(exc):
                raise
            raise UnreadableWorkbook(str(exc), typed_name) from exc
        if self.builds_grids:  # a big workbook's grid is built only when fastexcel cannot read a sheet
            self._grids[typed_name] = grid
        return grid

    @property
    def builds_grids(self) -> bool:
        """Whether reading this workbook builds its sheets' grids anyway (a small one: calamine's grid is
        what it is read from); a big one is read as typed columns, and a grid costs a reading of its own."""
        return not self._typed_reading

    def all_grids(self) -> dict[str, Grid] | None:
        """Every sheet's grid, in the workbook's order, for a copy of the unit's workbook (the feedback's);
        None when a sheet will not read."""
        try:
            return {name: self.grid(name) for name in self.sheet_names}
        except UnreadableWorkbook:
            return None

    def text_table(self, typed_name: str) -> TextTable:
        """The sheet's cell texts: through fastexcel in a big workbook when it can promise them, else from
        the grid."""
        typed = self.typed_text_table(typed_name) if self._typed_reading else None
        return typed if typed is not None else TextTable.from_grid(self.grid(typed_name))

    def typed_text_table(self, typed_name: str) -> TextTable | None:
        """The sheet's cell texts from fastexcel's typed columns; None unless they are the grid's.

        Every column must hold one kind of cell ("strict": among texts, fastexcel would print numbers to 9
        decimals and dates its own way), except column A, read as text: that is where the 合计 label and
        the notes sit, under the line numbers. Row 1 comes back as the column names: the text of its text
        cells, which is all a header is matched on (row 1 is never a data row). A formula's error reads
        blank, as in the grid; so would two things Excel never writes, which the grid would show: a date
        past the year 262,143 and a malformed ISO date (a cell of type "d")."""
        self._looked_at(typed_name)
        found: list[fastexcel.ColumnInfoNoDtype] = []

        def take(column: fastexcel.ColumnInfoNoDtype) -> bool:  # all of them: noting where each one sits
            found.append(column)
            return True

        try:
            batch = self._fastexcel().load_sheet(typed_name, header_row=0, skip_rows=0, schema_sample_rows=None,
                                                 dtype_coercion="strict", dtypes={0: "string"}, use_columns=take,
                                                 eager=True)
        except BaseException as exc:  # a column mixing kinds of cells, or a cell calamine cannot read
            if not _reader_error(exc):
                raise
            return None  # the grid reads it, or says why it cannot
        by_column = {info.absolute_index: (info, batch.column(i)) for i, info in enumerate(found)}
        columns = []
        for j in range(max(by_column, default=-1) + 1):
            info, cells = by_column.get(j, (None, pa.nulls(batch.num_rows)))  # left of the data: blank
            header = "" if info is None or info.name == f"__UNNAMED__{info.index}" else info.name.strip()
            column = _typed_column(header, cells, read_as_text=j == 0)
            if column is None:
                return None
            columns.append(column)
        return TextTable(columns, batch.num_rows + 1 if columns else 0, column_a_rounded=0 in by_column)

    def _calamine(self) -> CalamineWorkbook:
        if self._book is None:
            self._book = CalamineWorkbook.from_filelike(io.BytesIO(self._opened_on))
        return self._book

    def _fastexcel(self) -> fastexcel.ExcelReader:
        if self._reader is None:
            self._reader = fastexcel.read_excel(self._opened_on)
        return self._reader


# What fastexcel writes, in a column read as text, for a cell that is not text: a number with decimals
# (it keeps 9, where cell_text keeps them all), -0, a date, datetime or time, a boolean. Text that merely
# looks like one of these sends the sheet to the grid too, which is slower but exact.
_FORMATTED_CELL = r"^(-?\d+\.\d+|-0|true|false|[+-]?\d{4,}-\d\d-\d\d.*|\d\d:\d\d.*)$"
# python-calamine shows a serial number below 1 as a time of day (a moment of 1899-12-31, or of 1904-01-01
# in a workbook counting from 1904) and a date past 9999 as the number itself (numpy gives those as int).
_FIRST_DATE_SHOWN = dt.datetime(1904, 1, 2)


def _typed_column(header: str, cells: pa.Array, *, read_as_text: bool) -> TextColumn | None:
    """Row 1's text over a typed column's cell texts; None where they cannot be promised."""
    kind = cells.type
    if pa.types.is_string(kind):
        found = _string_texts(cells, read_as_text=read_as_text)
    elif pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_timestamp(kind):
        found = _value_texts(cells)
    elif pa.types.is_null(kind):
        found = np.array([""], dtype=object), np.zeros(len(cells), dtype=np.int64)
    else:
        return None  # integers, ISO dates, durations: other formats than xlsx, or rare enough for the grid
    if found is None:
        return None
    texts, codes = found
    return TextColumn(np.append(texts, header), np.append(len(texts), codes))


def _string_texts(cells: pa.Array, *, read_as_text: bool) -> tuple[np.ndarray, np.ndarray] | None:
    cells = pc.utf8_trim_whitespace(cells).fill_null("")  # exactly what str.strip() removes (see tests)
    sample = cells.slice(0, SAMPLE)
    if nearly_all_differ(len(sample.dictionary_encode().dictionary), len(sample)):
        distinct, codes = cells, np.arange(len(cells))  # voucher or line numbers: nothing to share
    else:
        encoded = cells.dictionary_encode()
        distinct, codes = encoded.dictionary, encoded.indices.to_numpy()
    if read_as_text and pc.any(pc.match_substring_regex(distinct, _FORMATTED_CELL)).as_py():
        return None
    return distinct.to_numpy(zero_copy_only=False), codes


def _value_texts(cells: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """Each distinct value formatted once, from the Python value python-calamine gives (float, bool,
    datetime to the millisecond, as calamine rounds it for both)."""
    encoded = cells.dictionary_encode()
    values = encoded.dictionary.to_numpy(zero_copy_only=False).tolist()
    if pa.types.is_timestamp(cells.type) and not all(isinstance(v, dt.datetime) and v >= _FIRST_DATE_SHOWN
                                                     for v in values):
        return None
    texts = np.array([cell_text(value) for value in values] + [""], dtype=object)
    blank = len(values)  # a blank cell has no code: it takes the "" after the values
    codes = encoded.indices.fill_null(blank) if encoded.indices.null_count else encoded.indices
    return texts, codes.to_numpy()


def sheet_key(name: str) -> str:
    return "".join(unicodedata.normalize("NFKC", name).split())


def decode_csv(data: bytes) -> str:
    """经费支出.csv comes in UTF-8, UTF-8 with BOM, or GBK/GB18030 (Excel on Chinese Windows)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def csv_text_table(data: bytes) -> TextTable:
    """经费支出.csv as pandas reads it (every field text, a blank line a row of blanks, a short row padded).

    Arrow's reader (C++, no Python object per field) reads the usual file, a UTF-8 rectangle, about five
    times faster, straight from the bytes (it checks they are UTF-8). It refuses a blank or short row and
    any other encoding, and such a file is read by pandas, whose reading is the reference
    (tests/test_sheets.py holds the two to the same texts)."""
    try:
        table = pa_csv.read_csv(io.BytesIO(data.removeprefix(codecs.BOM_UTF8)), read_options=_CSV_READ,
                                parse_options=_CSV_PARSE, convert_options=_CSV_CONVERT)
    except pa.ArrowInvalid:
        table = None
    if table is None or not all(pa.types.is_string(kind) for kind in table.schema.types):  # or wider than 64
        return pandas_csv_text_table(decode_csv(data))
    return TextTable([TextColumn(*_string_texts(cells.combine_chunks(), read_as_text=False)) for cells in table.columns],
                     table.num_rows)


def pandas_csv_text_table(text: str) -> TextTable:
    """The reference reading of 经费支出.csv (csv_text_table's, for the files Arrow refuses)."""
    frame = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False, skip_blank_lines=False)
    return TextTable([_text_column(frame[j].tolist()) for j in frame.columns], len(frame))


# The unit's first line is data like any other (the header is found later); quoted fields may hold newlines.
# One thread: the file is read inside a package worker, one per core already.
_CSV_READ = pa_csv.ReadOptions(autogenerate_column_names=True, use_threads=False)
_CSV_PARSE = pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
# Every column as text, by the names arrow generates (f0, f1, …); a wider file goes to pandas.
_CSV_CONVERT = pa_csv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(64)})
