"""What an .xlsx/.xlsm says about its sheets before a reader builds them: stray far cells and formulas
without a calculated value.

calamine builds a sheet as one rectangle from its first to its last cell. A single stray value at
XFD1048576 (Ctrl+End and typing, or a tool writing a wrong cell) makes that rectangle 16,384 × 1,048,576
cells: 512 GiB, and the process aborts. So the sheet XML is looked at first (a byte scan, no XML tree):
when its cells reach far, the cells outside the table's region are dropped from a copy of the workbook
given to the reader. The unit's file itself is never changed.

The table's region: the columns used in the first rows (where every template's header sits) and the rows
up to the first long run of empty rows. Template sheets have a handful of columns and no gap of thousands
of rows, so nothing a unit typed into the table is ever dropped.

Files written by tools rather than Excel/WPS may hold formulas without a cached value (`<f>` with no
`<v>`); every reader then sees an empty cell. Those cells are listed so that the unit hears "recalculate
and save" (S011) rather than "empty" or "not allowed".
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from array import array
from dataclasses import dataclass, field
from xml.etree import ElementTree

import numpy as np

# A cell's reference: letters then digits, in the `r` attribute of a <c> (rows carry digits only).
_CELL_REF = re.compile(rb'<(?:[A-Za-z]+:)?c\b[^>]*?\br="([A-Z]{1,3})([0-9]+)"')
# A cell with its content (or self-closed), for dropping it or reading its formula.
_CELL = re.compile(rb'<((?:[A-Za-z]+:)?)c\b[^>]*?\br="([A-Z]{1,3})([0-9]+)"[^>]*?(?:/>|>(.*?)</\1c>)', re.DOTALL)
# Column AA (27) or beyond: wider than any template. The literal prefix (an attribute follows a space)
# lets the scan skip ahead instead of trying every byte: ~10x faster on a 30 MB sheet.
_WIDE_COLUMN = re.compile(rb' r="[A-Z]{2,3}[0-9]')
_LAST_ROW = re.compile(rb'<(?:[A-Za-z]+:)?row\b[^>]*?\br="([0-9]+)"')
# A row holding a cell (its start tag, then its first <c>). Starting at the literal "row" lets the scan skip
# ahead (0.27 s on a 312 MB sheet of a million rows; 1.2 s with the optional namespace prefix in front).
# Outside a row start tag the match would need text followed by ">", then a <c> tag: text in a sheet
# always ends with a closing tag, so only rows match.
_ROW_WITH_CELLS = re.compile(rb'row\b[^>]*?\br="([0-9]+)"[^>]*>\s*<(?:[A-Za-z]+:)?c[\s>/]')
_DIMENSION = re.compile(rb'<(?:[A-Za-z]+:)?dimension\b[^>]*/>')
_FORMULA = re.compile(rb'<(?:[A-Za-z]+:)?f[\s>/]')
_VALUE = re.compile(rb'<(?:[A-Za-z]+:)?v>[^<]')
# Every sheet with a formula has an element ending "f>" (<f>, </f>, </x:f>): a shared formula's self-closed
# followers come with their first cell's <f …>…</f>. Searched by a compiled pattern: re skips ahead to each
# "f", where `b"f>" in xml` stops at every ">" of the sheet (9 against 26 ms on a 30 MB sheet).
_FORMULA_END = re.compile(rb"f>")

# A sheet whose cells may span more than this many rows × columns is looked at (8 columns of a million
# rows is fine; 16,384 columns of them is not).
_SCAN_FROM_CELLS = 20_000_000
# Once looked at, the stray cells of a sheet spanning more than this are dropped: a reader builds every
# cell of the span (a stray value at A1048576 below 200 lines made 8 million cells: 4 s and 400 MiB for
# one package; S1048576, 6 s and 850 MiB, near the worker's limit).
_TRIM_FROM_CELLS = 2_000_000
_HEADER_ROWS = 10  # assets/sheets.py looks for a table's header in the first rows
_MIN_COLUMNS = 26  # a table keeps at least columns A..Z, headers or not
_ROW_GAP = 10_000  # empty rows after which anything further down is stray
_ROW_CEILING = 2**62  # a row number beyond any sheet's counts as this far down (no int64 overflow)

_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


@dataclass(frozen=True)
class SheetCensus:
    dropped_cells: int = 0  # stray cells left out of the copy the reader gets
    formulas_without_value: tuple[tuple[int, int], ...] = ()  # (Excel row, 1-based column)


class Census:
    """A workbook's sheets looked at one by one, when a reader is about to build them (a sheet nobody reads
    is never inflated). ``data`` is the workbook to give the reader: the unit's bytes, or a copy without
    the stray cells of the sheets looked at so far."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._sheets: dict[str, SheetCensus] = {}
        try:
            self._archive: zipfile.ZipFile | None = zipfile.ZipFile(io.BytesIO(data))
            self._members = sheet_members(self._archive)
        except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, ValueError):
            self._archive, self._members = None, {}  # not Open XML (.xls): the reader reads or refuses it

    def sheet(self, name: str) -> SheetCensus:
        if name not in self._sheets:
            self._sheets[name] = self._inspect(name)
        return self._sheets[name]

    def _inspect(self, name: str) -> SheetCensus:
        member = self._members.get(name)
        if member is None or self._archive is None:
            return SheetCensus()
        try:
            xml = self._archive.read(member)
        except (KeyError, zipfile.BadZipFile, ValueError, OSError, EOFError):
            return SheetCensus()  # the reader will say what is wrong with it
        trimmed, dropped = _trim(xml)
        if dropped:
            self.data = _rewritten(self._archive, member, trimmed)
            self._archive = zipfile.ZipFile(io.BytesIO(self.data))
        formulas = _formulas_without_value(trimmed) if _may_hold_formulas(trimmed) else []
        return SheetCensus(dropped, tuple(formulas))


