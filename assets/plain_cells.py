"""Plain cells written straight into a sheet's XML, among the cells xlsxwriter wrote there.

The feedback's copy of a unit's workbook is ~1,750 cells a project, nearly all texts and numbers without
a format. xlsxwriter spends ~8 µs on each (the write call's checks, the shared-strings table, then its
XML writer), and a year's copies were most of the exports' time. Here a plain cell is one f-string: an
inline string (`t="inlineStr"`, which Excel, LibreOffice, WPS, openpyxl and calamine all read) or a
number or boolean, under 1 µs. xlsxwriter still writes every cell with a format (a date, a marked cell)
and everything else of the workbook (comments, widths, styles); its <c> elements are kept as it wrote
them, and the plain cells go in among them, each row in column order, as SpreadsheetML requires.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field

from adapters.xlsx_census import column_number, sheet_members
from assets.xlsx_archive import Member, archive

# Excel keeps at most this many UTF-16 code units in a cell (xlsxwriter cuts a longer string there too).
_LONGEST_TEXT = 32_767
# A literal _xHHHH_ is an escaped character to Excel, and xlsxwriter escapes its underscore in turn
# (_x005F_). Readers undo that in the shared strings, but not all of them in an inline string (openpyxl
# does not), so such a text is left to xlsxwriter; so is one with a carriage return, which XML text
# would turn into a line feed (xlsxwriter writes it as _x000D_).
_ESCAPED_CHARACTER = re.compile(r"_x[0-9A-Fa-f]{4}_")
_XML_SPECIAL = re.compile(r"[&<>]")
_XML_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SHEET_DATA = re.compile(rb"<sheetData/>|<sheetData>(.*?)</sheetData>", re.S)
_CELL = re.compile(rb'<c r="([A-Z]+)([0-9]+)"[^>]*?(?:/>|>.*?</c>)', re.S)
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"/>')
_STYLE = re.compile(rb' s="([0-9]+)"')
# Excel's serial day numbers count from 1899-12-31 and hold a 29 February 1900 that never was: a date
# from 1900-03-01 on is one more than the days since then (before it, xlsxwriter writes the date).
_DAY_ZERO = dt.date(1899, 12, 31).toordinal()
_FIRST_SHIFTED_DAY = 61


def _letters(column: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@dataclass
class PlainCells:
    """One sheet's plain cells, by row (from 0, as xlsxwriter counts): each a (column, <c> element)."""

    rows: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    # Dates (row, column, serial day), shown as the cell at date_like is (one xlsxwriter wrote with the
    # date format, whose style number is known only in the file it writes).
    dates: list[tuple[int, int, int]] = field(default_factory=list)
    date_like: tuple[int, int] | None = None
    _refs: list[str] = field(default_factory=list)  # column letters, by column from 0

    def _ref(self, row: int, column: int) -> str:
        while len(self._refs) <= column:
            self._refs.append(_letters(len(self._refs)))
        return f"{self._refs[column]}{row + 1}"

    def text(self, row: int, column: int, value: str) -> bool:
        """Put the text in, unless it is one for xlsxwriter to write (returns False then)."""
        if "_x" in value and _ESCAPED_CHARACTER.search(value) or "\r" in value:
            return False
        if len(value) > _LONGEST_TEXT // 2:  # may be too long: a character takes one or two UTF-16 units
            value = value.encode("utf-16-le")[:2 * _LONGEST_TEXT].decode("utf-16-le", errors="ignore")
        if "&" in value or "<" in value or ">" in value:
            value = _XML_SPECIAL.sub(lambda m: _XML_ENTITY[m[0]], value)
        space = ' xml:space="preserve"' if value[:1].isspace() or value[-1:].isspace() else ""
        self._put(row, column, f'<c r="{self._ref(row, column)}" t="inlineStr"><is><t{space}>{value}</t></is></c>')
        return True

    def number(self, row: int, column: int, value: int | float) -> None:
        """A finite number (Excel holds no NaN or infinity: see feedback._copy_value)."""
        # repr: the shortest text that reads back as the same float (xlsxwriter's %.16G can lose the last digit).
        self._put(row, column, f'<c r="{self._ref(row, column)}"><v>{value!r}</v></c>')

    def date(self, row: int, column: int, value: dt.date) -> bool:
        """Put a date in, unless xlsxwriter is to write it (returns False then): the first one, which the
        others are shown like, and any before 1900-03-01."""
        serial = value.toordinal() - _DAY_ZERO + 1
        if self.date_like is None:
            self.date_like = (row, column)
            return False
        if serial < _FIRST_SHIFTED_DAY:
            return False
        self.dates.append((row, column, serial))
        return True

    def boolean(self, row: int, column: int, value: bool) -> None:
        self._put(row, column, f'<c r="{self._ref(row, column)}" t="b"><v>{int(value)}</v></c>')

    def _put(self, row: int, column: int, element: str) -> None:
        cells = self.rows.get(row)
        if cells is None:
            self.rows[row] = [(column, element)]
        else:
            cells.append((column, element))


def with_plain_cells(book: bytes, sheets: dict[str, PlainCells]) -> bytes:
    """The workbook xlsxwriter wrote, its sheets (by name) holding their plain cells too. The same inputs
    give the same bytes (members stamped as xlsxwriter's are: assets/xlsx_archive.py)."""
    if not any(cells.rows or cells.dates for cells in sheets.values()):
        return book
    with zipfile.ZipFile(io.BytesIO(book)) as archived:
        members = sheet_members(archived)
        filled = {members[name]: cells for name, cells in sheets.items() if cells.rows or cells.dates}
        return archive(Member.of(info.filename, _merged(archived.read(info), filled[info.filename]))
                       if info.filename in filled else Member.taken_from(book, info) for info in archived.infolist())


def _merged(xml: bytes, plain: PlainCells) -> bytes:
    """The sheet's XML with the plain cells among xlsxwriter's (a cell of both: xlsxwriter's wins, since
    it carries the mark); its rows rewritten without xlsxwriter's `spans` (an optional hint, which the
    plain cells would make wrong) and its dimension widened to cover them."""
    found = _SHEET_DATA.search(xml)
    theirs: dict[int, list[tuple[int, str]]] = {}
    for cell in _CELL.finditer(found[1] or b""):
        theirs.setdefault(int(cell[2]) - 1, []).append((column_number(cell[1]) - 1, cell[0].decode("utf-8")))
    ours = plain.rows
    if plain.dates:
        row, column = plain.date_like
        style = _STYLE.search(dict(theirs[row])[column].encode())[1].decode()
        ours = {row: list(cells) for row, cells in ours.items()}
        for row, column, serial in plain.dates:
            ours.setdefault(row, []).append((column, f'<c r="{plain._ref(row, column)}" s="{style}"><v>{serial}</v></c>'))
    rows: dict[int, list[str]] = {}
    for row in sorted(ours.keys() | theirs.keys()):
        cells = dict(sorted(ours.get(row, ())))
        cells.update(theirs.get(row, ()))
        rows[row] = [cells[c] for c in sorted(cells)]
    body = "".join(f'<row r="{row + 1}">{"".join(cells)}</row>' for row, cells in rows.items())
    columns = [c for cells in (*ours.values(), *theirs.values()) for c, _ in cells]
    dimension = f'<dimension ref="{_letters(min(columns))}{min(rows) + 1}:{_letters(max(columns))}{max(rows) + 1}"/>'
    return b"".join([_DIMENSION.sub(dimension.encode(), xml[:found.start()], count=1),
                     b"<sheetData>", body.encode("utf-8"), b"</sheetData>", xml[found.end():]])
