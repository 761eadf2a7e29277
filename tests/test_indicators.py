"""Service indicators recomputed by hand from the packages' sheets; the post-evaluation across two
years (previous year's figures, the change) and the ranking of the bases by data/rules/assessment.yaml."""

import zipfile
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import yaml

from adapters.registry import load_year
from assets.indicators import DEFAULT_ASSESSMENT, load_assessment, previous_projects, sheet_counts
from etl.cli import main as cli_main
from etl.sample.builder import ACTIVITIES, EXPENSES, EXPERTS, PHOTOS, TOTAL_LABEL, clean_package, write_package
from etl.sample.year_sample import project_spec
from tests.conftest import put

CENT = Decimal("0.01")


def test_counts_from_typed_rows():
    activities = [
        dict(start_date="2023-06-01", end_date="2023-06-03", region_code="310101", people_served="100",
             trainees="20", problems_solved="3"),
        dict(start_date="2023年6月3日", end_date="", region_code="310101 ", people_served="约50", trainees="5",
             problems_solved="1"),  # overlaps a day; 约50 is unreadable (validation says so): 0
        dict(start_date="2023/7/1", end_date="2023/7/2", region_code="310104", people_served="30", trainees="",
             problems_solved="2"),
    ]
    experts = [dict(service_days="5"), dict(service_days="3"), dict(service_days="")]
    counts = sheet_counts({"服务活动": activities, "专家名单": experts, "影像资料": [{}, {}, {}, {}]})
    assert counts == dict(activities=3, service_days=5, experts=3, expert_days=8, people_served=130, trainees=25,
                          problems_solved=6, districts=2, photos=4)


def by_hand(spec) -> dict:
    """A package's indicators from its sheets as built, with nothing of the pipeline's code."""
    def column(sheet: str, header: str) -> list:
        rows = spec.sheets[sheet]
        index = rows[0].index(header)
        return [row[index] for row in rows[1:] if row[0] != TOTAL_LABEL]

    days = set()
    for start, end in zip(column(ACTIVITIES, "开始日期"), column(ACTIVITIES, "结束日期")):
        days.update(start + timedelta(days=n) for n in range((end - start).days + 1))
    spent = sum(column(EXPENSES, "金额（元）"), Decimal(0))
    by_category: dict[str, Decimal] = defaultdict(Decimal)
    for category, amount in zip(column(EXPENSES, "支出科目"), column(EXPENSES, "金额（元）")):
        by_category[category] += amount
    shares = sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))
    people, expert_days = sum(column(ACTIVITIES, "服务人次")), sum(column(EXPERTS, "服务天数"))
    return dict(activities=len(column(ACTIVITIES, "序号")), service_days=len(days),
                experts=len(column(EXPERTS, "序号")), expert_days=expert_days, people_served=people,
                trainees=sum(column(ACTIVITIES, "培训人次")), problems_solved=sum(column(ACTIVITIES, "解决问题数")),
                districts=len(set(column(ACTIVITIES, "行政区划代码"))), photos=len(column(PHOTOS, "序号")),
                spent=f"{spent:.2f}", spent_per_person_served=str((spent / people).quantize(CENT, ROUND_HALF_UP)),
                spent_per_expert_day=str((spent / expert_days).quantize(CENT, ROUND_HALF_UP)),
                spent_by_category="; ".join(f"{c} {(100 * a / spent).quantize(CENT, ROUND_HALF_UP)}%" for c, a in shares))


def run(year: int, inbox: Path, database_url: str, export: Path) -> pd.DataFrame:
    assert cli_main(["run", "--year", str(year), "--inbox", str(inbox), "--export", str(export),
                     "--database-url", database_url]) == 0
    return pd.read_csv(export / str(year) / "indicators.csv", encoding="utf-8-sig", dtype=str,
                       keep_default_na=False).set_index("project_code")


