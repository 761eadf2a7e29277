"""The sample inbox `make run` shows: every planted defect is found where it was planted, and
nothing else is (no finding at all on the clean and messy-but-valid packages)."""

import pytest

from etl.cli import main
from etl.sample import year_sample
from tests.conftest import Run, tree_digest


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    assert main(["sample", "--year", "2023", "--out", str(root / "inbox")]) == 0
    before = tree_digest(root / "inbox")
    assert main(["run", "--year", "2023", "--inbox", str(root / "inbox"), "--export", str(root / "exports"),
                 "--database-url", f"sqlite:///{root / 'w.db'}"]) == 0
    assert tree_digest(root / "inbox") == before
    return Run(root / "exports"), year_sample.EXPECTED


def _key(package, rule_id, sheet, row):
    return (package, rule_id, sheet, "" if row is None else str(row))


def test_findings_are_exactly_the_planted_defects(sample_run):
    run, expected = sample_run
    found = {_key(*r) for r in run.issues[["package", "rule_id", "sheet", "row"]].itertuples(index=False)}
    assert found == {_key(*e) for e in expected}


def test_every_rule_of_the_spine_appears(sample_run):
    run, _ = sample_run
    spine = {"P001", "P002", "P003", "P004", "P005", "P006", "P007", "M001", "M002", "M003", "M004", "M005",
             *(f"S{n:03d}" for n in range(1, 11))}
    assert spine <= set(run.issues.rule_id)


def test_statuses(sample_run):
    run, _ = sample_run
    statuses = run.projects.set_index("project_code")["status"]
    assert statuses["2023-SB-05"] == "missing"
    assert statuses["2023-SB-02"] == "accepted"  # messy but valid; its older unsafe archive is superseded
    assert statuses["2023-ST-01"] == "accepted"  # the corrected version is in use
    assert statuses["2023-ST-03"] == "rejected"
    assert statuses["2023-SB-04"] == "accepted"  # warnings only
    assert (run.projects.status != "missing").sum() == 11
