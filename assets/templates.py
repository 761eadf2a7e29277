"""The workbook a unit fills in, `templates/<project_code>.xlsx` (xlsxwriter), one per registered project.

Its sheets and columns come from schemas/layout.py, the same place that reads the packages back, so the
template cannot ask for a column the pipeline does not know. 基本信息 is prefilled from the registry and
protected, only the unit's cells unlocked; every table has its header, an example row whose first cell
is 示例 (the pipeline never reads it as data), Chinese input messages and data validation: drop-down
lists for 支出科目, for exactly the 经费来源 of the project's level and their 退回对象, dates, amounts with
at most two decimals, whole numbers. A 填报说明 sheet says what goes where, the deadline and who refunds
go to. The registry's extra facts (level, grants, deadline) sit below 基本信息's fields under labels no
field is matched by, so they are never read as the unit's values.

A year's templates are made from one base workbook per variant (see `_Templates`): byte for byte what
rendering each project on its own gives, several times faster.
"""

import dataclasses
import datetime as dt
import io
import re
import sys
import zipfile
from pathlib import Path

import dagster as dg
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

from adapters.registry import LEVEL_ZH, REFUND_TO, TYPE_ZH, RegisteredProject, YearRegistry
from adapters.resources import ExportResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.workers import WorkerFailure, map_isolated
from assets.incremental import code_hash, digest
from assets.partitions import single_run, year_partitions, years_of_run
from assets.sheets import EXAMPLE_MARK
from assets.plain_cells import write_text
from assets.summary_workbook import MONEY_FORMAT, atomic_path
from assets.xlsx_archive import Member, archive
from schemas.layout import (
    ACTIVITIES, BASIC_INFO, CATEGORIES, EXPENSES, EXPERTS, LEFTOVER, PHOTOS, PUBLICITY, SOURCES_BY_LEVEL, Column,
    SheetLayout,
)
from schemas.values import fen_to_yuan

GUIDE = "填报说明"
TABLES = (EXPENSES, ACTIVITIES, PHOTOS, EXPERTS, LEFTOVER, PUBLICITY)
# 基本信息 fields the registry fills in (and the sheet's protection keeps as they are).
PREFILLED = ("year", "project_code", "project_name", "host_unit")
# Rows the data validation covers below a table's header: more than any unit types by hand.
_VALIDATED_ROWS = 5000
_DATE_FORMAT = "yyyy-mm-dd"
_AUTHOR = "市人社局专技处"
# Fixed, so the same registry gives the same bytes (a re-run changes no file).
_CREATED = dt.datetime(2023, 1, 1)
# The registry's facts below 基本信息's fields: none of these labels is a field name or alias there.
_FACTS_TITLE = "立项登记信息（供参考，无需填写）"
_EXAMPLE_YEAR = "2023"  # examples and hints in schemas/layout.py are written for 2023


def template_path(out_dir: Path, project: RegisteredProject) -> Path:
    return out_dir / f"{project.code}.xlsx"


def template_bytes(registry: YearRegistry, project: RegisteredProject) -> bytes:
    """The same workbook in memory (the sample inbox fills it in as a unit would)."""
    buffer = io.BytesIO()
    _write(buffer, registry, project)
    return buffer.getvalue()


