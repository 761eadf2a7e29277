"""The Dagster code location: it loads, its stages read as Chinese to an operator, a year
partition materialises as one run, the validation check carries the findings table, and a second
run re-validates only what changed (or what the run names in its `etl/projects` tag)."""

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

import assets
import schemas
from assets.partitions import PROJECTS_TAG
from assets.validation import FINDINGS_CHECK
from etl.definitions import ASSETS, build_definitions, defs
from tests.conftest import put

REPO = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_generic_top_level_packages_resolve_into_this_repo():
    assert Path(assets.__file__).resolve().parent == REPO / "assets"
    assert Path(schemas.__file__).resolve().parent == REPO / "schemas"


def test_definitions_validate_with_the_dagster_cli():
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "etl.definitions"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout


def test_every_asset_and_check_is_described_in_chinese():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert CJK.search(graph.get(key).description or ""), key
    for spec in (s for a in ASSETS for s in a.check_specs):
        assert CJK.search(spec.description or ""), spec.key


def test_the_year_partition_materialises_with_its_findings(clean, inbox, sqlite_url, tmp_path):
    spec = clean("2023-ST-01")
    spec.sheets["经费支出"][2][2] = "礼品费"
    put(inbox, spec)
    put(inbox, clean("2023-ST-02"))
    resources = build_definitions(inbox=str(inbox), exports=str(tmp_path / "exports"), database_url=sqlite_url).resources
    stages = [a for a in ASSETS if a.key.path[0] != "year_exports"]
    with dg.instance_for_test() as instance:
        result = dg.materialize(stages, instance=instance, resources=resources, partition_key="2023")
        assert result.success
        checks = [e for e in result.get_asset_check_evaluations() if e.check_name == FINDINGS_CHECK]
        assert len(checks) == 1 and not checks[0].passed
        table = next(v.value for k, v in checks[0].metadata.items() if k.startswith("问题清单"))
        assert "S004" in table and "礼品费" in table
        assert _validated(result) == 2 and _reconciled(result) == 12  # every registered project
        assert instance.get_materialized_partitions(dg.AssetKey("package_validation")) == {"2023"}

        again = dg.materialize(stages, instance=instance, resources=resources, partition_key="2023")
        assert again.success and _validated(again) == 0  # nothing changed: nothing is read again
        assert _reconciled(again) == 0

        forced = dg.materialize(stages, instance=instance, resources=resources, partition_key="2023",
                                tags={PROJECTS_TAG: "2023-ST-02"})
        assert forced.success and _validated(forced) == 1 and _reconciled(forced) == 1


def _validated(result: dg.ExecuteInProcessResult) -> int:
    materialization = result.asset_materializations_for_node("package_validation")[0]
    return materialization.metadata["本次校验的材料包版本数"].value


def _reconciled(result: dg.ExecuteInProcessResult) -> int:
    return result.asset_materializations_for_node("reconciliation")[0].metadata["本次重新对账的项目数"].value
