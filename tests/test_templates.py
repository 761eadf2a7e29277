"""The template a unit fills (assets/templates.py): prefilled and locked from the registry, validated,
read back by the pipeline as meant; filled in a spreadsheet program it yields no finding at all, through
`check` and through the pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from adapters.fee_caps import load_fee_caps
from adapters.registry import REFUND_TO, RegisteredProject, YearRegistry
from adapters.workbook import Workbook
from assets.self_check import check_package
from assets.sheets import EXAMPLE_MARK, parse_key_value, read_sheets
from assets.templates import GUIDE, TABLES, _filled, _Templates, template_bytes, write_year_templates
from assets.xlsx_archive import Member, archive
from etl.cli import main
from etl.sample.builder import SHANGHAI, clean_package, zip_bytes
from schemas.layout import BASIC_INFO, CATEGORIES, EXPENSES, LEFTOVER, SOURCES_BY_LEVEL
from tests.conftest import project_dict

YEAR = 2023


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("templates")
    assert main(["template", "--year", str(YEAR), "--out", str(out)]) == 0
    return out


def basic_rows(sheet) -> dict[str, object]:
    """基本信息 column A -> its column B cell."""
    return {row[0].value: row[1] for row in sheet.iter_rows(max_col=2) if row[0].value}


def validations(sheet) -> dict[str, object]:
    """First cell of each validated range -> its validation."""
    return {str(dv.sqref).split(":")[0].split()[0]: dv for dv in sheet.data_validations.dataValidation}


def test_one_template_per_registered_project_or_one_on_request(templates, registry, tmp_path):
    assert sorted(p.stem for p in templates.glob("*.xlsx")) == sorted(p.code for p in registry.projects)
    assert main(["template", "--year", str(YEAR), "--project", "2023-st-1", "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.glob("*.xlsx")] == ["2023-ST-01.xlsx"]
    assert main(["template", "--year", str(YEAR), "--project", "2023-XX-99", "--out", str(tmp_path)]) == 2


def test_sheets_and_headers_come_from_the_layout(templates):
    book = openpyxl.load_workbook(templates / "2023-GT-01.xlsx")
    assert book.sheetnames == [BASIC_INFO.name, *(layout.name for layout in TABLES), GUIDE]
    for layout in TABLES:
        sheet = book[layout.name]
        assert [c.value for c in sheet[1]] == [column.header for column in layout.columns]
        assert sheet.cell(2, 1).value == EXAMPLE_MARK


@pytest.mark.parametrize("code", ["2023-GT-02", "2023-SB-05"])
def test_basic_info_is_prefilled_from_the_registry_and_locked(templates, registry, code):
    project = registry.project(code)
    sheet = openpyxl.load_workbook(templates / f"{code}.xlsx")[BASIC_INFO.name]
    assert sheet.protection.sheet
    cells = basic_rows(sheet)
    assert [cells[c.header].value for c in BASIC_INFO.columns[:4]] == [
        YEAR, project.code, project.project_name, project.host_unit]
    assert all(cells[c.header].protection.locked for c in BASIC_INFO.columns[:4])
    typed_by_unit = [c.header for c in BASIC_INFO.columns[4:]]
    assert not any(cells[header].protection.locked for header in typed_by_unit)
    assert all(cells[header].value is None for header in typed_by_unit)
    grants = registry.grants_for(project)
    facts = {label: cell.value for label, cell in cells.items() if label not in {c.header for c in BASIC_INFO.columns}}
    assert facts["材料报送截止日期"] == registry.deadline.isoformat()
    assert {label: value for label, value in facts.items() if label.startswith("立项拨付")} == {
        f"立项拨付·{source}（元）": f"{fen // 100}.00" for source, fen in grants.items()}
    assert facts["立项级别与类型"] == {"national": "国家级服务团", "municipal": "市级服务基地"}[project.level]


def test_registry_facts_are_never_read_as_the_units_fields(templates, registry):
    data = (templates / "2023-GT-01.xlsx").read_bytes()
    book = Workbook(data)
    basic = parse_key_value(book.grid(BASIC_INFO.name), BASIC_INFO, BASIC_INFO.name)
    assert basic.rows == {c.field: row for row, c in enumerate(BASIC_INFO.columns, start=1)}
    assert {f: v for f, v in basic.frame.iloc[0].items() if v} == {
        "year": "2023", "project_code": "2023-GT-01", "project_name": registry.project("2023-GT-01").project_name,
        "host_unit": registry.project("2023-GT-01").host_unit}
    # The example rows are no data: an untouched template has empty tables.
    assert all(len(sheet.frame) == 0 for name, sheet in read_sheets(data).sheets.items() if name != BASIC_INFO.name)


@pytest.mark.parametrize("code", ["2023-GT-01", "2023-ST-03"])
def test_expense_and_leftover_validation(templates, registry, code):
    project = registry.project(code)
    book = openpyxl.load_workbook(templates / f"{code}.xlsx")
    expenses = validations(book[EXPENSES.name])
    column = {c.field: openpyxl.utils.get_column_letter(i) for i, c in enumerate(EXPENSES.columns, start=1)}
    sources = SOURCES_BY_LEVEL[project.level]
    assert expenses[f"{column['funding_source']}3"].formula1 == '"' + ",".join(sources) + '"'
    assert expenses[f"{column['category']}3"].formula1 == '"' + ",".join(CATEGORIES) + '"'
    assert "设备购置费" not in expenses[f"{column['category']}3"].formula1
    assert expenses[f"{column['spent_on']}3"].type == "date"
    amount = expenses[f"{column['amount']}3"]
    assert amount.type == "custom" and "ROUND(E3,2)=E3" in amount.formula1 and "E3>0" in amount.formula1
    assert all(dv.showInputMessage and dv.prompt for dv in expenses.values())
    assert "下拉列表" in expenses[f"{column['category']}3"].prompt
    leftover = validations(book[LEFTOVER.name])
    assert leftover["A3"].formula1 == '"' + ",".join(sources) + '"'
    refund_to = leftover["D3"].formula1.strip('"').split(",")
    assert refund_to == list(dict.fromkeys(REFUND_TO[s] for s in sources))


def test_guide_says_deadline_and_who_refunds_go_to(templates, registry):
    def guide(code: str) -> str:
        return "\n".join(str(c.value) for c in openpyxl.load_workbook(templates / f"{code}.xlsx")[GUIDE]["A"] if c.value)

    national, municipal = guide("2023-GT-01"), guide("2023-SB-01")
    assert registry.deadline.isoformat() in national
    assert "部拨经费结余退回人力资源社会保障部" in national and "市级配套结余退回市人力资源社会保障局" in national
    assert "市级经费结余退回市人力资源社会保障局" in municipal and "部拨经费" not in municipal.split("经费要求")[1]


def test_templates_are_byte_stable(templates, registry, tmp_path):
    again = write_year_templates(registry, tmp_path)
    assert all(path.read_bytes() == (templates / path.name).read_bytes() for path in again)


# --- a year's templates are made from one base workbook per variant -----------------------------------


def as_read(data: bytes) -> dict:
    """What a reader sees of a workbook: every sheet's cells (value, type, locked), data validations,
    protection and column widths, and the title."""
    import io

    book = openpyxl.load_workbook(io.BytesIO(data))
    seen: dict = {"title": book.properties.title}
    for sheet in book.worksheets:
        seen[sheet.title] = {
            "cells": {cell.coordinate: (cell.value, cell.data_type, cell.protection.locked)
                      for row in sheet.iter_rows() for cell in row if cell.value is not None},
            "validations": sorted((str(dv.sqref), dv.type, dv.formula1)
                                  for dv in sheet.data_validations.dataValidation),
            "protection": (sheet.protection.sheet, sheet.protection.selectLockedCells,
                           sheet.protection.selectUnlockedCells, sheet.protection.password),
            "widths": {letter: dimension.width for letter, dimension in sheet.column_dimensions.items()},
        }
    return seen


def year_of(registry: YearRegistry, projects: list[RegisteredProject]) -> YearRegistry:
    return YearRegistry(registry.year, registry.notice, registry.deadline, registry.team_completion_date,
                        registry.grants, tuple(projects))


def assert_as_rendered_alone(registry: YearRegistry, projects: list[RegisteredProject], out: Path) -> None:
    """write_year_templates (bases, substitution, the worker pool) gives each project the workbook that
    rendering it alone with xlsxwriter gives (template_bytes, also the fallback): as read, and byte for byte."""
    year = year_of(registry, projects)
    paths = write_year_templates(year, out)
    assert [path.stem for path in paths] == [project.code for project in projects]
    for path, project in zip(paths, projects):
        alone = template_bytes(year, project)
        assert as_read(path.read_bytes()) == as_read(alone), project
        assert path.read_bytes() == alone, project


def test_archive_of_members_deflated_once_is_what_zipfile_writes():
    members = {"[Content_Types].xml": b"<Types/>", "xl/empty.xml": b"", "xl/random.bin": os.urandom(70_000),
               "xl/worksheets/sheet1.xml": "<c><v>专家服务基层</v></c>".encode() * 5_000}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as book:  # as xlsxwriter's packager
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            book.writestr(info, data)
    written = archive(Member.of(name, data) for name, data in members.items())
    assert written == buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(written)) as book:
        assert book.testzip() is None and {i.filename: book.read(i) for i in book.infolist()} == members


USCC = "91310000132200821H"


def variants(registry: YearRegistry) -> list[RegisteredProject]:
    """A project of every variant: national/municipal × team/base, with and without a USCC, each name
    holding XML's special characters."""
    letters = {"national": "G", "municipal": "S", "team": "T", "base": "B"}
    model = registry.project("2023-GT-01")
    return [dataclasses.replace(model, code=f"{YEAR}-{letters[level]}{letters[kind]}-{90 + number}",
                                level=level, type=kind, uscc=uscc, host_unit=f"依托单位 A&B <{number}>",
                                project_name=f'专家服务&<项目>"{level}"\'{kind}\'{number}')
            for number, (level, kind, uscc) in enumerate(itertools.product(
                ("national", "municipal"), ("team", "base"), ("", USCC)))]


