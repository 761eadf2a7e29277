"""The 服务成效 sheet of summary.xlsx: indicators per project, the year-over-year table (后评估) and
the ranking of the bases (定期考核), with a native Excel chart of people served this year and last.

Figures come from assets.indicators' tables as text (exact decimals); a number becomes an Excel
number only when its cell is written.
"""

from __future__ import annotations

from decimal import Decimal

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from adapters.registry import SAMPLE_LABEL, SAMPLE_NOTE, TYPE_ZH
from assets.indicators import INDICATOR_ZH, Outcomes
from assets.plain_cells import PlainCells, write_value
from assets.summary_workbook import display_width

SHEET = "服务成效"
_INDICATORS = [("project_code", "项目编号", "text"), ("type", "类型", "text"), ("project_name", "项目名称", "text"),
               ("provisional", "暂定", "text"), ("activities", "活动次数", "int"), ("service_days", "服务天数", "int"),
               ("experts", "专家人数", "int"), ("expert_days", "专家服务人天", "int"),
               ("people_served", "服务人次", "int"), ("trainees", "培训人次", "int"),
               ("problems_solved", "解决问题数", "int"), ("districts", "服务区县数", "int"), ("photos", "照片数", "int"),
               ("photos_per_activity", "每项活动照片数", "num"), ("spent", "支出（元）", "money"),
               ("spent_per_person_served", "人均支出（元）", "money"),
               ("spent_per_expert_day", "每专家人天支出（元）", "money"), ("spent_by_category", "支出科目占比", "text")]
_YOY = [("project_code", "项目编号", "text"), ("previous_project_code", "上年项目编号", "text"),
        ("indicator", "指标", "text"), ("previous", "上年", "num"), ("current", "本年", "num"),
        ("change", "变化", "num"), ("change_pct", "变化率（%）", "num")]
_RANKING = [("assessment_rank", "排名", "int"), ("project_code", "项目编号", "text"),
            ("project_name", "项目名称", "text"), ("assessment_score", "考核得分", "num"),
            ("provisional", "暂定", "text")]


def write_outcomes_sheet(book: xlsxwriter.Workbook, formats, *, outcomes: Outcomes) -> dict[str, PlainCells]:
    """Add the 服务成效 sheet: three tables one under the other, and the chart beside them.
    `formats` are summary_workbook's (header, and a format by kind). Returns the sheet's plain cells
    (assets/plain_cells.py), for write_summary to put into the file."""
    sheet = book.add_worksheet(SHEET)
    plain = PlainCells()
    bold = book.add_format({"bold": True, "font_size": 12})
    number = {"int": formats.by_kind["int"], "money": formats.by_kind["money"],
              "num": book.add_format({"border": 1, "font_size": 10, "num_format": "0.00"}),
              "text": formats.by_kind["text"]}
    label = SAMPLE_NOTE if outcomes.sample else ""
    if outcomes.sample:  # the file's own title says so too (File > Properties, the print header's source)
        book.set_properties({"title": f"{outcomes.year}年度专家服务基层项目汇总{label}", "keywords": SAMPLE_LABEL})
    sheet.write_string(0, 0, f"{outcomes.year}年度服务成效指标{label}", bold)
    indicators = [{**r, "type": TYPE_ZH[r["type"]], "provisional": "暂定" if r["provisional"] == "true" else ""}
                  for r in outcomes.indicators]
    # The chart's cells stay xlsxwriter's: it stores a copy of the values a chart shows beside the chart.
    charted = {0, [f for f, _, _ in _INDICATORS].index("people_served")}
    row = _table(sheet, plain, formats, number, 1, _INDICATORS, indicators, charted)
    first_data, last_data = 2, row - 1
    row += 1
    sheet.write_string(row, 0, f"后评估：与上一年度比较{label}", bold)
    row = _table(sheet, plain, formats, number, row + 1, _YOY, outcomes.year_over_year)
    if not outcomes.year_over_year:
        sheet.write_string(row, 0, "无上一年度可比较的项目")
        row += 1
    row += 1
    sheet.write_string(row, 0, f"服务基地定期考核排名（权重见 data/rules/assessment.yaml）{label}", bold)
    ranking = [{**r, "provisional": "暂定" if r["provisional"] == "true" else ""} for r in outcomes.ranking]
    row = _table(sheet, plain, formats, number, row + 1, _RANKING, ranking)
    for col, (field, header, _) in enumerate(_INDICATORS):  # the widest table sets the widths
        longest = max([display_width(header) // 2 + 1] + [display_width(str(r.get(field, ""))) for r in indicators])
        sheet.set_column(col, col, min(max(longest + 2, 8), 40))
    if last_data >= first_data:
        _chart(book, sheet, outcomes, first_data, last_data, row + 1)
    sheet.freeze_panes(2, 1)
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.fit_to_pages(1, 0)
    return {SHEET: plain}


def _table(sheet: Worksheet, plain: PlainCells, formats, number: dict, top: int, columns: list[tuple[str, str, str]],
           rows: list[dict], charted: set[int] = frozenset()) -> int:
    """Write a header and rows from `top` (the columns `charted` through xlsxwriter, the others as plain
    cells where they can be); return the first row after the table."""
    for col, (field, header, kind) in enumerate(columns):
        sheet.write_string(top, col, header, formats.header)
        values = [_cell_value(r.get(field, ""), kind) for r in rows]
        if col in charted:
            for r, value in enumerate(values, start=top + 1):
                write_value(sheet, r, col, value, number[kind])
        else:
            plain.write_column(sheet, col, top + 1, values, number[kind])
    return top + 1 + len(rows)


def _cell_value(value: object, kind: str) -> object:
    if value in ("", None):
        return value
    return str(value) if kind == "text" else float(Decimal(str(value)))  # exact text -> number here


def _chart(book: xlsxwriter.Workbook, sheet: Worksheet, outcomes: Outcomes, first: int, last: int, at_row: int) -> None:
    """A bar chart of 服务人次 per project, with last year's figure beside it (hidden helper column)."""
    codes = 0
    served = [f for f, _, _ in _INDICATORS].index("people_served")
    helper = len(_INDICATORS) + 1  # last year's people served, aligned with the indicator rows
    sheet.write_string(first - 1, helper, f"上年{INDICATOR_ZH['people_served']}")
    for offset, r in enumerate(outcomes.indicators):
        if r["previous_people_served"] != "":
            sheet.write_number(first + offset, helper, int(r["previous_people_served"]))
    sheet.set_column(helper, helper, None, None, {"hidden": True})
    chart = book.add_chart({"type": "column"})
    chart.show_hidden_data()
    chart.add_series({"name": [SHEET, first - 1, served], "categories": [SHEET, first, codes, last, codes],
                      "values": [SHEET, first, served, last, served], "fill": {"color": "#4E79A7"}})
    if any(r["previous_people_served"] != "" for r in outcomes.indicators):
        chart.add_series({"name": [SHEET, first - 1, helper], "categories": [SHEET, first, codes, last, codes],
                          "values": [SHEET, first, helper, last, helper], "fill": {"color": "#BAB0AC"}})
    chart.set_title({"name": f"{outcomes.year}年度各项目服务人次（与上一年度比较）"})
    chart.set_y_axis({"name": "服务人次"})
    chart.set_size({"width": 900, "height": 360})
    sheet.insert_chart(at_row, 0, chart)
