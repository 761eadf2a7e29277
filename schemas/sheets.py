"""pandera DataFrameModels, one per sheet of the unit's workbook.

Frames hold the cells as typed (text) plus context columns the stage adds per row (`package_id`,
`year`, `level`, `registered_units`), so one validation call can cover many packages. Every check
is named after its rule id (`S002`, or `S005:funding_source` for frame-wide checks, naming the
column to report); assets/validation.py turns failure cases into findings with the catalog's text.
Readability checks pass on empty cells (S003 reports those) and later checks pass on unreadable
cells (S002 reports those), so one bad cell yields one finding.

Speed (a year is a million expense lines in one call): values are read once per batch (`prepare`),
frame-wide checks set `ignore_na=False` (they handle empty cells themselves; pandera's NA pass
scans the whole frame once per check), and `failure_cases` validates data only (see there).
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from typing import Optional

import pandas as pd
import pandera.pandas as pa
from pandera.config import ValidationDepth, config_context
from pandera.typing import Series

from adapters.registry import normalize_name
from schemas.layout import ALLOWED_CATEGORIES, LAYOUTS, SOURCES_BY_LEVEL
from schemas.values import clean_text, is_blank, is_empty, is_region_code, parse_amount, parse_date, parse_int, uscc_problem


# What S002 tells the unit a typed field should look like, by the kind its template column has.
_KIND_SHAPES = {"date": ("日期", "2023-06-01"), "amount": ("金额", "1234.50"), "integer": ("整数", "12"),
                "days": ("天数", "2 或 0.5")}
# How each typed field is read (its kind, as the layout declares it), and that shape.
FIELD_KINDS: dict[str, tuple[str, str]] = {
    column.field: _KIND_SHAPES[column.kind] for layout in LAYOUTS for column in layout.columns
    if column.kind in _KIND_SHAPES
}
assert all(FIELD_KINDS[column.field] == _KIND_SHAPES[column.kind] for layout in LAYOUTS for column in layout.columns
           if column.kind in _KIND_SHAPES), "a field is read the same way in every sheet"
# Text fields the checks compare after clean_text (S004, S005, S007): read once by prepare too.
CLEANED_FIELDS = ("category", "funding_source", "voucher_no")
POSITIVE_AMOUNTS = ("amount",)  # S006: an expense or a leftover must be positive with at most 2 decimals
IN_PROGRAM_YEAR = ("spent_on", "start_date", "end_date")  # S008


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Read every typed field of a batch once (`<field>__blank`, `__date`, `__int`, `__readable`,
    `__decimals`, `__fen`) and every cleaned text field (`__text`, `__blank`), so the checks below are
    boolean operations, not parses, and the typed rows the warehouse stores reuse what the checks judged."""
    parsed = {}
    for field in CLEANED_FIELDS:
        if field in frame:
            text = clean_text(frame[field])
            parsed |= {f"{field}__text": text, f"{field}__blank": is_empty(text)}
    for field, (kind, _) in FIELD_KINDS.items():
        if field not in frame:
            continue
        text = clean_text(frame[field])
        parsed[f"{field}__blank"] = is_empty(text)
        if kind == "日期":
            parsed[f"{field}__date"] = parse_date(text)
        elif kind == "整数":
            parsed[f"{field}__int"] = parse_int(text)
        else:
            amount = parse_amount(text)
            parsed |= {f"{field}__readable": amount["readable"], f"{field}__decimals": amount["decimals"],
                       f"{field}__fen": amount["fen"]}
    return pd.concat([frame, pd.DataFrame(parsed, index=frame.index)], axis=1) if parsed else frame


def _readable(df: pd.DataFrame, field: str) -> pd.Series:
    """S002: blank (S003's business) or readable as its kind."""
    kind = FIELD_KINDS[field][0]
    value = df[f"{field}__date"] if kind == "日期" else df[f"{field}__int"] if kind == "整数" else None
    readable = value.notna() if value is not None else df[f"{field}__readable"]
    return df[f"{field}__blank"] | readable


def _positive_exact(df: pd.DataFrame, field: str) -> pd.Series:
    """S006, judged only on readable amounts (S002 reports the others)."""
    exact = (df[f"{field}__decimals"] <= 2) & (df[f"{field}__fen"] > 0)
    return ~df[f"{field}__readable"] | exact.fillna(False).astype(bool)


def _in_year(df: pd.DataFrame, field: str) -> pd.Series:
    """S008, judged only on readable dates, against the package's program year (a context column:
    the 年度 the unit typed in 基本信息 is checked as typed, S002/S003)."""
    year = df[f"{field}__date"].dt.year
    return (year.isna() | (year == df["program_year"])).astype(bool)


def _field_checks(fields: list[str]) -> list[pa.Check]:
    """The value checks every typed field gets, named RULE:field so findings name the column."""
    checks = []
    for field in fields:
        if field not in FIELD_KINDS:
            continue
        checks.append(pa.Check(lambda df, f=field: _ok(df, f, _readable), name=f"S002:{field}", ignore_na=False))
        if field in POSITIVE_AMOUNTS:
            checks.append(pa.Check(lambda df, f=field: _ok(df, f, _positive_exact), name=f"S006:{field}",
                                   ignore_na=False))
        if field in IN_PROGRAM_YEAR:
            checks.append(pa.Check(lambda df, f=field: _ok(df, f, _in_year), name=f"S008:{field}", ignore_na=False))
    return checks


def _blank(s: pd.Series) -> pd.Series:
    """The column's blank cells (S003), as prepare read them where it did."""
    return _prepared(s, "blank", is_blank)


