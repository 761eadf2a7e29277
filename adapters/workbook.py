"""Reading a unit's workbook (python-calamine) or its 经费支出.csv into plain cell grids.

python-calamine (Rust) reads xlsx several times faster than openpyxl (see README for the figure)
and returns dates as `datetime.date`, so nothing here guesses at Excel serial numbers.
Grids keep absolute positions: grid[i][j] is Excel row i+1, column j+1.
"""

from __future__ import annotations

import io
import unicodedata

import pandas as pd
from python_calamine import CalamineWorkbook

Grid = list[list[object]]


class UnreadableWorkbook(Exception):
    """The workbook will not open (corrupt, encrypted, not really a spreadsheet)."""


class Workbook:
    def __init__(self, data: bytes) -> None:
        try:
            self._book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        except Exception as exc:  # calamine raises its own error types for every kind of broken file
            raise UnreadableWorkbook(str(exc)) from exc
        # Sheet names as typed, found by their normalised form (units add spaces or full-width forms).
        self.sheet_names: list[str] = list(self._book.sheet_names)
        self._by_key = {sheet_key(name): name for name in self.sheet_names}

    def find_sheet(self, name: str) -> str | None:
        return self._by_key.get(sheet_key(name))

    def grid(self, typed_name: str) -> Grid:
        try:
            return self._book.get_sheet_by_name(typed_name).to_python(skip_empty_area=False)
        except Exception as exc:
            raise UnreadableWorkbook(f"{typed_name}: {exc}") from exc


def sheet_key(name: str) -> str:
    return "".join(unicodedata.normalize("NFKC", name).split())


def decode_csv(data: bytes) -> str:
    """经费支出.csv comes in UTF-8, UTF-8 with BOM, or GBK/GB18030 (Excel on Chinese Windows)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def csv_grid(data: bytes) -> Grid:
    frame = pd.read_csv(
        io.StringIO(decode_csv(data)), header=None, dtype=str, keep_default_na=False, skip_blank_lines=False
    )
    return frame.values.tolist()
