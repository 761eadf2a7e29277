"""Service indicators per project and year, and the post-evaluation (后评估) across years.

The notice announces that teams and bases will be inspected, "建立后评估制度，跟踪工作成效" and
"建立定期考核机制". This stage turns what the package in use says (服务活动, 专家名单, 影像资料, 经费支出)
into the figures such an assessment needs, puts a project beside its own previous year (matched by
host unit and project name, or the registry's `continues:` link), and ranks the bases on the weighted
indicators of data/rules/assessment.yaml. A rejected package's figures are kept, marked provisional.
Ratios are exact (Decimal, from integer fen and counts).
"""


import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml
from sqlalchemy import Connection, Engine, delete, insert, select

from adapters.registry import SAMPLE_LABEL, TYPE_ZH, YearRegistry, normalize_name
from adapters.resources import RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.warehouse.models import ExpenseTotal, ServiceIndicator, SheetRow
from assets.charts import as_markdown_image
from assets import evidence
from assets.evidence import listed_photos, photo_evidence, stored_facts
from assets.incremental import code_hash, digest, to_redo
from assets.partitions import forced_projects, single_run, year_partitions, years_of_run
from assets.reconciliation import reconciliation
from schemas.layout import ACTIVITIES, EXPERTS, PHOTOS
from schemas import values
from schemas.values import date_of, fen_to_yuan, int_of

ASSESSMENT_ENV = "ETL_ASSESSMENT"
DEFAULT_ASSESSMENT = Path(__file__).resolve().parents[1] / "data" / "rules" / "assessment.yaml"
COUNTS = ("activities", "service_days", "experts", "expert_days", "people_served", "trainees", "problems_solved",
          "districts", "photos", "photos_without_exif")
# indicators.csv (README: "indicators.csv"); columns are only ever added at the end.
COMPARED = ("activities", "service_days", "expert_days", "people_served", "trainees", "problems_solved", "districts",
            "spent")
INDICATOR_COLUMNS = ["year", "project_code", "type", "host_unit", "project_name", "sample", "provisional", *COUNTS,
                     "photos_per_activity", "spent", "spent_per_person_served", "spent_per_expert_day",
                     "spent_by_category", "previous_project_code", *(f"previous_{c}" for c in COMPARED),
                     "assessment_score", "assessment_rank"]
INDICATOR_ZH = {"activities": "活动次数", "service_days": "服务天数", "experts": "专家人数", "expert_days": "专家服务人天",
                "people_served": "服务人次", "trainees": "培训人次", "problems_solved": "解决问题数",
                "districts": "服务区县数", "photos": "照片数", "photos_without_exif": "无拍摄时间照片数",
                "photos_per_activity": "每项活动照片数", "spent": "支出（元）"}
_CENT = Decimal("0.01")
_MAX_ACTIVITY_DAYS = 366  # a mistyped end date must not count as years of service
_IDS_PER_QUERY = 5000  # bounded IN lists
_KEYS = "indicators/"  # each project's indicators: what they were computed from


def compute_indicators(conn: Connection, year: int, in_use: dict, provisional: set[int]
                       ) -> tuple[list[dict], set[str]]:
    """The indicator rows (service_indicator) of these projects (project -> its package in use, readable),
    and the projects among them with a listed photo not decoded yet (its no-EXIF count may still change)."""
    ids = [p.id for p in in_use.values()]
    if not ids:
        return [], set()
    rows: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    spent: dict[int, dict[str, int]] = defaultdict(dict)
    for start in range(0, len(ids), _IDS_PER_QUERY):
        part = ids[start:start + _IDS_PER_QUERY]
        for package_id, sheet, data in conn.execute(
                select(SheetRow.package_id, SheetRow.sheet, SheetRow.data)
                .where(SheetRow.package_id.in_(part), SheetRow.sheet.in_([ACTIVITIES.name, EXPERTS.name, PHOTOS.name]))):
            rows[package_id][sheet].append(json.loads(data))
        # The fen read per category, from the lines as validation counted them (expense_total): a pass
        # over a year's million lines took 0.4 s at every run.
        for package_id, category, fen in conn.execute(
                select(ExpenseTotal.package_id, ExpenseTotal.category, ExpenseTotal.fen)
                .where(ExpenseTotal.package_id.in_(part), ExpenseTotal.amounts > 0)):
            spent[package_id][category] = spent[package_id].get(category, 0) + fen
    photos = listed_photos(conn, year, in_use)
    facts = stored_facts(conn, {p.sha256 for p in photos})
    no_exif: dict[int, int] = defaultdict(int)
    undecoded = set()
    for p in photos:
        if p.sha256 not in facts:
            undecoded.add(p.project_code)
        elif not facts[p.sha256].error and facts[p.sha256].taken_at is None:
            no_exif[p.package_id] += 1
    return [dict(year=year, project_code=code, package_id=p.id, provisional=p.id in provisional,
                 **sheet_counts(rows[p.id]), photos_without_exif=no_exif[p.id], spent_fen=sum(spent[p.id].values()),
                 spent_by_category=json.dumps(dict(sorted(spent[p.id].items())), ensure_ascii=False))
            for code, p in sorted(in_use.items())], undecoded


