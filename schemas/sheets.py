"""pandera DataFrameModels, one per sheet of the unit's workbook.

Frames hold the cells as typed (text) plus context columns the stage adds per row (`package_id`,
`year`, `level`, `registered_units`), so one validation call can cover many packages. Every check
is named after its rule id (`S002`, or `S005:funding_source` for frame-wide checks, naming the
column to report); assets/validation.py turns failure cases into findings with the catalog's text.
Readability checks pass on empty cells (S003 reports those) and later checks pass on unreadable
cells (S002 reports those), so one bad cell yields one finding.
"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from adapters.registry import normalize_name
from schemas.layout import ALLOWED_CATEGORIES, SOURCES_BY_LEVEL
from schemas.values import clean_text, is_region_code, parse_amount, parse_date, parse_int, uscc_problem


def _blank(s: pd.Series) -> pd.Series:
    return clean_text(s) == ""


def _date_ok(s: pd.Series) -> pd.Series:
    return _blank(s) | parse_date(s).notna()


def _amount_ok(s: pd.Series) -> pd.Series:
    return _blank(s) | parse_amount(s)["readable"]


def _int_ok(s: pd.Series) -> pd.Series:
    return _blank(s) | parse_int(s).notna()


def _positive_exact(s: pd.Series) -> pd.Series:
    amount = parse_amount(s)
    return ~amount["readable"] | ((amount["decimals"] <= 2) & (amount["fen"] > 0)).fillna(False).astype(bool)


def _in_year(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(True, index=df.index)
    year = parse_date(df[column]).dt.year
    return year.isna() | (year == pd.to_numeric(df["year"]))


class _Config:
    strict = False  # context columns and unknown extra columns are allowed
    coerce = False  # never coerce silently: text stays as typed, readability is a check


class BasicInfo(pa.DataFrameModel):
    """基本信息: one row per package (the key–value sheet pivoted)."""

    year: Series[str]
    project_code: Series[str]
    project_name: Series[str]
    host_unit: Series[str]
    uscc: Series[str]
    contact: Series[str]
    phone: Series[str]
    service_start: Series[str]
    service_end: Series[str]
    audit_firm: Series[str]
    audited_total: Series[str]
    work_summary_file: Optional[Series[str]]
    audit_report_file: Optional[Series[str]]
    filled_on: Optional[Series[str]]

    @pa.check("year", "project_code", "project_name", "host_unit", "uscc", "contact", "phone", "audited_total", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("year", name="S002")
    def year_readable(cls, s):
        return _int_ok(s)

    @pa.check("service_start", "service_end", "filled_on", name="S002")
    def dates_readable(cls, s):
        return _date_ok(s)

    @pa.check("audited_total", name="S002")
    def audited_readable(cls, s):
        return _amount_ok(s)

    @pa.check("uscc", name="S009")
    def uscc_check_digit(cls, s):
        return s.map(lambda code: not code.strip() or uscc_problem(code) is None).astype(bool)

    @pa.dataframe_check(name="P006:host_unit")
    def registered_unit(cls, df):
        typed = df["host_unit"].map(normalize_name)
        known = df["registered_units"].map(lambda names: {normalize_name(n) for n in names.split("\n")})
        return _blank(df["host_unit"]) | pd.Series([t in k for t, k in zip(typed, known)], index=df.index)

    @pa.dataframe_check(name="P006:uscc")
    def registered_uscc(cls, df):
        registered = df["registered_uscc"].fillna("")
        typed = clean_text(df["uscc"]).str.upper()
        return (registered == "") | _blank(df["uscc"]) | (typed == registered)

    Config = _Config


class ExpenseLines(pa.DataFrameModel):
    """经费支出: one row per expense (the 合计 row is kept aside as the declared total)."""

    spent_on: Series[str]
    category: Series[str]
    funding_source: Series[str]
    amount: Series[str]
    voucher_no: Series[str]
    seq: Optional[Series[str]]
    payee: Optional[Series[str]]
    summary: Optional[Series[str]]

    @pa.check("spent_on", "category", "funding_source", "amount", "voucher_no", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("spent_on", name="S002")
    def date_readable(cls, s):
        return _date_ok(s)

    @pa.check("amount", name="S002")
    def amount_readable(cls, s):
        return _amount_ok(s)

    @pa.check("amount", name="S006")
    def amount_positive_exact(cls, s):
        return _positive_exact(s)

    @pa.check("category", name="S004")
    def category_allowed(cls, s):
        return _blank(s) | clean_text(s).isin(ALLOWED_CATEGORIES)

    @pa.dataframe_check(name="S005:funding_source")
    def source_fits_level(cls, df):
        source = clean_text(df["funding_source"])
        allowed = df["level"].map(SOURCES_BY_LEVEL)
        return source.eq("") | pd.Series([s in a for s, a in zip(source, allowed)], index=df.index)

    @pa.dataframe_check(name="S007:voucher_no")
    def voucher_unique(cls, df):
        voucher = clean_text(df["voucher_no"])
        return voucher.eq("") | ~pd.DataFrame({"p": df["package_id"], "v": voucher}).duplicated(keep=False)

    @pa.dataframe_check(name="S008:spent_on")
    def date_in_year(cls, df):
        return _in_year(df, "spent_on")

    Config = _Config


class Activities(pa.DataFrameModel):
    """服务活动: one row per service activity."""

    start_date: Series[str]
    place: Series[str]
    end_date: Optional[Series[str]]
    region_code: Optional[Series[str]]
    experts: Optional[Series[str]]
    people_served: Optional[Series[str]]
    trainees: Optional[Series[str]]
    problems_solved: Optional[Series[str]]

    @pa.check("start_date", "place", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("start_date", "end_date", name="S002")
    def dates_readable(cls, s):
        return _date_ok(s)

    @pa.check("experts", "people_served", "trainees", "problems_solved", name="S002")
    def counts_readable(cls, s):
        return _int_ok(s)

    @pa.check("region_code", name="S010")
    def region_code_valid(cls, s):
        return _blank(s) | is_region_code(s)

    @pa.dataframe_check(name="S008:start_date")
    def start_in_year(cls, df):
        return _in_year(df, "start_date")

    @pa.dataframe_check(name="S008:end_date")
    def end_in_year(cls, df):
        return _in_year(df, "end_date")

    Config = _Config


class Experts(pa.DataFrameModel):
    """专家名单 (optional sheet)."""

    name: Series[str]
    service_days: Optional[Series[str]]

    @pa.check("name", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("service_days", name="S002")
    def days_readable(cls, s):
        return _amount_ok(s)

    Config = _Config


class Photos(pa.DataFrameModel):
    """影像资料: one row per photo; the files themselves are checked against the package (M003, M005)."""

    file_name: Series[str]
    caption: Series[str]
    taken_on: Optional[Series[str]]

    @pa.check("file_name", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("caption", name="M004")
    def captioned(cls, s):
        return ~_blank(s)

    @pa.check("taken_on", name="S002")
    def date_readable(cls, s):
        return _date_ok(s)

    Config = _Config


class Leftover(pa.DataFrameModel):
    """结余说明: one row per funding source with money left over (its 专项说明 and refund)."""

    funding_source: Series[str]
    amount: Series[str]
    reason: Series[str]
    refund_to: Series[str]
    refunded_on: Optional[Series[str]]

    @pa.check("funding_source", "amount", "reason", "refund_to", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("amount", name="S002")
    def amount_readable(cls, s):
        return _amount_ok(s)

    @pa.check("amount", name="S006")
    def amount_positive_exact(cls, s):
        return _positive_exact(s)

    @pa.check("refunded_on", name="S002")
    def date_readable(cls, s):
        return _date_ok(s)

    Config = _Config


class Publicity(pa.DataFrameModel):
    """宣传报道 (optional sheet)."""

    media: Series[str]
    published_on: Optional[Series[str]]

    @pa.check("media", name="S003")
    def required(cls, s):
        return ~_blank(s)

    @pa.check("published_on", name="S002")
    def date_readable(cls, s):
        return _date_ok(s)

    Config = _Config


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "基本信息": BasicInfo,
    "经费支出": ExpenseLines,
    "服务活动": Activities,
    "专家名单": Experts,
    "影像资料": Photos,
    "结余说明": Leftover,
    "宣传报道": Publicity,
}

# What S002 tells the unit each kind of column should look like.
FIELD_KINDS: dict[str, tuple[str, str]] = {
    **{f: ("日期", "2023-06-01") for f in ("service_start", "service_end", "filled_on", "spent_on", "start_date", "end_date", "taken_on", "refunded_on", "published_on")},
    **{f: ("金额", "1234.50") for f in ("amount", "audited_total")},
    **{f: ("整数", "12") for f in ("year", "experts", "people_served", "trainees", "problems_solved")},
    "service_days": ("天数", "2 或 0.5"),
}