def test_every_variant_is_made_from_its_base_as_rendered_alone(registry, tmp_path):
    projects = variants(registry)
    templates = _Templates(year_of(registry, projects))
    assert all(_filled(templates.base(p), p) is not None for p in projects)  # none falls back
    assert len(templates.bases) == 8
    assert_as_rendered_alone(registry, projects, tmp_path)
    book = openpyxl.load_workbook(tmp_path / f"{projects[-1].code}.xlsx")
    cells = basic_rows(book[BASIC_INFO.name])
    assert (cells["项目名称"].value, cells["统一社会信用代码"].value) == (projects[-1].project_name, USCC)
    assert projects[-1].code in book.properties.title


@pytest.mark.parametrize("field, value", [
    ("project_name", "_x0041_ 项目"),  # xlsxwriter escapes a literal _xHHHH_ (it would read as "A")
    ("project_name", "专家\x07服务"),  # a control character: written as _x0007_
    ("host_unit", " 前导空格单位"),  # leading or trailing whitespace: xml:space="preserve"
    ("project_name", "结尾空格项目\n"),
    ("project_name", "<r>富文本</r>"),  # taken as rich text by xlsxwriter, written raw
    ("project_name", "项目名称"),  # equals a header of 基本信息: xlsxwriter shares the string
    ("host_unit", "上海助力云南德钦乡村振兴村庄规划设计专家服务团"),  # equals the project's name
    ("uscc", "2023-GT-01"),  # equals the code
    ("project_name", "长" * 1001),
])
def test_a_value_not_written_as_plain_text_falls_back_to_rendering_alone(registry, tmp_path, field, value):
    model = dataclasses.replace(registry.project("2023-GT-01"), uscc=USCC)
    odd = dataclasses.replace(model, **{field: value})
    plain = dataclasses.replace(model, code="2023-GT-02", project_name='名称里有换行\n和 &<>"\' 也照常替换')
    templates = _Templates(year_of(registry, [odd, plain]))
    assert _filled(templates.base(odd), odd) is None
    assert _filled(templates.base(plain), plain) is not None
    assert_as_rendered_alone(registry, [odd, plain], tmp_path)