def sheet_counts(sheets: dict[str, list[dict]]) -> dict[str, int]:
    """Counts of one package from its rows as typed: a blank or unreadable number counts as 0
    (validation reports it); service days are the calendar days with an activity under way."""
    activities, experts = sheets.get(ACTIVITIES.name, []), sheets.get(EXPERTS.name, [])
    days = set()
    for row in activities:
        start = date_of(row.get("start_date"))
        end = date_of(row.get("end_date")) or start
        if start and end and 0 <= (end - start).days < _MAX_ACTIVITY_DAYS:
            days.update(start + timedelta(days=n) for n in range((end - start).days + 1))
        elif start:
            days.add(start)

    def total(items: list[dict], field: str) -> int:
        return sum(max(int_of(row.get(field)) or 0, 0) for row in items)

    return dict(activities=len(activities), service_days=len(days), experts=len(experts),
                expert_days=total(experts, "service_days"), people_served=total(activities, "people_served"),
                trainees=total(activities, "trainees"), problems_solved=total(activities, "problems_solved"),
                districts=len({str(row.get("region_code") or "").strip() for row in activities} - {""}),
                photos=len(sheets.get(PHOTOS.name, [])))


# What a project's indicators are computed by: this module, the photos' listing, the readings of values.
_INDICATORS_CODE = code_hash(sys.modules[__name__], evidence, values)


def store_indicators(engine: Engine, year: int, forced: set[str] = frozenset()) -> int:
    """Recompute the indicator rows of the projects whose package in use, its validation key (its content
    and the rules' code) or its provisional state changed, or that are `forced`; a backfill of one
    package then reads one package, not the year's million lines. Returns how many were recomputed."""
    with engine.begin() as conn:
        in_use = {code: p for code, p in store.newest_packages(conn, year).items() if p.intake_status == "readable"}
        provisional = store.fatal_package_ids(conn, [p.id for p in in_use.values()], store.ALL_STAGES_BUT_NATIONAL)
        keys = {code: digest(_INDICATORS_CODE, p.id, p.validated_key, p.id in provisional) for code, p in in_use.items()}
        redo = to_redo(keys, store.fingerprints(conn, year, _KEYS), forced)
        stored = set(conn.execute(select(ServiceIndicator.project_code).where(ServiceIndicator.year == year)).scalars())
        gone = stored - keys.keys()  # no package in use any more, or a refused one
        rows, undecoded = compute_indicators(conn, year, {code: in_use[code] for code in redo}, provisional)
        for start in range(0, len(redo) + len(gone), _IDS_PER_QUERY):
            codes = [*redo, *gone][start:start + _IDS_PER_QUERY]
            conn.execute(delete(ServiceIndicator).where(ServiceIndicator.year == year,
                                                        ServiceIndicator.project_code.in_(codes)))
        if rows:
            conn.execute(insert(ServiceIndicator), rows)
        # A project with a photo not decoded yet keeps no key: the next run counts it again.
        store.set_fingerprints(conn, year, _KEYS, {**{code: "" if code in undecoded else keys[code] for code in redo},
                                                   **dict.fromkeys(gone)})
    return len(rows)


def stored_indicators(conn: Connection, year: int) -> dict[str, ServiceIndicator]:
    return {r.project_code: r for r in conn.execute(select(ServiceIndicator).where(ServiceIndicator.year == year))}


# --- post-evaluation ---------------------------------------------------------------------------

def previous_projects(registry: YearRegistry, previous: YearRegistry | None) -> dict[str, str]:
    """project code -> the code of the previous year's project it carries on: the registry's
    `continues:` link, else the project of the same host unit and project name."""
    if previous is None:
        return {}
    by_name = {(normalize_name(p.host_unit), normalize_name(p.project_name)): p.code for p in previous.projects}
    matched = {}
    for p in registry.projects:
        code = p.continues if previous.project(p.continues) else by_name.get(
            (normalize_name(p.host_unit), normalize_name(p.project_name)))
        if code:
            matched[p.code] = code
    return matched