def _write(target, registry: YearRegistry, project: RegisteredProject) -> None:
    # Belt and braces: nothing typed here may become a formula, number or link by itself.
    book = xlsxwriter.Workbook(target, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    book.set_properties({"author": _AUTHOR, "created": _CREATED,
                         "title": f"{registry.year}年度专家服务基层项目材料填报模板（{project.code}）"})
    formats = _Formats(book)
    _basic_info(book.add_worksheet(BASIC_INFO.name), formats, registry, project)
    for layout in TABLES:
        _table(book.add_worksheet(layout.name), formats, layout, registry, project)
    _guide(book.add_worksheet(GUIDE), formats, registry, project)
    book.close()


class _Formats:
    def __init__(self, book: xlsxwriter.Workbook) -> None:
        border = {"border": 1, "border_color": "#999999", "valign": "vcenter"}
        self.header = book.add_format({**border, "bold": True, "bg_color": "#DDEBF7", "text_wrap": True,
                                       "align": "center"})
        self.label = book.add_format({**border, "bold": True, "bg_color": "#DDEBF7"})
        self.locked = book.add_format({**border, "bg_color": "#F2F2F2", "locked": True})
        self.example = book.add_format({"italic": True, "font_color": "#808080"})
        self.title = book.add_format({"bold": True, "font_size": 14})
        self.heading = book.add_format({"bold": True, "font_size": 12})
        self.wrap = book.add_format({"text_wrap": True, "valign": "top"})
        self.note = book.add_format({"font_color": "#808080"})
        # Unlocked cells, one per kind of value (protection applies to 基本信息 only).
        self.typed = {
            "date": book.add_format({**border, "locked": False, "num_format": _DATE_FORMAT}),
            "amount": book.add_format({**border, "locked": False, "num_format": MONEY_FORMAT}),
            "text": book.add_format({**border, "locked": False, "num_format": "@"}),
            "plain": book.add_format({**border, "locked": False}),
        }
        self.column = {"date": book.add_format({"num_format": _DATE_FORMAT}),
                       "amount": book.add_format({"num_format": MONEY_FORMAT}),
                       "text": book.add_format({"num_format": "@"})}

    def for_kind(self, kind: str):
        return self.typed["date" if kind == "date" else "amount" if kind == "amount" else
                          "text" if kind == "text" else "plain"]


def _for_year(text: str, year: int) -> str:
    return text.replace(_EXAMPLE_YEAR, str(year))


def _choices(column: Column, project: RegisteredProject) -> list[str]:
    """A list column's choices: 支出科目, or the level's own 经费来源, or their 退回对象."""
    sources = list(SOURCES_BY_LEVEL[project.level])
    if column.field == "category":
        return list(CATEGORIES)
    if column.field == "funding_source":
        return sources
    if column.field == "refund_to":
        return list(dict.fromkeys(REFUND_TO[source] for source in sources))
    raise ValueError(f"no choices for {column.field}")


def _validation(column: Column, project: RegisteredProject, cell: str) -> dict | None:
    """The data validation of a column (cell: its first cell, for formulas), with its input message."""
    message = {"input_title": column.header[:32], "input_message": column.hint[:255]} if column.hint else {}
    if column.kind == "list":
        choices = _choices(column, project)
        return {"validate": "list", "source": choices, **message, "error_title": "请从列表中选择",
                "error_message": f"“{column.header}”只能填写：{'、'.join(choices)}。"[:255]}
    if column.kind == "date":
        return {"validate": "date", "criteria": "between", "minimum": dt.date(2000, 1, 1),
                "maximum": dt.date(2099, 12, 31), **message, "error_title": "日期格式不正确",
                "error_message": "请填写日期，如 2023-06-01。"}
    if column.kind == "amount":
        return {"validate": "custom", "value": f"=AND(ISNUMBER({cell}),{cell}>0,ROUND({cell},2)={cell})", **message,
                "error_title": "金额不正确", "error_message": "请填写大于 0、最多两位小数的金额（元），不要带单位。"}
    if column.kind == "integer":
        return {"validate": "integer", "criteria": ">=", "value": 0, **message, "error_title": "请填写整数",
                "error_message": f"“{column.header}”应为不小于 0 的整数。"}
    if column.kind == "days":
        return {"validate": "decimal", "criteria": ">=", "value": 0, **message, "error_title": "请填写天数",
                "error_message": "服务天数应为不小于 0 的数，可为 0.5。"}
    return {"validate": "any", **message} if message else None


def _example(column: Column, project: RegisteredProject, year: int) -> str:
    if column.kind == "list":
        return _choices(column, project)[0 if column.field != "category" else 3]  # 差旅费: the commonest
    return _for_year(column.example, year)


# --- 基本信息 ---------------------------------------------------------------------------------------

def _registered(registry: YearRegistry, project: RegisteredProject) -> dict[str, str]:
    values = {"year": str(registry.year), "project_code": project.code, "project_name": project.project_name,
              "host_unit": project.host_unit}
    if project.uscc:
        values["uscc"] = project.uscc
    return values


def _basic_info(sheet: Worksheet, formats: _Formats, registry: YearRegistry, project: RegisteredProject) -> None:
    """Column A the field, column B its value: the registry's values locked, the unit's cells open."""
    registered = _registered(registry, project)
    for row, column in enumerate(BASIC_INFO.columns):
        sheet.write_string(row, 0, column.header, formats.label)
        if column.field in registered:
            value = registered[column.field]
            if column.field == "year":
                sheet.write_number(row, 1, int(value), formats.locked)
            else:
                write_text(sheet, row, 1, value, formats.locked)
            continue
        sheet.write_blank(row, 1, None, formats.for_kind(column.kind))
        rule = _validation(column, project, f"B{row + 1}")
        if rule:
            sheet.data_validation(row, 1, row, 1, rule)
    row = len(BASIC_INFO.columns) + 1
    sheet.write_string(row, 0, _FACTS_TITLE, formats.heading)
    for label, value in _facts(registry, project):
        row += 1
        sheet.write_string(row, 0, label, formats.label)
        write_text(sheet, row, 1, value, formats.locked)
    sheet.set_column(0, 0, 26)
    sheet.set_column(1, 1, 60)
    # No password: protection keeps the registry's values from being typed over by mistake, nothing more.
    sheet.protect("", {"select_locked_cells": True, "select_unlocked_cells": True})


def _facts(registry: YearRegistry, project: RegisteredProject) -> list[tuple[str, str]]:
    """The registry's facts a unit needs beside its fields (labels matched by no 基本信息 field)."""
    facts = [("立项级别与类型", f"{LEVEL_ZH[project.level]}{TYPE_ZH[project.type]}")]
    facts += [(f"立项拨付·{source}（元）", fen_to_yuan(fen)) for source, fen in registry.grants_for(project).items()]
    facts.append(("材料报送截止日期", registry.deadline.isoformat()))
    if project.type == "team":
        facts.append(("服务团完成服务时间", registry.team_completion_date.isoformat()))
    return facts


# --- tables -----------------------------------------------------------------------------------------

def _table(sheet: Worksheet, formats: _Formats, layout: SheetLayout, registry: YearRegistry,
           project: RegisteredProject) -> None:
    """Header in row 1, the example row (first cell 示例) in row 2, validation on the rows below it."""
    last = _VALIDATED_ROWS
    for col, column in enumerate(layout.columns):
        sheet.write_string(0, col, column.header, formats.header)
        example = EXAMPLE_MARK if col == 0 else _example(column, project, registry.year)
        sheet.write_string(1, col, example, formats.example)
        sheet.set_column(col, col, max(10, min(30, len(column.header) * 2 + 4)), formats.column.get(column.kind))
        cell = f"{xl_col_to_name(col)}3"
        rule = _validation(column, project, cell)
        if rule:
            sheet.data_validation(2, col, last, col, rule)
    sheet.freeze_panes(1, 0)


# --- 填报说明 ---------------------------------------------------------------------------------------

def _guide(sheet: Worksheet, formats: _Formats, registry: YearRegistry, project: RegisteredProject) -> None:
    year, sources = registry.year, SOURCES_BY_LEVEL[project.level]
    refunds = "；".join(f"{source}结余退回{REFUND_TO[source]}" for source in sources)
    sections = [
        ("报送什么", [
            f"请于 {registry.deadline.isoformat()}（含）前报送材料包：一个 zip 压缩包或一个文件夹，内含本工作簿、"
            "工作成效总结（pdf 或 docx）、第三方审计报告（pdf）和服务现场照片。",
            "材料包只放一个 Excel 工作簿；不要加密码，不要只报送改动的文件。重新报送的材料包将替代此前的版本。",
            "报送前可自行检查：python -m etl check 材料包 --year " + str(year) + "，或请市人社局代为检查。",
        ]),
        ("各工作表填什么", [
            f"{BASIC_INFO.name}：灰色单元格已按立项登记填好并锁定，请在白色单元格填写其余各项；"
            "工作总结文件、审计报告文件填写材料包中对应文件的文件名。",
            f"{EXPENSES.name}：每笔支出一行；支出科目、经费来源从下拉列表选择（本项目的经费来源：{'、'.join(sources)}）；"
            "凭证号不得重复；表末可加一行“合计”，其金额应等于各行之和，并等于基本信息中的审计确认支出金额。",
            f"{ACTIVITIES.name}：每次服务活动一行。",
            f"{PHOTOS.name}：每张照片一行，文件名与材料包中的照片一致，每张照片都要写说明。",
            f"{EXPERTS.name}、{PUBLICITY.name}：如有请填写。",
            f"{LEFTOVER.name}：经费有结余时，每个有结余的经费来源填一行，写明结余金额、原因（专项说明）和退回对象。",
            f"各表第 2 行（第一格为“{EXAMPLE_MARK}”）是填写示例，不计入数据，可保留或删除；请从第 3 行起填写。",
        ]),
        ("经费要求", [
            "专款专用：每笔支出只能计入一个经费来源；设备购置费、工资福利、招待费、礼品费等不得列支。",
            "服务团应在 11 月上旬前完成服务，经费原则上应使用完毕。",
            f"结余经费须专项说明并退回：{refunds}。",
            "金额以元为单位，最多两位小数。",
        ]),
    ]
    sheet.write_string(0, 0, f"{year}年度专家服务基层项目材料填报说明（{project.code} {project.project_name}）",
                       formats.title)
    row = 2
    for heading, lines in sections:
        sheet.write_string(row, 0, heading, formats.heading)
        for number, line in enumerate(lines, start=1):
            sheet.write_string(row + number, 0, f"{number}. {line}", formats.wrap)
        row += len(lines) + 2
    sheet.write_string(row, 0, "如有疑问，请联系市人力资源社会保障局专业技术人员管理处。", formats.note)
    sheet.set_column(0, 0, 110)


# --- a year's templates: one base workbook per variant ----------------------------------------------
#
# Rendering a template costs ~5 ms (data validations, XML, zlib) and a national year has thousands. All
# of a template but a few strings depends on the registry and on the project's level, type and whether it
# has a USCC: the project's code, name, host unit and USCC are written only as text, into
# xl/sharedStrings.xml (基本信息's cells, the guide's title) and docProps/core.xml (the title). So each
# variant is rendered once with tokens for those strings, and each project's file is its base with the
# XML-escaped values put in place of the tokens. Only those two members are deflated again; the others
# are deflated once per variant and copied (assets/xlsx_archive.py): 0.83 -> 0.15 ms a template.

_FIELDS = ("code", "project_name", "host_unit", "uscc")
_TOKENS = re.compile(rb"@@(" + "|".join(_FIELDS).encode() + rb")@@")
_SHARED_STRINGS = "xl/sharedStrings.xml"
_TEXT_MEMBERS = frozenset({_SHARED_STRINGS, "docProps/core.xml"})
_SHARED_STRING = re.compile(rb"<si>.*?</si>", re.S)
# What xlsxwriter does not write as plain text (xlsxwriter/xmlwriter.py, sharedstrings.py): control
# characters become _xHHHH_ escapes and a literal _xHHHH_ is escaped in turn; leading or trailing
# whitespace adds xml:space="preserve"; a string in <r>…</r> is taken as rich text, written raw.
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b-\x1f]|_x[0-9a-fA-F]{4}_|^\s|\s$|^<r>.*</r>$", re.S)
# Far below the 32,767 UTF-16 units a cell keeps (xlsxwriter truncates beyond), even with code and name
# together in the guide's title.
_LONGEST = 1000


