"""Operating it: the inbox sensor, the nightly schedule, a backfill after a late package."""

import json
import os
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from openpyxl import load_workbook

from adapters.national_system import TOKEN_ENV
from etl.alerts import failure_message
from etl.cli import main
from etl.definitions import build_definitions
from etl.sample.builder import SHANGHAI, PackageSpec
from etl.schedules import nightly
from etl.sensors import inbox_sensor
from tests.conftest import Run, put


def _sensor(inbox, tmp_path, instance, cursor=None):
    resources = build_definitions(inbox=str(inbox), exports=str(tmp_path / "exports"),
                                  database_url=f"sqlite:///{tmp_path / 'w.db'}").resources
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return inbox_sensor(context)


def test_sensor_requests_each_new_content_once(clean, inbox, tmp_path):
    first = put(inbox, clean("2023-ST-01"))
    broken = inbox / "2023" / "坏包.zip"
    broken.write_bytes(b"not a zip at all")
    with dg.instance_for_test() as instance:
        result = _sensor(inbox, tmp_path, instance)
        # Both new packages (the unreadable one too: its finding must be recorded) run the year, once.
        assert [(r.partition_key, r.tags["etl/new_packages"]) for r in result.run_requests] == [("2023", "2")]
        first_key = result.run_requests[0].run_key

        # Same inbox again (the cursor survives): nothing. A touch changes no content: nothing.
        os.utime(first, (first.stat().st_atime, first.stat().st_mtime + 60))
        again = _sensor(inbox, tmp_path, instance, cursor=result.cursor)
        assert again.run_requests == []

        # A corrected package of the same project is new content: one more run of the year.
        put(inbox, PackageSpec(**{**clean("2023-ST-01", seed=5).__dict__, "name": "更正版.zip"}))
        third = _sensor(inbox, tmp_path, instance, cursor=again.cursor)
        assert [(r.partition_key, r.tags["etl/new_packages"]) for r in third.run_requests] == [("2023", "1")]
        assert third.run_requests[0].run_key != first_key
        assert "更正版.zip" in json.loads(third.cursor)["2023"]


def test_nightly_schedule_at_two_in_shanghai(tmp_path):
    assert nightly.cron_schedule == "0 2 * * *" and nightly.execution_timezone == "Asia/Shanghai"
    with dg.instance_for_test() as instance:
        night = datetime(2023, 11, 12, 2, 0, tzinfo=SHANGHAI)
        defs = build_definitions(exports=str(tmp_path))
        # The repository lets the tick check that its partition key is a year the job knows.
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=night, resources=defs.resources,
                                       repository_def=defs.get_repository_def()) as context:
            requests = nightly.evaluate_tick(context).run_requests
            # One run per registered year: 2023 and the sample year 2024 (data/registry/2024.yaml, 示例).
            assert [r.run_key for r in requests] == ["nightly-2023-2023-11-12", "nightly-2024-2023-11-12"]
            assert requests[0].partition_key == "2023"
            # The same night evaluated twice asks for the same run key: Dagster launches it once.
            assert nightly.evaluate_tick(context).run_requests[0].run_key == requests[0].run_key


def test_failure_message_is_chinese_and_names_the_step():
    message = failure_message("year_job", "0123456789abcdef", ["reconciliation"], "disk full")
    assert "运行 01234567 失败" in message and "reconciliation" in message and "disk full" in message


def _projects_without(run: Run, codes: set[str]) -> pd.DataFrame:
    return run.projects[~run.projects.project_code.isin(codes)].reset_index(drop=True)


def _issues_without(run: Run, codes: set[str]) -> pd.DataFrame:
    return run.issues[~run.issues.project_code.isin(codes)].reset_index(drop=True)


