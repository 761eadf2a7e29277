"""Plain cells written straight into a sheet's XML, among the cells xlsxwriter wrote there.

The feedback's copy of a unit's workbook is ~1,750 cells a project, and the summary workbook of a
national year some 200,000. xlsxwriter spends ~8 µs on each (the write call's checks, the shared-strings
table, then its XML writer); a year's copies were most of the exports' time, and the summary most of a
backfill's. Here a plain cell is one f-string: an inline string (`t="inlineStr"`, which Excel,
LibreOffice, WPS, openpyxl and calamine all read), a number or a boolean, under 1 µs; a table's column
goes in at once (PlainCells.write_column), without even a call per cell.

A cell with a format (borders, a date or money format, a fill) is shown like another cell of that format:
the first of them, which goes through xlsxwriter (PlainCells.write decides which is which). Its style
number exists only in the file xlsxwriter writes, so it is read there. xlsxwriter writes everything else
of the workbook (comments, widths, styles, page setup); its <c> elements are kept as it wrote them, and
the plain cells go in among them, each row in column order, as SpreadsheetML requires.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import zipfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from xlsxwriter.worksheet import Worksheet

from adapters.xlsx_census import column_number, sheet_members
from assets.xlsx_archive import Member, archive

# A cell, (row, column) from 0 as xlsxwriter counts them.
Place = tuple[int, int]

# Excel keeps at most this many UTF-16 code units in a cell (xlsxwriter cuts a longer string there too).
_LONGEST_TEXT = 32_767
# Texts left to xlsxwriter: a character XML text cannot hold, a control character or U+FFFE/U+FFFF
# (xlsxwriter writes it as _xHHHH_; a carriage return too, which XML would turn into a line feed), and
# a literal _xHHHH_, whose underscore xlsxwriter escapes in turn (_x005F_): readers undo that in the
# shared strings, but not all of them in an inline string (openpyxl does not).
_FOR_XLSXWRITER = re.compile(r"_x[0-9A-Fa-f]{4}_|[\x00-\x08\x0b-\x1f\ufffe\uffff]")
_XML_SPECIAL = re.compile(r"[&<>]")
_XML_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SHEET_DATA = re.compile(rb"<sheetData/>|<sheetData>(.*?)</sheetData>", re.S)
_CELL = re.compile(rb'<c r="([A-Z]+)([0-9]+)"[^>]*?(?:/>|>.*?</c>)', re.S)
_DIMENSION = re.compile(rb'<dimension ref="[^"]*"/>')
_STYLE = re.compile(r' s="[0-9]+"')
# Where a cell shown like another takes that one's style, a marker of that cell stands, NUL, a number, NUL
# (no text written here holds a NUL: control characters are xlsxwriter's); once xlsxwriter's file tells
# each such cell's style attribute, each marker is replaced in the sheet's XML at once.
_MARK = "\x00"
# Excel's serial day numbers count from 1899-12-31 and hold a 29 February 1900 that never was: a date
# from 1900-03-01 on is one more than the days since then (before it, xlsxwriter writes the date).
_DAY_ZERO = dt.date(1899, 12, 31).toordinal()
_FIRST_SHIFTED_DAY = 61
_EXCEL_COLUMNS = 16_384  # a sheet's width


def _letters(column: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def write_text(sheet: Worksheet, row: int, col: int, value: str, fmt=None) -> None:
    """write_string for any text. xlsxwriter writes a text of the form <r>…</r> into the file as its own
    rich-text XML, unescaped (that is how it keeps its rich strings): a unit's "<r>a<b</r>" made the
    workbook unreadable. Such a text goes as a rich string of three plain runs, which show the same
    characters (in the workbook's default font)."""
    if value.startswith("<r>") and value.endswith("</r>"):
        sheet.write_rich_string(row, col, value[:1], value[1:2], value[2:], *([fmt] if fmt is not None else []))
    else:
        sheet.write_string(row, col, value, fmt)


def write_value(sheet: Worksheet, row: int, col: int, value: object, fmt=None) -> None:
    """One value through xlsxwriter with its type kept: blank, text (always as text: write_text), boolean,
    number, or a date, time or duration."""
    if value is None or value == "":
        sheet.write_blank(row, col, None, fmt)
    elif isinstance(value, str):
        write_text(sheet, row, col, value, fmt)
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value, fmt)
    elif isinstance(value, (int, float)):
        sheet.write_number(row, col, value, fmt)
    else:
        sheet.write_datetime(row, col, value, fmt)