@dataclasses.dataclass(frozen=True)
class _Base:
    """One variant's workbook: its members' names in order, those holding tokens (XML), the others
    deflated."""
    names: tuple[str, ...]
    templated: dict[str, bytes]
    deflated: dict[str, Member]


class _Templates:
    """The templates of one registry's projects, each made from its variant's base (rendered once)."""

    def __init__(self, registry: YearRegistry) -> None:
        self.registry = registry
        self.bases: dict[RegisteredProject, _Base] = {}

    def base(self, project: RegisteredProject) -> _Base:
        # The project with tokens for its own strings is the key of its variant: whatever else of it
        # the writer reads (level, type, whether there is a USCC) tells the variants apart. Aliases and
        # the project carried on are not written into a template.
        tokens = {field: f"@@{field}@@" for field in _own_strings(project)}
        variant = dataclasses.replace(project, aliases=(), continues="", **tokens)
        if variant not in self.bases:
            self.bases[variant] = _base(self.registry, variant)
        return self.bases[variant]

    def workbook(self, project: RegisteredProject) -> bytes:
        base = self.base(project)
        filled = _filled(base, project)
        if filled is None:
            buffer = io.BytesIO()
            _write(buffer, self.registry, project)
            return buffer.getvalue()
        return archive(Member.of(name, filled[name]) if name in filled else base.deflated[name] for name in base.names)


