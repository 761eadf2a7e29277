"""Reading what units type: amounts, dates, integers. Vectorised over pandas string Series.

One place for every parse, used both by the schema checks (is it readable?) and by the typed
rows the warehouse stores (what is it?), so a value can never pass one and fail the other.
Amounts are read into integer fen; no float is ever involved.

pandas' str methods on text cost a Python call per cell, so the readers read each distinct value
once: a year's expense lines repeat the same few hundred dates and sources a million times.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from adapters.workbook import SAMPLE, nearly_all_differ

# Characters units put around amounts: currency signs, thousands separators, the 元 unit, spaces.
_AMOUNT_NOISE_RE = re.compile(r"[¥￥,，\s元]")
_AMOUNT_RE = re.compile(r"^(?P<sign>[-+]?)(?P<whole>\d+)(?:\.(?P<frac>\d*))?$")
_DATE_RE = re.compile(
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?$")


def _per_distinct(read):
    """Apply a reader of a Series to each distinct value once and spread its answer back over s; a
    column whose values nearly all differ (vouchers) is read as it is (adapters.workbook.SAMPLE)."""

    @functools.wraps(read)
    def read_distinct(s: pd.Series):
        cells = s.to_numpy(dtype=object)
        sample = cells[:SAMPLE]
        if nearly_all_differ(len(set(sample.tolist())), len(sample)):
            return read(s)
        codes, distinct = pd.factorize(cells, use_na_sentinel=False)
        return read(pd.Series(distinct, dtype=object)).take(codes).set_axis(s.index)

    return read_distinct


@_per_distinct
def clean_text(s: pd.Series) -> pd.Series:
    """NFKC (full-width digits, brackets, spaces) and trimmed; '' for an empty cell."""
    # One Python loop doing both steps costs a third of pandas' fillna/astype/normalize/strip chain.
    return pd.Series([_clean(cell) for cell in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def is_empty(texts: pd.Series) -> pd.Series:
    """texts == "" for a column of texts (clean_text's): each cell's truth in C, a third of pandas'
    comparison, which a batch of a million lines makes a dozen times."""
    return pd.Series(~texts.to_numpy(dtype=object).astype(bool), index=texts.index)


def is_blank(s: pd.Series) -> pd.Series:
    """Empty or spaces only. str.strip removes the full-width space too, and NFKC makes no text
    blank or non-blank (checked over every code point), so this is clean_text(s) == '' at less cost."""
    # Per cell: a test this cheap gains nothing from hashing the column first. A cell is nearly always
    # text: tested inline, without _text's call (a third of the cost).
    return pd.Series([not (cell.strip() if type(cell) is str else _text(cell).strip()) for cell in s.to_numpy(dtype=object)],
                     index=s.index, dtype=bool)


def _text(cell: object) -> str:
    if isinstance(cell, str):
        return cell
    return "" if pd.isna(cell) else str(cell)


def _clean(cell: object) -> str:
    text = _text(cell)
    # Only non-ASCII text can change under NFKC; most cells (dates, amounts, codes) are ASCII.
    return (text if text.isascii() else unicodedata.normalize("NFKC", text)).strip()


@_per_distinct
def parse_amount(s: pd.Series) -> pd.DataFrame:
    """Columns: `fen` (Int64, NA when unreadable), `readable` (bool), `decimals` (Int64 places typed).

    `１,２３４．５０`, `¥1,234.50`, `1234.5` all read as 123450 fen. More than two decimals stays
    readable (so S006 can say so) and `fen` is then NA: it is not an exact amount in yuan.
    Each cell is read by amount_of's own reading (one loop: pandas' extract and the arithmetic around
    it cost three times as much per cell, and amounts rarely repeat).
    """
    readable, decimals, fen = zip(*_each(_amount, s)) if len(s) else ((), (), ())
    return pd.DataFrame({"fen": pd.array(fen, dtype="Int64"), "readable": np.array(readable, dtype=bool),
                         "decimals": pd.array(decimals, dtype="Int64")}, index=s.index)


@_per_distinct
def parse_date(s: pd.Series) -> pd.Series:
    """Datetime64 (NaT when unreadable) from `2023-06-01`, `2023/6/1`, `2023.06.01`, `2023年6月1日`: date_of's
    reading."""
    days = np.array(_each(_date, s), dtype="datetime64[D]")
    return pd.Series(days.astype("datetime64[ns]"), index=s.index)


@_per_distinct
def parse_int(s: pd.Series) -> pd.Series:
    """Int64 (NA when unreadable) from `12`, `12.0` (a number cell), `１２`, `1,200`: int_of's reading."""
    return pd.Series(pd.array(_each(_int, s), dtype="Int64"), index=s.index)