# --- filled as a unit fills it ----------------------------------------------------------------------


def fill_as_a_unit(template: Path, sheets: dict[str, list[list]]) -> bytes:
    """Type the values into the template with openpyxl: only 基本信息's unlocked cells (the locked ones
    already hold what the unit would type), tables below their example row, which stays."""
    import io

    book = openpyxl.load_workbook(template)
    basic = basic_rows(book[BASIC_INFO.name])
    for label, value in sheets[BASIC_INFO.name]:
        cell = basic[label]
        if cell.protection.locked:
            assert str(cell.value) == str(value), label
            continue
        cell.value = value
    for name, rows in sheets.items():
        if name == BASIC_INFO.name:
            continue
        sheet = book[name]
        assert [c.value for c in sheet[1]][:len(rows[0])] == rows[0]
        for r, row in enumerate(rows[1:], start=3):
            for c, value in enumerate(row, start=1):
                sheet.cell(r, c).value = value
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def filled_inbox(templates, registry, tmp_path_factory) -> Path:
    """The 12 projects' packages: each template filled in, zipped with its materials, sent in time."""
    year_dir = tmp_path_factory.mktemp("filled") / "inbox" / str(YEAR)
    year_dir.mkdir(parents=True)
    sent = datetime(YEAR, 11, 6, 10, 0, tzinfo=SHANGHAI)
    for seed, project in enumerate(registry.projects):
        spec = clean_package(project_dict(registry, project.code), YEAR, seed=seed)
        workbook = fill_as_a_unit(templates / f"{project.code}.xlsx", spec.sheets)
        path = year_dir / f"{project.code}.zip"
        path.write_bytes(zip_bytes([(spec.workbook_name, workbook), *spec.files.items()], sent.replace(tzinfo=None)))
        os.utime(path, (sent.timestamp(), sent.timestamp()))
    return year_dir.parent