def _base(registry: YearRegistry, variant: RegisteredProject) -> _Base:
    buffer = io.BytesIO()
    _write(buffer, registry, variant)
    with zipfile.ZipFile(buffer) as book:
        members = [(info.filename, book.read(info)) for info in book.infolist()]
    templated = {name: data for name, data in members if _TOKENS.search(data)}
    if not templated.keys() <= _TEXT_MEMBERS:  # substituting there would need that member's escaping
        raise RuntimeError(f"a project's own strings are now written into {sorted(templated.keys() - _TEXT_MEMBERS)}")
    deflated = {name: Member.of(name, data) for name, data in members if name not in templated}
    return _Base(tuple(name for name, _ in members), templated, deflated)


def _own_strings(project: RegisteredProject) -> dict[str, str]:
    """The project's own strings in its template, by field; a blank one (no USCC) is part of its variant."""
    return {field: getattr(project, field) for field in _FIELDS if getattr(project, field)}


def _filled(base: _Base, project: RegisteredProject) -> dict[str, bytes] | None:
    """The base's members holding tokens with the project's values in, or None where that would not be
    what xlsxwriter writes for the project: then its template is rendered directly. This is the one place
    that decides it: a value xlsxwriter does not write as plain XML text, or one that equals another
    string of the workbook (xlsxwriter would have shared the two, so its strings table differs)."""
    values = _own_strings(project)
    if any(len(value) > _LONGEST or _NOT_PLAIN.search(value) for value in values.values()):
        return None
    escaped = {field.encode(): value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode()
               for field, value in values.items()}
    filled = {name: _TOKENS.sub(lambda token: escaped[token[1]], xml) for name, xml in base.templated.items()}
    strings = _SHARED_STRING.findall(filled.get(_SHARED_STRINGS, b""))
    return filled if len(set(strings)) == len(strings) else None