def column_number(letters: bytes) -> int:
    """b"A" -> 1, b"XFD" -> 16384."""
    n = 0
    for letter in letters:
        n = n * 26 + letter - 64
    return n


def sheet_members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its XML member, from xl/workbook.xml and its relationships."""
    book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{_NS_PKG_REL}Relationship")}
    members = {}
    for sheet in book.iter(f"{_NS_MAIN}sheet"):
        target = targets.get(sheet.get(f"{_NS_REL}id"), "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        if path in archive.NameToInfo:
            members[sheet.get("name", "")] = path
    return members


def _trim(xml: bytes) -> tuple[bytes, int]:
    """The sheet without its cells outside the table's region, and how many were dropped (0: unchanged)."""
    last_rows = _LAST_ROW.findall(xml[-4096:]) or _LAST_ROW.findall(xml)
    last_row = int(last_rows[-1]) if last_rows else 0
    narrow = _WIDE_COLUMN.search(xml) is None
    if narrow and last_row * _MIN_COLUMNS <= _SCAN_FROM_CELLS:
        return xml, 0  # cheap verdict for nearly every sheet: template-wide, not that many rows
    if narrow and _gap_after(np.sort(_row_numbers(_ROW_WITH_CELLS.findall(xml)))) is None:
        # A long sheet of template width with no long run of empty rows: nothing lies outside the table's
        # region, and looking at its rows costs a fraction of looking at its cells (0.5 against 13 s for
        # a million lines of 8 cells).
        return xml, 0
    cols, rows = _cell_refs(xml)
    if not len(cols):
        return xml, 0
    header_columns = cols[rows <= _HEADER_ROWS]
    max_col = max(_MIN_COLUMNS, int(header_columns.max()) if len(header_columns) else 0)
    max_row = _last_row_before_gap(np.unique(rows[cols <= max_col]))
    if int(cols.max()) * int(rows.max()) <= _TRIM_FROM_CELLS:
        return xml, 0
    if not ((cols > max_col) | (rows > max_row)).any():
        return xml, 0  # wide, but nothing outside the region: the copy would be the sheet itself
    dropped = 0

    def keep(match: re.Match) -> bytes:
        nonlocal dropped
        if column_number(match.group(2)) <= max_col and int(match.group(3)) <= max_row:
            return match.group(0)
        dropped += 1
        return b""

    trimmed = _CELL.sub(keep, _DIMENSION.sub(b"", xml, count=1))
    return trimmed, dropped


def _row_numbers(digits: list[bytes] | np.ndarray) -> np.ndarray:
    """Row numbers as int64. Read through float64, which cannot overflow: a row number past any sheet's
    (Excel stops at 1,048,576; a tool may write r="1e20"'s digits) counts as _ROW_CEILING, far down."""
    return np.array(digits, dtype=bytes).astype(np.float64).clip(max=_ROW_CEILING).astype(np.int64)


def _gap_after(rows: np.ndarray) -> int | None:
    """Index of the last row before the first run of more than _ROW_GAP empty rows (rows sorted), if any."""
    gaps = np.flatnonzero(np.diff(rows) > _ROW_GAP)
    return int(gaps[0]) if len(gaps) else None


def _last_row_before_gap(rows: np.ndarray) -> int:
    """The table's last row: the last before the first long run of empty rows, else the last (rows sorted)."""
    if not len(rows):
        return 0
    gap = _gap_after(rows)
    return int(rows[-1 if gap is None else gap])


def _cell_refs(xml: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's 1-based column and Excel row, as two arrays: 10 bytes a cell. A list of (column, row)
    tuples (findall) took ~200, and made a legitimate 300,000-line sheet of 30 columns a P008 (1.7 GiB).
    Taking it a slice at a time with findall was no better: the tuples' freed memory stays in the
    process, and the reader that came next no longer fitted in the worker's limit."""
    cols, rows = array("H"), array("q")
    numbers: dict[bytes, int] = {}  # a sheet has few distinct columns
    for match in _CELL_REF.finditer(xml):
        letters = match[1]
        col = numbers.get(letters)
        if col is None:
            col = numbers[letters] = column_number(letters)
        cols.append(col)
        rows.append(min(int(match[2]), _ROW_CEILING))
    return np.frombuffer(cols, dtype=np.uint16), np.frombuffer(rows, dtype=np.int64)


def _may_hold_formulas(xml: bytes) -> bool:
    """A cheap look for a formula element (<f>, <f …>, or with a namespace prefix) before the cell scan."""
    return _FORMULA_END.search(xml) is not None and _FORMULA.search(xml) is not None


def _formulas_without_value(xml: bytes) -> list[tuple[int, int]]:
    cells = []
    for match in _CELL.finditer(xml):
        body = match.group(4) or b""
        if _FORMULA.search(body) and not _VALUE.search(body):
            cells.append((int(match.group(3)), column_number(match.group(2))))
    return cells


def _rewritten(archive: zipfile.ZipFile, member: str, xml: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in archive.infolist():
            copy.writestr(info.filename, xml if info.filename == member else archive.read(info))
    return out.getvalue()