def test_indicators_year_over_year_and_ranking(database_url, inbox, clean, tmp_path):
    specs_2023 = {code: clean(code) for code in ("2023-SB-01", "2023-SB-02", "2023-ST-01")}
    rejected = specs_2023["2023-ST-01"]
    del rejected.files[next(p for p in rejected.files if "审计报告" in p)]  # M002, fatal: provisional
    for spec in specs_2023.values():
        put(inbox, spec)
    export = tmp_path / "exports"
    table = run(2023, inbox, database_url, export)
    assert len(table) == len(load_year(2023).projects)  # one row per registered project
    for code, spec in specs_2023.items():
        expected = by_hand(spec)
        assert {name: table.at[code, name] for name in expected} == {k: str(v) for k, v in expected.items()}
    assert table.at["2023-ST-01", "provisional"] == "true" and table.at["2023-SB-01", "provisional"] == "false"
    assert table.at["2023-SB-05", "activities"] == ""  # no package: no figures

    registry_2024 = load_year(2024)
    specs_2024 = {code: clean_package(project_spec(registry_2024, registry_2024.project(code)), 2024, seed=7)
                  for code in ("2024-SB-01", "2024-SB-02", "2024-ST-05")}
    for spec in specs_2024.values():
        write_package(spec, inbox / "2024")
    table_2024 = run(2024, inbox, database_url, export)
    assert set(table_2024["sample"]) == {"示例"}
    for code, before in (("2024-SB-01", "2023-SB-01"), ("2024-SB-02", "2023-SB-02")):
        assert table_2024.at[code, "previous_project_code"] == before
        expected = by_hand(specs_2023[before])
        assert table_2024.at[code, "previous_people_served"] == str(expected["people_served"])
        assert table_2024.at[code, "previous_spent"] == expected["spent"]
    assert table_2024.at["2024-ST-05", "previous_project_code"] == ""  # new this year

    # Bases ranked by the weights of data/rules/assessment.yaml, scores recomputed here.
    weights = {k: Decimal(v) for k, v in yaml.safe_load(DEFAULT_ASSESSMENT.read_text(encoding="utf-8"))["weights"].items()}
    bases = table_2024[(table_2024["type"] == "base") & (table_2024["activities"] != "")]
    best = {name: max(Decimal(v) for v in bases[name]) for name in weights}
    scores = {code: (100 * sum(w * Decimal(bases.at[code, name]) / best[name] for name, w in weights.items()))
              .quantize(CENT, ROUND_HALF_UP) for code in bases.index}
    assert {code: Decimal(bases.at[code, "assessment_score"]) for code in bases.index} == scores
    order = sorted(scores, key=lambda code: (-scores[code], code))
    assert [bases.at[code, "assessment_rank"] for code in order] == ["1", "2"]
    assert table_2024.at["2024-ST-05", "assessment_rank"] == ""  # teams are not ranked

    projects = pd.read_csv(export / "2024" / "projects.csv", encoding="utf-8-sig", dtype=str)
    assert set(projects["sample"]) == {"示例"}
    real = pd.read_csv(export / "2023" / "projects.csv", encoding="utf-8-sig", dtype=str)
    assert "sample" not in real.columns  # the real year's contract columns are untouched
    with zipfile.ZipFile(export / "2024" / "summary.xlsx") as book:
        names = book.namelist()
        assert "服务成效" in book.read("xl/workbook.xml").decode("utf-8")
        assert any(name.startswith("xl/charts/chart") for name in names)  # a native Excel chart
        # Texts are in the shared strings or, as plain cells (assets/plain_cells.py), in the sheets.
        strings = "".join(book.read(n).decode("utf-8") for n in names if n.startswith("xl/") and n.endswith(".xml"))
    assert "示例" in strings and "2023-SB-02" in strings and "后评估" in strings


def test_continues_link_and_name_match():
    links = previous_projects(load_year(2024), load_year(2023))
    assert links["2024-SB-03"] == "2023-SB-03"  # renamed, linked by `continues:`
    assert links["2024-SB-02"] == "2023-SB-02"  # same host unit and project name
    assert "2024-ST-05" not in links
    assert sum(load_assessment().weights.values()) == 1


def test_indicators_recompute_only_what_changed_and_equal_a_full_recompute(database_url, inbox, clean, tmp_path):
    """A run recomputes the indicators of a project only when its package in use, its validation or its
    provisional state changed (or a photo of it was not decoded yet); what it keeps equals recomputing
    the whole year."""
    from sqlalchemy import delete, select

    from adapters.warehouse.engine import connect
    from adapters.warehouse.models import ExportFingerprint, PhotoFactsRow, ServiceIndicator
    from assets.indicators import store_indicators

    codes = ("2023-SB-01", "2023-SB-02", "2023-ST-01")
    for code in codes:
        put(inbox, clean(code))
    export = tmp_path / "exports"
    run(2023, inbox, database_url, export)
    engine = connect(database_url)

    def rows() -> dict:
        with engine.connect() as conn:
            return {r.project_code: {c: getattr(r, c) for c in ServiceIndicator.__table__.columns.keys() if c != "id"}
                    for r in conn.execute(select(ServiceIndicator).where(ServiceIndicator.year == 2023))}

    assert store_indicators(engine, 2023) == 0  # nothing changed since the run
    assert store_indicators(engine, 2023, forced={"2023-SB-02"}) == 1

    # A new version of one project: the next run recomputes that project only.
    newer = clean("2023-SB-01", seed=5)
    newer.name = newer.name.replace(".zip", "-v2.zip") if newer.name.endswith(".zip") else newer.name + "-v2"
    put(inbox, newer)
    run(2023, inbox, database_url, export)
    incremental = rows()
    with engine.begin() as conn:  # forget every key: the whole year is computed afresh
        conn.execute(delete(ExportFingerprint).where(ExportFingerprint.name.startswith("indicators/")))
    assert store_indicators(engine, 2023) == len(codes)
    assert rows() == incremental

    # A photo whose facts are missing (its decoding failed) keeps its project recomputed until decoded.
    with engine.begin() as conn:
        conn.execute(delete(PhotoFactsRow))
    assert store_indicators(engine, 2023) == 0  # keys unchanged: nothing to recompute…
    with engine.begin() as conn:
        conn.execute(delete(ExportFingerprint).where(ExportFingerprint.name.startswith("indicators/")))
    assert store_indicators(engine, 2023) == len(codes)
    assert store_indicators(engine, 2023) == len(codes)  # …but undecoded photos leave no key behind