def test_backfill_after_late_packages(clean, inbox, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "test-token-backfill")
    db, export, state = f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "exports", str(tmp_path / "national.sqlite3")
    codes = ["2023-GT-02", "2023-ST-01", "2023-SB-01"]
    for code in codes:
        put(inbox, clean(code))
    common = ["--year", "2023", "--inbox", str(inbox), "--export", str(export), "--database-url", db,
              "--national-mock", state]
    assert main(["run", *common]) == 0
    before = Run(export)
    assert before.status("2023-GT-02") == "synced" and before.status("2023-SB-05") == "missing"
    feedback = export / "2023" / "feedback"
    # Clean projects have nothing to act on: no feedback file. Missing ones are asked to hand in.
    assert not (feedback / "2023-ST-01.xlsx").exists() and (feedback / "2023-SB-05.xlsx").exists()
    untouched = {p.name: p.stat().st_mtime_ns for p in feedback.glob("*.xlsx") if p.stem not in ("2023-SB-05", "2023-GT-02")}

    # Late: a corrected package of a national team (another photo caption), and a first package of SB-05.
    corrected = clean("2023-GT-02", seed=9)
    corrected.name = "敬业中学-更正.zip"
    corrected.modified_at = datetime(2023, 11, 20, 10, 0, tzinfo=SHANGHAI)
    late = clean("2023-SB-05")
    late.modified_at = datetime(2023, 11, 21, 9, 30, tzinfo=SHANGHAI)
    put(inbox, corrected)
    put(inbox, late)
    assert main(["backfill", "--project", "2023-GT-02", "--project", "2023-SB-05", *common]) == 0
    after = Run(export)

    changed = {"2023-GT-02", "2023-SB-05"}
    # Feedback of projects the backfill did not change is not rewritten.
    assert {name: (feedback / name).stat().st_mtime_ns for name in untouched} == untouched
    # Nothing else changed.
    pd.testing.assert_frame_equal(_projects_without(after, changed), _projects_without(before, changed))
    pd.testing.assert_frame_equal(_issues_without(after, changed), _issues_without(before, changed))
    # The backfilled projects reflect the new packages.
    rows = after.projects.set_index("project_code")
    assert rows.at["2023-GT-02", "package"] == "敬业中学-更正.zip" and rows.at["2023-GT-02", "status"] == "synced"
    assert rows.at["2023-SB-05", "status"] == "accepted" and rows.at["2023-SB-05", "late"] == "true"
    gt02 = after.findings(package=clean("2023-GT-02").name)
    assert set(gt02.rule_id) == {"P007"}
    assert set(after.findings(package=late.name).rule_id) == {"T001"}
    assert "2023-SB-05" not in set(after.findings("T003").project_code)
    # The year's summary lists the late project; the national filing was corrected, not duplicated.
    summary = load_workbook(export / "2023" / "summary.xlsx", read_only=True)["汇总表"]
    listed = {r[0]: r for r in summary.iter_rows(min_row=2, values_only=True)}
    assert "2023-SB-05" in listed and "通过" in listed["2023-SB-05"]
    report = json.loads((export / "2023" / "national" / "2023-GT-02.json").read_text(encoding="utf-8"))
    assert report["project"]["code"] == "2023-GT-02"
    from adapters.national_system.mock_server import MockState

    filings = [f for f in MockState(Path(state)).snapshot()["filings"] if f["project_code"] == "2023-GT-02"]
    assert len(filings) == 1 and len(filings[0]["revisions"]) == 2


def test_sensor_skips_content_a_run_already_took_in(clean, inbox, tmp_path):
    put(inbox, clean("2023-ST-02"))
    assert main(["run", "--year", "2023", "--inbox", str(inbox), "--export", str(tmp_path / "exports"),
                 "--database-url", f"sqlite:///{tmp_path / 'w.db'}"]) == 0
    with dg.instance_for_test() as instance:
        assert _sensor(inbox, tmp_path, instance).run_requests == []  # first tick, empty cursor: nothing new


def test_run_summary_lists_files_and_counts_a_crowded_folder(tmp_path, capsys):
    """The CLI's summary after a run: the year's own files by path, and a folder of a national year's
    thousands of workbooks as one line with its count."""
    from etl.report import print_summary

    year_dir = tmp_path / "2099"
    (year_dir / "feedback").mkdir(parents=True)
    (year_dir / "changes").mkdir()
    (year_dir / "projects.csv").write_text("project_code,status\n2099-GT-01,accepted\n", encoding="utf-8-sig")
    (year_dir / "issues.csv").write_text("project_code,rule_id,severity\n", encoding="utf-8-sig")
    for i in range(1, 31):
        (year_dir / "feedback" / f"2099-GT-{i:02d}.xlsx").write_bytes(b"")
    (year_dir / "changes" / "2099-GT-01.xlsx").write_bytes(b"")
    print_summary(year_dir)
    listed = capsys.readouterr().out.split("== 导出文件 Exports ==\n")[1].splitlines()
    assert listed == [f"  {year_dir / 'issues.csv'}", f"  {year_dir / 'projects.csv'}",
                      f"  {year_dir / 'changes' / '2099-GT-01.xlsx'}", f"  {year_dir / 'feedback'}/  （30 个文件 files）"]