def _each(read, s: pd.Series) -> list:
    """read (one of the one-value readings below) of each cell of s, cleaned as clean_text cleans it."""
    return [read(_clean(cell)) for cell in s.to_numpy(dtype=object)]


# One value at a time, for messages and single cells (a pandas call per value costs milliseconds).
# parse_amount, parse_date and parse_int read each cell with these readings (_amount, _date, _int).


@dataclass(frozen=True)
class Amount:
    readable: bool
    decimals: int | None
    fen: int | None  # None when unreadable or more than two decimals


def amount_of(typed: object) -> Amount:
    return Amount(*_amount(_clean(typed)))


def _amount(text: str) -> tuple[bool, int | None, int | None]:
    """(readable, decimals, fen) of a cleaned text: the one reading of an amount (parse_amount's too)."""
    whole, _, frac = text.partition(".")
    if whole.isdecimal() and len(frac) <= 2 and (frac.isdecimal() or not frac):
        # The usual amount (digits, a point and at most two more) read without the two patterns: str's
        # isdecimal is the patterns' \d (Unicode category Nd), so the reading is theirs (tests/test_values.py).
        return True, len(frac), int(whole) * 100 + int(frac.ljust(2, "0"))
    return _amount_by_pattern(text)


def _amount_by_pattern(text: str) -> tuple[bool, int | None, int | None]:
    parts = _AMOUNT_RE.match(_AMOUNT_NOISE_RE.sub("", text))
    if parts is None:
        return False, None, None
    frac = parts["frac"] or ""
    if len(frac) > 2:
        return True, len(frac), None
    fen = int(parts["whole"]) * 100 + int(frac.ljust(2, "0"))
    return True, len(frac), -fen if parts["sign"] == "-" else fen


def date_of(typed: object) -> date | None:
    return _date(_clean(typed))


# The years a typed date may have: what pandas' datetime64[ns] holds (1677-09-21 to 2262-04-11), whole
# years only. No date of this programme is near either end.
_YEARS = range(1678, 2262)


def _date(text: str) -> date | None:
    """A cleaned text's date: the one reading of a date (parse_date's too)."""
    parts = _DATE_RE.match(text)
    if parts is None:
        return None
    try:
        day = date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
    except ValueError:
        return None
    return day if day.year in _YEARS else None


def int_of(typed: object) -> int | None:
    return _int(_clean(typed))


_INT_NOISE, _INT = re.compile(r"[,，\s]"), re.compile(r"\d+(\.0+)?")


def _int(text: str) -> int | None:
    """A cleaned text's integer: the one reading of an integer (parse_int's too)."""
    text = _INT_NOISE.sub("", text)
    return int(text.split(".")[0]) if _INT.fullmatch(text) else None


def fen_to_yuan(fen: int) -> str:
    """100000 fen -> '1000.00' (exports write money with exactly two places)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


# USCC (GB 32100-2015): 18 chars; check = 31 - (Σ v·w mod 31), weights 3^(i-1) mod 31, 31 -> 0.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_USCC_SHAPE = re.compile(rf"^[{USCC_ALPHABET}]{{18}}$")


def uscc_problem(code: str) -> str | None:
    """None when the code is well formed and its check digit is right, else a Chinese reason."""
    code = code.strip().upper()
    if not _USCC_SHAPE.match(code):
        return "应为 18 位数字或大写字母（不含 I、O、S、V、Z）"
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(code[:17], _USCC_WEIGHTS))
    expected = USCC_ALPHABET[(31 - total % 31) % 31]
    if code[17] != expected:
        return f"校验位应为 {expected}"
    return None


_REGION = re.compile(r"^[1-8]\d{5}$")


@_per_distinct
def is_region_code(s: pd.Series) -> pd.Series:
    """GB/T 2260 shape: 6 digits, a province prefix 11–82 and a non-zero province part."""
    text = clean_text(s).str.replace(r"\.0$", "", regex=True)
    province = pd.to_numeric(text.str[:2], errors="coerce")
    return text.str.fullmatch(_REGION.pattern) & province.between(11, 82)