@dataclass(frozen=True)
class Assessment:
    applies_to: str
    weights: dict[str, Decimal]


def load_assessment(path: Path | str | None = None) -> Assessment:
    doc = yaml.safe_load(Path(path or os.environ.get(ASSESSMENT_ENV) or DEFAULT_ASSESSMENT).read_text(encoding="utf-8"))
    weights = {name: Decimal(str(w)) for name, w in doc["weights"].items()}
    if sum(weights.values()) != 1:
        raise ValueError(f"assessment weights add up to {sum(weights.values())}, not 1")
    return Assessment(str(doc.get("applies_to", "base")), weights)


def _value(row: dict, name: str) -> Decimal:
    return Decimal(row[name]) if row[name] != "" else Decimal(0)


def rank(table: list[dict], assessment: Assessment) -> None:
    """Fill assessment_score and assessment_rank of the rows of the assessed type (see assessment.yaml)."""
    ranked = [row for row in table if row["type"] == assessment.applies_to and row["activities"] != ""]
    best = {name: max((_value(row, name) for row in ranked), default=Decimal(0)) for name in assessment.weights}
    for row in ranked:
        score = sum((w * _value(row, name) / best[name] for name, w in assessment.weights.items() if best[name]),
                    Decimal(0))
        row["assessment_score"] = (100 * score).quantize(_CENT, ROUND_HALF_UP)
    ranked.sort(key=lambda row: (-row["assessment_score"], row["project_code"]))
    for position, row in enumerate(ranked, start=1):
        row["assessment_rank"] = position
        row["assessment_score"] = str(row["assessment_score"])


def _ratio(numerator: Decimal, denominator: int) -> str:
    return str((numerator / denominator).quantize(_CENT, ROUND_HALF_UP)) if denominator else ""


def indicator_table(conn: Connection, registry: YearRegistry, previous: YearRegistry | None,
                    assessment: Assessment) -> list[dict]:
    """indicators.csv, as text: one row per registered project (blank figures when no package was
    read), beside the previous year's figures where the project carries one on; bases ranked."""
    mine = stored_indicators(conn, registry.year)
    earlier = stored_indicators(conn, previous.year) if previous else {}
    links = previous_projects(registry, previous)
    table = []
    for project in sorted(registry.projects, key=lambda p: p.code):
        row = dict.fromkeys(INDICATOR_COLUMNS, "")
        row.update(year=registry.year, project_code=project.code, type=project.type, host_unit=project.host_unit,
                   project_name=project.project_name, sample=SAMPLE_LABEL if registry.sample else "")
        found = mine.get(project.code)
        if found is not None:
            row.update({name: getattr(found, name) for name in COUNTS}, provisional=str(found.provisional).lower(),
                       spent=fen_to_yuan(found.spent_fen),
                       photos_per_activity=_ratio(Decimal(found.photos), found.activities),
                       spent_per_person_served=_ratio(Decimal(found.spent_fen) / 100, found.people_served),
                       spent_per_expert_day=_ratio(Decimal(found.spent_fen) / 100, found.expert_days),
                       spent_by_category=_shares(json.loads(found.spent_by_category), found.spent_fen))
        row["previous_project_code"] = links.get(project.code, "")
        before = earlier.get(row["previous_project_code"])
        if before is not None:
            row.update({f"previous_{name}": (fen_to_yuan(before.spent_fen) if name == "spent" else getattr(before, name))
                        for name in COMPARED})
        table.append(row)
    rank(table, assessment)
    return table


def _shares(by_category: dict[str, int], total: int) -> str:
    """'差旅费 35.20%; 住宿费 20.00%; …' (largest first), exact percentages of the fen spent."""
    if not total:
        return ""
    shares = sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{c or '（未填写）'} {(Decimal(100 * fen) / total).quantize(_CENT, ROUND_HALF_UP)}%"
                     for c, fen in shares)


def year_over_year(table: list[dict]) -> list[dict]:
    """The projects with a previous year, indicator by indicator: previous, current, change (text)."""
    rows = []
    for row in table:
        if row["previous_activities"] == "" or row["activities"] == "":
            continue
        for name in COMPARED:
            now, before = Decimal(str(row[name])), Decimal(str(row[f"previous_{name}"]))
            rows.append(dict(project_code=row["project_code"], previous_project_code=row["previous_project_code"],
                             indicator=INDICATOR_ZH[name], previous=str(row[f"previous_{name}"]), current=str(row[name]),
                             change=str(now - before),
                             change_pct=str((100 * (now - before) / before).quantize(_CENT, ROUND_HALF_UP))
                             if before else ""))
    return rows