# --- the asset ---------------------------------------------------------------------------------------

_TEMPLATES_PER_TASK = 250


def write_year_templates(registry: YearRegistry, out_dir: Path, codes: list[str] | None = None) -> list[Path]:
    """templates/<code>.xlsx of every registered project (or of the named ones), a few hundred per task
    across the worker pool: a national year has thousands. Each variant's base is rendered here, once,
    and goes to the workers with their tasks."""
    wanted = set(codes) if codes is not None else None
    projects = [p for p in registry.projects if wanted is None or p.code in wanted]
    templates = _Templates(registry)
    for project in projects:
        templates.base(project)
    tasks = [(templates, out_dir, projects[i:i + _TEMPLATES_PER_TASK])
             for i in range(0, len(projects), _TEMPLATES_PER_TASK)]
    written: list[Path] = []
    for task, paths in map_isolated(_write_templates, tasks):
        if isinstance(paths, WorkerFailure):  # our own writer, no unit's bytes: a real error, say so
            raise RuntimeError(f"writing templates failed: {paths.limit} ({paths.detail})")
        written += paths
    return written


def _write_templates(task: tuple[_Templates, Path, list[RegisteredProject]]) -> list[Path]:
    templates, out_dir, projects = task
    written = []
    for project in projects:
        path = template_path(out_dir, project)
        with atomic_path(path) as partial:
            partial.write_bytes(templates.workbook(project))
        written.append(path)
    return written


def _template_code() -> str:
    from schemas import layout

    return code_hash(layout, sys.modules[__name__])


_TEMPLATE_CODE = _template_code()
_KEYS = "templates/"  # fingerprints of the template files, by project


def template_keys(registry: YearRegistry) -> dict[str, str]:
    """project -> what its template is made of: its registry entry, grants and dates, and this code."""
    dates = (registry.year, registry.deadline, registry.team_completion_date)
    return {p.code: digest(_TEMPLATE_CODE, p, registry.grants_for(p), dates) for p in registry.projects}


def refresh_year_templates(engine, registry: YearRegistry, out_dir: Path) -> int:
    """Write the templates whose registry entry (or layout) changed since they were written, or that
    are missing, and remove those of projects struck off: a national year has thousands of them."""
    keys = template_keys(registry)
    with engine.connect() as conn:
        written = store.fingerprints(conn, registry.year, _KEYS)
    todo = [code for code, key in keys.items()
            if written.get(code) != key or not template_path(out_dir, registry.project(code)).exists()]
    write_year_templates(registry, out_dir, todo)
    gone = [code for code in written if code not in keys]
    for code in gone:
        (out_dir / f"{code}.xlsx").unlink(missing_ok=True)
    with engine.begin() as conn:
        store.set_fingerprints(conn, registry.year, _KEYS, {**{c: keys[c] for c in todo}, **dict.fromkeys(gone)})
    return len(todo)


@dg.asset(partitions_def=year_partitions, backfill_policy=single_run, group_name="reports", kinds={"excel"})
def unit_templates(
    context: dg.AssetExecutionContext, registry: RegistryResource, exports: ExportResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """填报模板：为每个立项项目生成依托单位填写的工作簿 templates/<项目编号>.xlsx。基本信息按立项登记预填并锁定，
    经费支出等表带表头、示例行、下拉列表（支出科目、本项目级别的经费来源）、日期和金额校验及中文输入提示，
    另有填报说明（报送截止日期、结余退回对象）。只依赖立项登记，不读取任何材料包；登记信息未变的模板不重写。"""
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        out_dir = exports.year_dir(year) / "templates"
        year_registry = registry.year(year)
        written = refresh_year_templates(warehouse.engine(), year_registry, out_dir)
        metadata[f"{year} 模板数"] = dg.MetadataValue.int(len(year_registry.projects))
        metadata[f"{year} 本次生成的模板数"] = dg.MetadataValue.int(written)
        metadata[f"{year} templates"] = dg.MetadataValue.path(str(out_dir.resolve()))
    return dg.MaterializeResult(metadata=metadata)
