"""The fast path gives the same findings and money as the slow one, on a generated year.

Fast: one run over the whole year (validation in batches, vectorised checks, bulk writes). Slow:
the same packages arriving in waves, a run after each (every run incremental: only new versions are
read, only changed projects reconciled). Both are checked against what bench/generate.py planted:
the defective packages are exactly the rejected ones, the others' money adds up to the grant.
The CLI runs as a child process, as the benchmark runs it: the synthetic year's registry must be
known before the definitions load (etl/__main__.py).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import postgres_schema

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import generate  # noqa: E402  (bench/generate.py: the benchmark's synthetic years)

EXPORTS = ("projects.csv", "issues.csv", "reconciliation.csv")


def _etl(data: "generate.DataSet", inbox: Path, export: Path, url: str) -> None:
    year = str(data.spec.year)
    result = subprocess.run(
        [sys.executable, "-m", "etl", "run", "--year", year, "--inbox", str(inbox), "--export", str(export),
         "--database-url", url, "--registry", str(data.registry)],
        cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(export)},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _read(export: Path, year: int) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in EXPORTS:
        frame = pd.read_csv(export / str(year) / name, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        tables[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return tables


@pytest.mark.parametrize("fmt,storage", [("xlsx", "sqlite"), ("csv", "postgresql")])
def test_one_run_equals_runs_in_waves_and_what_was_planted(tmp_path, fmt, storage):
    spec = generate.YearSpec("paths", projects=12, lines=60, fmt=fmt, seed=11, defective_share=0.25,
                             leftover_share=0.3)
    data = generate.generate(spec, workers=1, cache_dir=tmp_path / "generated", log=lambda *_: None)
    year = spec.year
    packages = sorted((data.inbox / str(year)).iterdir())

    with postgres_schema() as pg_fast, postgres_schema() as pg_slow:
        urls = {"sqlite": (f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'slow.db'}"),
                "postgresql": (pg_fast, pg_slow)}[storage]
        _etl(data, data.inbox, tmp_path / "fast", urls[0])

        # The inbox fills in three waves (a copy keeps each file's bytes and time).
        waves = tmp_path / "waves" / str(year)
        waves.mkdir(parents=True)
        for wave in (packages[:5], packages[5:9], packages[9:]):
            for package in wave:
                shutil.copy2(package, waves / package.name)
            _etl(data, waves.parent, tmp_path / "slow", urls[1])

    fast, slow = _read(tmp_path / "fast", year), _read(tmp_path / "slow", year)
    for name in EXPORTS:
        pd.testing.assert_frame_equal(fast[name], slow[name], obj=name)

    projects, issues, money = fast["projects.csv"], fast["issues.csv"], fast["reconciliation.csv"]
    defective = set(data.manifest["defective_packages"])
    assert len(defective) == 3
    assert set(projects.loc[projects.status == "rejected", "project_code"]) == defective
    assert set(projects.status) == {"rejected", "accepted"}
    # Every planted defect is found once, in its package's expense lines (a repeated voucher on both
    # of its rows), as its rule says: S008 (a date outside the year) warns, the others are fatal.
    planted = data.manifest["planted"]
    expected = {"S002": planted.get("S002:amount", 0) + planted.get("S002:date", 0),
                "S004": planted.get("S004:refused", 0) + planted.get("S004:unknown", 0),
                "S007": 2 * planted.get("S007", 0),
                **{rule: planted.get(rule, 0) for rule in ("S003", "S005", "S006", "S008")}}
    lines = issues[issues.rule_id.str.startswith("S")]
    assert lines.rule_id.value_counts().to_dict() == {rule: n for rule, n in expected.items() if n}
    assert set(lines.project_code) == defective
    assert set(issues.loc[issues.severity == "fatal", "rule_id"]) <= set(expected) - {"S008"}
    # The clean packages' money adds up: spent + declared leftover = grant, to the fen.
    accepted = money[~money.project_code.isin(defective)]
    assert set(accepted.status) <= {"balanced", "refund_due"}
    leftover = accepted[accepted.status == "refund_due"]
    assert leftover.project_code.nunique() == data.manifest["leftover_packages"]
    for row in accepted.itertuples():
        assert int(row.granted.replace(".", "")) - int(row.spent.replace(".", "")) == int(row.balance.replace(".", ""))
    # bench/generate.py draws every photo from a pool of four, so photos really are reused (M008, M009).
    assert set(issues.loc[issues.severity == "warning", "rule_id"]) <= {"R006", "S008", "M008", "M009"}
    assert set(issues.loc[issues.rule_id == "R006", "project_code"]) == set(leftover.project_code)