@dataclass(frozen=True)
class Outcomes:
    """What the exports show of a year's outcomes: indicators.csv's rows, the year-over-year table and
    the assessed projects in rank order."""

    year: int
    sample: bool
    indicators: list[dict]
    year_over_year: list[dict]
    ranking: list[dict]


def year_indicator_tables(conn: Connection, registry: YearRegistry, previous: YearRegistry | None,
                          assessment: Assessment | None = None) -> Outcomes:
    table = indicator_table(conn, registry, previous, assessment or load_assessment())
    ranking = sorted((r for r in table if r["assessment_rank"] != ""), key=lambda r: r["assessment_rank"])
    return Outcomes(registry.year, registry.sample, table, year_over_year(table), ranking)


def previous_registry(registry: RegistryResource, year: int) -> YearRegistry | None:
    try:
        return registry.year(year - 1)
    except FileNotFoundError:
        return None


def _chart_svg(table: list[dict]) -> str:
    """服务人次 per project, this year's bar beside the previous year's where there is one (SVG)."""
    shown = [r for r in table if r["activities"] != ""][:40]
    scale = max([int(r["people_served"]) for r in shown] + [int(r["previous_people_served"] or 0) for r in shown]
                + [1])
    left, width, step = 110, 480, 26
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{40 + step * len(shown)}" '
             f'font-family="sans-serif" font-size="12"><text x="{left}" y="16" font-weight="bold">'
             '服务人次（蓝：本年度，灰：上一年度）</text>']
    for i, r in enumerate(shown):
        y = 28 + i * step
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{r["project_code"]}</text>')
        now = width * int(r["people_served"]) / scale
        parts.append(f'<rect x="{left}" y="{y}" width="{now:.1f}" height="10" fill="#4e79a7"/>'
                     f'<text x="{left + now + 4:.1f}" y="{y + 9}">{r["people_served"]}</text>')
        if r["previous_people_served"] != "":
            before = width * int(r["previous_people_served"]) / scale
            parts.append(f'<rect x="{left}" y="{y + 11}" width="{before:.1f}" height="8" fill="#bab0ac"/>')
    parts.append("</svg>")
    return "".join(parts)


@dg.asset(deps=[reconciliation, photo_evidence], partitions_def=year_partitions, backfill_policy=single_run,
          group_name="evidence", kinds={"python"})
def service_indicators(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       registry: RegistryResource) -> dg.MaterializeResult:
    """服务成效指标：按项目和年度，从在用材料包统计活动次数、服务天数、专家人数与服务人天、服务人次、培训人次、
    解决问题数、服务区县数、每项活动照片数、人均支出和每专家人天支出、各支出科目占比；被退回材料包的数据标为暂定。
    后评估：连续立项的基地和服务团与上一年度并列比较，服务基地按 data/rules/assessment.yaml 的权重排名。"""
    engine, assessment = warehouse.engine(), load_assessment()
    metadata: dict[str, dg.MetadataValue] = {}
    for year in years_of_run(context):
        store_indicators(engine, year, forced_projects(context))
        this = registry.year(year)
        with engine.connect() as conn:
            table = indicator_table(conn, this, previous_registry(registry, year), assessment)
        label = f"{year}{'（' + SAMPLE_LABEL + '）' if this.sample else ''}"
        shown = pd.DataFrame([{"项目": r["project_code"], "类型": TYPE_ZH[r["type"]], "暂定": r["provisional"],
                               **{INDICATOR_ZH[n]: r[n] for n in ("activities", "service_days", "expert_days",
                                                                   "people_served", "problems_solved", "districts",
                                                                   "photos_per_activity", "spent")},
                               "上年项目": r["previous_project_code"], "考核得分": r["assessment_score"],
                               "排名": r["assessment_rank"]} for r in table[:200]])
        metadata[f"{label} 服务成效指标"] = dg.MetadataValue.md(
            shown.to_markdown(index=False, disable_numparse=True) if len(shown) else "无")
        metadata[f"{label} 服务人次图"] = dg.MetadataValue.md(as_markdown_image(_chart_svg(table), "服务人次"))
    return dg.MaterializeResult(metadata=metadata)