def _cleaned(s: pd.Series) -> pd.Series:
    return _prepared(s, "text", clean_text)


def _prepared(s: pd.Series, what: str, read) -> pd.Series:
    """What prepare read of column s (`<column>__<what>`) in the frame being validated, else read(s)."""
    frame = _FRAME.get(None)
    made = None if frame is None else frame.get(f"{s.name}__{what}")
    if made is None:
        return read(s)
    # A column check sees its column without the empty cells of packages that lack the column (pandera
    # drops NA first): the frame's rows that s kept. Nothing dropped, the same rows (and no lookup).
    return made if len(made) == len(s) else made.loc[s.index]


def _ok(df: pd.DataFrame, field: str, test) -> pd.Series:
    """A field a package does not have (S001 says so) passes every value check."""
    return test(df, field) if f"{field}__blank" in df else pd.Series(True, index=df.index)


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

    @pa.check("uscc", name="S009")
    def uscc_check_digit(cls, s):
        return s.map(lambda code: not code.strip() or uscc_problem(code) is None).astype(bool)

    @pa.dataframe_check(name="P006:host_unit", ignore_na=False)
    def registered_unit(cls, df):
        typed = df["host_unit"].map(normalize_name)
        # Once per registered unit list (the context is categorical): a frozenset, which a category can map to.
        known = df["registered_units"].map(lambda names: frozenset(normalize_name(n) for n in names.split("\n")))
        return is_blank(df["host_unit"]) | pd.Series([t in k for t, k in zip(typed, known)], index=df.index)

    @pa.dataframe_check(name="P006:uscc", ignore_na=False)
    def registered_uscc(cls, df):
        registered = df["registered_uscc"]  # "" for a project registered without one
        typed = clean_text(df["uscc"]).str.upper()
        return (registered == "") | is_blank(df["uscc"]) | (typed == registered)

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

    @pa.check("category", name="S004")
    def category_allowed(cls, s):
        category = _cleaned(s)
        return is_empty(category) | category.isin(ALLOWED_CATEGORIES)

    @pa.dataframe_check(name="S005:funding_source", ignore_na=False)
    def source_fits_level(cls, df):
        source = _cleaned(df["funding_source"])
        fits = pd.Series(False, index=df.index)
        for level, sources in SOURCES_BY_LEVEL.items():
            fits |= df["level"].eq(level) & source.isin(sources)
        return is_empty(source) | fits

    @pa.dataframe_check(name="S007:voucher_no", ignore_na=False)
    def voucher_unique(cls, df):
        voucher = _cleaned(df["voucher_no"])
        return is_empty(voucher) | ~pd.DataFrame({"p": df["package_id"], "v": voucher}).duplicated(keep=False)

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

    @pa.check("region_code", name="S010")
    def region_code_valid(cls, s):
        return is_blank(s) | is_region_code(s)

    Config = _Config


class Experts(pa.DataFrameModel):
    """专家名单 (optional sheet)."""

    name: Series[str]
    service_days: Optional[Series[str]]

    @pa.check("name", name="S003")
    def required(cls, s):
        return ~_blank(s)

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

    Config = _Config


class Publicity(pa.DataFrameModel):
    """宣传报道 (optional sheet)."""

    media: Series[str]
    published_on: Optional[Series[str]]

    @pa.check("media", name="S003")
    def required(cls, s):
        return ~_blank(s)

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


def failure_cases(sheet: str, prepared: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases (check, column, index) of a `prepare`d batch frame; empty when it passes.

    Validates data only: the frame's text comes from assets.sheets (always str, never coerced) and
    S001 reports missing columns, so pandera's schema-level checks (column presence, dtype, which
    is a Python call per cell on text columns) could only repeat what is known."""
    token = _FRAME.set(prepared)
    try:
        with config_context(validation_depth=ValidationDepth.DATA_ONLY):
            schema_for(sheet).validate(prepared, lazy=True, inplace=True)  # inplace: no copy, nothing coerced
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    finally:
        _FRAME.reset(token)
    return pd.DataFrame(columns=["check", "column", "index"])


# The frame being validated, for the frame-wide checks (see schema_for). A context variable rather than a
# frame bound into each check: pandera keeps what a check holds, so a bound frame outlived its batch.
_FRAME: ContextVar[pd.DataFrame] = ContextVar("frame")


@functools.cache
def schema_for(sheet: str) -> pa.DataFrameSchema:
    """The sheet's model, each of its frame-wide checks (RULE:column: the model's own and the value checks
    of its typed fields, run on a `prepare`d frame) run as a check of the column it names, over the whole
    frame being validated.

    The verdict is the same; what differs is pandera's report of it. A failing row of a frame-wide check
    is reported in every column, and turning that table into failure cases costs pandas a loop per
    failing row (DataFrame.unstack): more than all the checks together on a defective batch. A column
    check's failure cases are that column's failing cells, which is all a finding needs."""
    model = MODELS[sheet].to_schema()
    columns = dict(model.columns)
    for check in [*model.checks, *_field_checks(list(model.columns))]:
        named = str(check.name).partition(":")[2]
        assert named in columns, f"{check.name}: a frame-wide check names its column (RULE:column)"
        over_frame = pa.Check(lambda column, fn=check._check_fn: fn(_FRAME.get()), name=check.name, ignore_na=False)
        columns[named] = columns[named].update_checks([*columns[named].checks, over_frame])
    return pa.DataFrameSchema(columns=columns, strict=False, coerce=False, name=model.name)