@dataclass
class PlainCells:
    """One sheet's plain cells, by row: each a (column, <c> element), the element holding the marker of
    the cell it is shown like, if any. Written through `write`, which puts each value where it goes."""

    rows: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # row -> (column, <c> element)
    _first: dict[Hashable, Place] = field(default_factory=dict)  # format -> its first cell
    _markers: dict[Place, str] = field(default_factory=dict)  # a cell others are shown like -> its marker
    _refs: list[str] = field(default_factory=list)  # column letters, by column from 0

    def write(self, sheet: Worksheet, row: int, column: int, value: object, fmt: Hashable | None = None) -> None:
        """One value with its type kept: a plain cell where one can hold it (shown like the first cell of
        its format), else through xlsxwriter (write_value), as is each format's first cell. A NaN or an
        infinity, which no cell holds (only a tool writes one), is shown as text."""
        if type(value) is float and not math.isfinite(value):
            value = str(value)
        like = None if fmt is None else self._like(fmt, row, column)
        if (fmt is None or like is not None) and self._put(row, column, value, like):
            return
        write_value(sheet, row, column, value, fmt)

    def _put(self, row: int, column: int, value: object, like: Place | None) -> bool:
        """Put the value in as a plain cell; False when it is one for xlsxwriter."""
        kind = type(value)
        if value is None or value == "":
            if like is not None:
                self._blank(row, column, like)
            return True  # a blank without a format is no cell at all
        if kind is str:
            return self._text(row, column, value, like)
        if kind is bool:
            self._boolean(row, column, value, like)
        elif kind is int or kind is float:
            self._number(row, column, value, like)
        elif kind is dt.date and like is not None:
            return self._date(row, column, value, like)
        else:
            return False
        return True

    def _like(self, fmt: Hashable, row: int, column: int) -> Place | None:
        """The cell a cell of this format is shown like: the format's first cell, which the caller writes
        with xlsxwriter (None when this is that cell)."""
        first = self._first.setdefault(fmt, (row, column))
        return None if first == (row, column) else first

    def _text(self, row: int, column: int, value: str, like: Place | None) -> bool:
        """Put the text in, unless it is one for xlsxwriter to write (returns False then)."""
        rest = _text_rest(value)
        if rest is None:
            return False
        self._element(row, column, like, rest)
        return True

    def _number(self, row: int, column: int, value: int | float, like: Place | None) -> None:
        """A finite number (Excel holds no NaN or infinity: the caller shows those as text)."""
        self._element(row, column, like, _number_rest(value))

    def _boolean(self, row: int, column: int, value: bool, like: Place | None) -> None:
        self._element(row, column, like, f' t="b"><v>{int(value)}</v></c>')

    def _blank(self, row: int, column: int, like: Place) -> None:
        """An empty cell with a format (its borders, say)."""
        self._element(row, column, like, "/>")

    def _date(self, row: int, column: int, value: dt.date, like: Place) -> bool:
        """Put a date in as its serial day number, unless it is before 1900-03-01 (returns False then)."""
        serial = value.toordinal() - _DAY_ZERO + 1
        if serial < _FIRST_SHIFTED_DAY:
            return False
        self._number(row, column, serial, like)
        return True

    def _element(self, row: int, column: int, like: Place | None, rest: str) -> None:
        cell = (column, f'<c r="{self._letters(column)}{row + 1}"{self._marker(like) if like else ""}{rest}')
        cells = self.rows.get(row)
        if cells is None:
            self.rows[row] = [cell]
        else:
            cells.append(cell)

    def _marker(self, like: Place) -> str:
        marker = self._markers.get(like)
        if marker is None:
            marker = self._markers[like] = f"{_MARK}{len(self._markers)}{_MARK}"
        return marker

    def _letters(self, column: int) -> str:
        while len(self._refs) <= column:
            self._refs.append(_letters(len(self._refs)))
        return self._refs[column]

    def write_column(self, sheet: Worksheet, column: int, top: int, values: Sequence[object],
                     fmt: Hashable | None = None) -> None:
        """write() of each value down the column from row `top`, all in one format: the same cells, with
        the texts and numbers (nearly all of a table's) put in here without a call per cell (a national
        summary holds 300,000 of them). Any other value, and the format's first cell, goes to write()."""
        if not values:
            return
        if fmt is not None and fmt not in self._first:
            self.write(sheet, top, column, values[0], fmt)  # the format's first cell: xlsxwriter's
            top, values = top + 1, values[1:]
        like = None if fmt is None else self._first[fmt]
        head = f'<c r="{self._letters(column)}'
        slot = self._marker(like) if like else ""
        rows = self.rows
        for row, value in enumerate(values, start=top):
            kind = type(value)
            if kind is str and value:
                rest = _text_rest(value)
            elif kind is float and math.isfinite(value) or kind is int:
                rest = _number_rest(value)
            elif (value is None or kind is str) and like is not None:
                rest = "/>"  # a blank with a format (its borders, say)
            elif value is None or kind is str:
                continue  # a blank without a format is no cell at all
            else:
                rest = None
            if rest is None:
                self.write(sheet, row, column, value, fmt)
                continue
            cell = (column, f"{head}{row + 1}\"{slot}{rest}")
            cells = rows.get(row)
            if cells is None:
                rows[row] = [cell]
            else:
                cells.append(cell)