def test_filled_templates_pass_check_without_any_finding(filled_inbox, registry, tmp_path):
    caps = load_fee_caps()
    for package in sorted((filled_inbox / str(YEAR)).iterdir()):
        result = check_package(package, registry, caps, tmp_path)
        assert result.findings.empty, (package.name, result.findings[["rule_id", "sheet", "row", "message"]])
        assert (result.project_code, result.money.state) == (package.stem, "final")


def test_filled_templates_pass_the_pipeline_without_any_finding(filled_inbox, database_url, run_etl):
    run = run_etl(filled_inbox, database_url)
    assert run.issues.empty, run.issues[["project_code", "rule_id", "sheet", "row", "message"]]
    assert set(run.projects.status) == {"accepted"}
    money = pd.read_csv(run.dir / "reconciliation.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert set(money.status) == {"balanced"} and set(money.provisional) == {"false"}
    # The unit_templates asset ran with the year job: every project's template is in the exports.
    assert len(list((run.dir / "templates").glob("*.xlsx"))) == 12


def test_templates_are_rewritten_only_when_their_registry_entry_changes(registry, database_url, tmp_path):
    from adapters.warehouse import connect, upgrade
    from assets.templates import refresh_year_templates

    engine = connect(database_url)
    upgrade(engine)
    out = tmp_path / "templates"
    assert refresh_year_templates(engine, registry, out) == 12
    assert refresh_year_templates(engine, registry, out) == 0
    (out / "2023-SB-04.xlsx").unlink()
    assert refresh_year_templates(engine, registry, out) == 1 and (out / "2023-SB-04.xlsx").exists()
    renamed = [dataclasses.replace(p, project_name=p.project_name + "（更名）") if p.code == "2023-ST-02" else p
               for p in registry.projects if p.code != "2023-SB-06"]
    changed = YearRegistry(registry.year, registry.notice, registry.deadline, registry.team_completion_date,
                           registry.grants, tuple(renamed))
    assert refresh_year_templates(engine, changed, out) == 1
    assert not (out / "2023-SB-06.xlsx").exists()  # struck off the registry: its template goes
    name = Workbook((out / "2023-ST-02.xlsx").read_bytes()).grid(BASIC_INFO.name)[2][1]
    assert name.endswith("（更名）")
    engine.dispose()
