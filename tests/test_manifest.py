"""manifest.json and the versions of the rule set and the registry, on SQLite and PostgreSQL: a
registry edit changes the registry version and redoes only the project it touches; a change to the
rule data changes the rule-set version and re-reads no package."""

from __future__ import annotations

import hashlib
import json
import shutil

from openpyxl import load_workbook
from sqlalchemy import create_engine

from adapters.fee_caps import DEFAULT_FEE_CAPS
from adapters.registry import DEFAULT_REGISTRY_DIR
from adapters.warehouse import store
from assets.manifest import changed_projects
from etl.cli import main as cli_main
from tests.conftest import Run, put

EDITED = "2023-ST-01"


def run_with(inbox, export, url, registry_dir) -> Run:
    assert cli_main(["run", "--year", "2023", "--inbox", str(inbox), "--export", str(export), "--database-url", url,
                     "--registry", str(registry_dir)]) == 0
    return Run(export)


def state(url: str) -> tuple[dict, dict]:
    """Each package's validation key (by project) and each project's reconciliation key."""
    engine = create_engine(url)
    with engine.connect() as conn:
        validated = {p.project_code: p.validated_key for p in store.package_versions(conn, 2023)}
        money = store.fingerprints(conn, 2023, "reconciliation/")
    engine.dispose()
    return validated, money


def manifest(run: Run) -> dict:
    return json.loads((run.dir / "manifest.json").read_text(encoding="utf-8"))


def test_registry_edit_changes_its_version_and_redoes_only_that_project(clean, inbox, database_url, tmp_path):
    registry_dir = tmp_path / "registry"
    shutil.copytree(DEFAULT_REGISTRY_DIR, registry_dir)
    for code in (EDITED, "2023-SB-01", "2023-GT-02"):
        put(inbox, clean(code))
    first = run_with(inbox, tmp_path / "e1", database_url, registry_dir)
    before = manifest(first)
    keys_before = state(database_url)
    assert first.status(EDITED) == "accepted"
    assert set(before) == {"run_id", "time", "code_version", "rules_version", "registry_version", "files"}
    # Every export file is listed with its hash, the manifest itself excepted.
    listed = {p.relative_to(first.dir).as_posix() for p in first.dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(before["files"]) == listed and "summary.xlsx" in listed
    for name, sha in before["files"].items():
        assert hashlib.sha256((first.dir / name).read_bytes()).hexdigest() == sha

    # The bureau corrects the unit's registered name: the package now names another unit (P006).
    path = registry_dir / "2023.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "host_unit: 复旦大学附属肿瘤医院\n    aliases: [复旦肿瘤医院]", "host_unit: 复旦大学附属肿瘤医院（本部）"),
        encoding="utf-8")
    second = run_with(inbox, tmp_path / "e2", database_url, registry_dir)
    after = manifest(second)
    keys_after = state(database_url)
    assert after["registry_version"] != before["registry_version"]
    assert after["rules_version"] == before["rules_version"] and after["run_id"] != before["run_id"]
    assert second.status(EDITED) == "rejected" and "P006" in set(second.findings(package=None).rule_id)
    for stored_before, stored_after in zip(keys_before, keys_after):
        assert {code for code in stored_after if stored_after[code] != stored_before.get(code)} == {EDITED}
    # The summary says which project changed since the previous export, and why; its header the versions.
    summary = load_workbook(second.dir / "summary.xlsx")
    changed = [row for row in summary["本次变化"].iter_rows(min_row=2, values_only=True)]
    assert [(row[0], row[1], row[2], row[-1]) for row in changed] == [(EDITED, "通过", "退回", "登记册")]
    assert after["registry_version"][:12] in summary["汇总表"].oddHeader.left.text


def test_rule_data_change_changes_the_rules_version_and_rereads_no_package(clean, inbox, database_url, tmp_path,
                                                                           monkeypatch):
    for code in (EDITED, "2023-SB-01"):
        put(inbox, clean(code))
    first = run_with(inbox, tmp_path / "e1", database_url, DEFAULT_REGISTRY_DIR)
    validated_before, money_before = state(database_url)
    caps = tmp_path / "fee_caps.yaml"
    caps.write_text(DEFAULT_FEE_CAPS.read_text(encoding="utf-8").replace('senior: "2400.00"', 'senior: "2000.00"'),
                    encoding="utf-8")
    monkeypatch.setenv("ETL_FEE_CAPS", str(caps))
    second = run_with(inbox, tmp_path / "e2", database_url, DEFAULT_REGISTRY_DIR)
    validated_after, money_after = state(database_url)
    assert manifest(second)["rules_version"] != manifest(first)["rules_version"]
    assert manifest(second)["registry_version"] == manifest(first)["registry_version"]
    # Fee caps are money rules: the projects are reconciled again, no package is validated again.
    assert validated_after == validated_before
    assert money_after.keys() == money_before.keys() and money_after != money_before


def test_changed_projects_say_why():
    base = dict(status="rejected", spent={"市级经费": ""}, package="a.zip", waivers=[], rules="r1", registry="g1")
    previous = {"A": base, "B": base, "C": base, "D": base}
    current = {
        "A": dict(base, status="accepted", spent={"市级经费": "100.00"}, package="b.zip"),  # a corrected package
        "B": dict(base, status="accepted", waivers=[3]),  # a waiver
        "C": dict(base, rules="r2"),  # new rules, same outcome: not listed
        "D": dict(base, status="accepted", rules="r2", registry="g2"),
        "E": dict(base, status="accepted"),  # first seen: nothing to compare
    }
    assert [(c["project_code"], c["status_before"], c["status_now"], c["spent_before"], c["spent_now"], c["reasons"])
            for c in changed_projects(previous, current)] == [
        ("A", "rejected", "accepted", "", "100.00", "新材料包"),
        ("B", "rejected", "accepted", "", "", "豁免"),
        ("D", "rejected", "accepted", "", "", "规则、登记册"),
    ]
    assert changed_projects({}, current) == []