def _text_rest(value: str) -> str | None:
    """A text cell's XML after its reference; None when the text is one for xlsxwriter to write."""
    # Two C-speed checks spare nearly every text the regular expression (which alone decides).
    if ("_x" in value or not value.isprintable()) and _FOR_XLSXWRITER.search(value):
        return None
    if len(value) > _LONGEST_TEXT // 2:  # may be too long: a character takes one or two UTF-16 units
        value = value.encode("utf-16-le")[:2 * _LONGEST_TEXT].decode("utf-16-le", errors="ignore")
    if "&" in value or "<" in value or ">" in value:
        value = _XML_SPECIAL.sub(lambda m: _XML_ENTITY[m[0]], value)
    space = ' xml:space="preserve"' if value[:1].isspace() or value[-1:].isspace() else ""
    return f' t="inlineStr"><is><t{space}>{value}</t></is></c>'


def _number_rest(value: int | float) -> str:
    """A finite number's XML after its reference. repr: the shortest text that reads back as the same
    float (xlsxwriter's %.16G can lose the last digit). A whole float loses its ".0", as in xlsxwriter's
    first cell of the format: a reader such as openpyxl then sees one type (int) down a money column,
    not an int above floats."""
    shown = repr(value)
    return f"><v>{shown[:-2] if shown.endswith('.0') else shown}</v></c>"


def with_plain_cells(book: bytes, sheets: dict[str, PlainCells]) -> bytes:
    """The workbook xlsxwriter wrote, its sheets (by name) holding their plain cells too. The same inputs
    give the same bytes (members stamped as xlsxwriter's are: assets/xlsx_archive.py)."""
    if not any(cells.rows for cells in sheets.values()):
        return book
    with zipfile.ZipFile(io.BytesIO(book)) as archived:
        members = sheet_members(archived)
        filled = {members[name]: cells for name, cells in sheets.items() if cells.rows}
        return archive(Member.of(info.filename, _merged(archived.read(info), filled[info.filename]), _MERGED_LEVEL)
                       if info.filename in filled else Member.taken_from(book, info) for info in archived.infolist())


# The merged sheets are most of a file's bytes and of its writing time: deflated at zlib's fastest level.
# Measured on a 5,000-package year: its 1,800 feedback files were written in 8.2 s instead of 9.2-9.5 (2
# cores), summary.xlsx in 1.2 s instead of 1.3, and the files take 6% more room.
_MERGED_LEVEL = 1


def _merged(xml: bytes, plain: PlainCells) -> bytes:
    """The sheet's XML with the plain cells among xlsxwriter's (a cell of both: xlsxwriter's wins, since
    it carries the mark); its rows rewritten without xlsxwriter's `spans` (an optional hint, which the
    plain cells would make wrong) and its dimension widened to cover them."""
    found = _SHEET_DATA.search(xml)
    theirs: dict[int, dict[int, str]] = {}
    for cell in _CELL.finditer(found[1] or b""):
        theirs.setdefault(int(cell[2]) - 1, {})[column_number(cell[1]) - 1] = cell[0].decode("utf-8")
    rows: list[str] = []
    first_column, last_column = _EXCEL_COLUMNS, -1
    order = sorted(plain.rows.keys() | theirs.keys())
    for row in order:
        cells = plain.rows.get(row, [])
        if row in theirs:
            both = dict(cells) | theirs[row]
            cells = [(column, both[column]) for column in sorted(both)]
        else:
            cells.sort(key=itemgetter(0))  # a row's cells come in column order, bar a feedback copy's marked ones
        first_column, last_column = min(first_column, cells[0][0]), max(last_column, cells[-1][0])
        rows.append(f'<row r="{row + 1}">{"".join([element for _, element in cells])}</row>')
    body = "".join(rows).encode("utf-8")
    for (row, column), marker in plain._markers.items():  # each style in at once (a handful a sheet)
        shown = _STYLE.search(theirs[row][column])
        body = body.replace(marker.encode(), shown[0].encode() if shown else b"")
    dimension = f'<dimension ref="{_letters(first_column)}{order[0] + 1}:{_letters(last_column)}{order[-1] + 1}"/>'
    return b"".join([_DIMENSION.sub(dimension.encode(), xml[:found.start()], count=1),
                     b"<sheetData>", body, b"</sheetData>", xml[found.end():]])
