"""Operators' waivers, through the CLI and the year job, on SQLite and PostgreSQL: a waived fatal
finding turns the project accepted (status, reconciliation, national report follow), the waiver is
shown everywhere, revoking brings the rejection back, and nothing else changes."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, func, select

from adapters.warehouse import store
from adapters.warehouse.models import Waiver, WaiverRevocation
from assets.partitions import PROJECTS_TAG
from etl.cli import main as cli_main
from etl.definitions import build_definitions
from etl.waiver_jobs import after_waiver
from tests.conftest import Run, put

REJECTED = "2023-GT-01"  # a national team: it also files a national report once accepted
REASON = "设备系租赁，经电话确认属劳务费"


def _bad_category(clean):
    spec = clean(REJECTED)
    spec.sheets["经费支出"][2][2] = "设备购置费"  # S004, fatal
    return spec


def cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_main(list(args))
    return code, capsys.readouterr().out


def keys(url: str, prefix: str) -> dict[str, str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = store.fingerprints(conn, 2023, prefix)
    engine.dispose()
    return found


def test_waiving_every_fatal_finding_accepts_and_revoking_rejects_again(clean, inbox, database_url, run_etl,
                                                                         tmp_path, capsys):
    put(inbox, _bad_category(clean))
    put(inbox, clean("2023-ST-01"))
    first = run_etl(inbox, database_url, tmp_path / "e1")
    assert first.status(REJECTED) == "rejected"
    assert not (first.dir / "national" / f"{REJECTED}.json").exists()
    fatal = first.issues[(first.issues.project_code == REJECTED) & (first.issues.severity == "fatal")]
    assert set(fatal.rule_id) == {"S004"} and (fatal.waived == "false").all()
    money_keys = keys(database_url, "reconciliation/")

    waive = ["waive", "--year", "2023", "--project", REJECTED, "--rule", "S004", "--by", "张三", "--reason", REASON,
             "--database-url", database_url]
    code, out = cli(capsys, *waive)
    waiver_id = int(out.split("\t")[0])
    assert code == 0 and "已记录" in out
    code, out = cli(capsys, *waive)  # the same decision twice is one waiver
    assert code == 0 and out.split("\t")[0] == str(waiver_id) and "未重复记录" in out
    code, out = cli(capsys, "waivers", "--year", "2023", "--database-url", database_url)
    assert [line.split("\t")[:4] for line in out.splitlines()] == [[str(waiver_id), REJECTED, "S004", "有效"]]

    second = run_etl(inbox, database_url, tmp_path / "e2")
    assert second.status(REJECTED) == "accepted"
    assert second.projects.set_index("project_code").at[REJECTED, "fatal_count"] == "0"
    waived = second.issues[second.issues.rule_id == "S004"]
    assert len(waived) == len(fatal) and (waived.waived == "true").all()
    assert set(waived.waived_by) == {"张三"} and set(waived.waiver_reason) == {REASON}
    assert list(second.issues.columns[-3:]) == ["waived", "waived_by", "waiver_reason"]
    money = pd.read_csv(second.dir / "reconciliation.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert set(money[money.project_code == REJECTED].status) != {"unreconciled"}
    report = json.loads((second.dir / "national" / f"{REJECTED}.json").read_text(encoding="utf-8"))
    assert report["project"]["code"] == REJECTED
    # Only the waived project was redone.
    redone = {code for code, key in keys(database_url, "reconciliation/").items() if money_keys.get(code) != key}
    assert redone == {REJECTED}
    # Shown everywhere: the summary's 豁免记录 and 问题清单, the unit's feedback list.
    summary = load_workbook(second.dir / "summary.xlsx", read_only=True)
    register = [row for row in summary["豁免记录"].iter_rows(min_row=2, values_only=True)]
    assert register[0][:3] == (waiver_id, REJECTED, "S004") and register[0][7] == "有效" and REASON in register[0]
    assert any(row[-1] == f"已豁免：{REASON}（张三）" for row in summary["问题清单"].iter_rows(values_only=True))
    feedback = load_workbook(second.dir / "feedback" / f"{REJECTED}.xlsx", read_only=True)
    listed = [row for row in feedback["问题清单"].iter_rows(min_row=2, values_only=True) if row[1] == "S004"]
    assert listed and all(row[-1] == f"已豁免：{REASON}（张三）" for row in listed)
    assert "规则版本" in str(next(feedback["说明"].iter_rows(min_row=2, max_row=2, values_only=True))[0])
    changed = [row for row in summary["本次变化"].iter_rows(min_row=2, values_only=True)]
    assert [(row[0], row[-1]) for row in changed] == [(REJECTED, "豁免")]

    code, out = cli(capsys, "unwaive", str(waiver_id), "--by", "李四", "--reason", "复核后不予豁免",
                    "--database-url", database_url)
    assert code == 0
    third = run_etl(inbox, database_url, tmp_path / "e3")
    assert third.status(REJECTED) == "rejected"
    assert not (third.dir / "national" / f"{REJECTED}.json").exists()
    assert (third.issues.waived == "false").all()
    # Nothing else changed: the other project's row and findings are as in the first run.
    for name in ("projects", "issues"):
        before, after = getattr(first, name), getattr(third, name)
        assert before[before.project_code != REJECTED].equals(after[after.project_code != REJECTED])
    code, out = cli(capsys, "waivers", "--year", "2023", "--database-url", database_url)
    assert out.split("\t")[3] == "已撤销" and "李四" in out
    # Append-only: one waiver row, one revocation row, the waiver's own row unchanged.
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Waiver)) == 1
        assert conn.scalar(select(func.count()).select_from(WaiverRevocation)) == 1
        assert conn.scalar(select(Waiver.reason)) == REASON
    engine.dispose()
    code, _ = cli(capsys, "unwaive", str(waiver_id), "--by", "李四", "--reason", "再次", "--database-url", database_url)
    assert code == 2  # a waiver is revoked once


def test_expired_unmatched_and_packageless_waivers(clean, inbox, database_url, run_etl, tmp_path, capsys):
    put(inbox, _bad_category(clean))
    run_etl(inbox, database_url, tmp_path / "e1")
    base = ["--year", "2023", "--by", "张三", "--reason", "测试", "--database-url", database_url]
    # Expired: its last day has passed, so it no longer counts.
    assert cli(capsys, "waive", "--project", REJECTED, "--rule", "S004", "--until", "2024-03-31", *base)[0] == 0
    # A project with no package: its own finding (T003, no package) is covered.
    assert cli(capsys, "waive", "--project", "2023-SB-06", "--rule", "T003", *base)[0] == 0
    # A typo'd scope matches nothing and is reported.
    assert cli(capsys, "waive", "--project", REJECTED, "--rule", "S004", "--sheet", "经费支出表", *base)[0] == 0
    # Narrowed to another package (an earlier one that does not exist): matches nothing either.
    assert cli(capsys, "waive", "--project", REJECTED, "--rule", "S004", "--package", "旧版.zip", *base)[0] == 0
    assert cli(capsys, "waive", "--project", "2023-XX-99", "--rule", "S004", *base)[0] == 2
    assert cli(capsys, "waive", "--project", REJECTED, "--rule", "Z999", *base)[0] == 2

    run = run_etl(inbox, database_url, tmp_path / "e2")
    assert run.status(REJECTED) == "rejected"
    assert (run.issues[run.issues.rule_id == "S004"].waived == "false").all()
    t003 = run.issues[(run.issues.project_code == "2023-SB-06") & (run.issues.rule_id == "T003")]
    assert list(t003.waived) == ["true"] and run.status("2023-SB-06") == "missing"
    _, out = cli(capsys, "waivers", "--year", "2023", "--database-url", database_url)
    states = [line.split("\t")[3] for line in out.splitlines()]
    assert states == ["已过期", "有效", "有效", "有效"]
    unmatched = [line.split("\t")[0] for line in out.splitlines() if "未匹配任何问题" in line]
    assert unmatched == ["3", "4"]


@pytest.mark.parametrize("scope, covered", [((), True), (("--row", "3"), True), (("--row", "4"), False),
                                            (("--sheet", "经费支出"), True)])
def test_a_waiver_narrowed_to_a_row_or_sheet(clean, inbox, sqlite_url, run_etl, tmp_path, capsys, scope, covered):
    put(inbox, _bad_category(clean))
    run_etl(inbox, sqlite_url, tmp_path / "e1")
    cli(capsys, "waive", "--year", "2023", "--project", REJECTED, "--rule", "S004", "--by", "张三", "--reason", "测试",
        "--database-url", sqlite_url, *scope)
    run = run_etl(inbox, sqlite_url, tmp_path / "e2")
    assert (run.status(REJECTED) == "accepted") is covered


def test_the_launchpad_jobs_record_and_revoke_and_redo_only_that_project(clean, inbox, database_url, run_etl,
                                                                          tmp_path):
    put(inbox, _bad_category(clean))
    put(inbox, clean("2023-ST-01"))
    export = tmp_path / "exports"
    assert run_etl(inbox, database_url, export).status(REJECTED) == "rejected"
    defs = build_definitions(inbox=str(inbox), exports=str(export), database_url=database_url)
    config = {"year": 2023, "project": REJECTED, "rule": "S004", "by": "张三", "reason": REASON}
    with dg.instance_for_test() as instance:
        for job, op, op_config, status in (
                ("record_waiver_job", "record_waiver_op", config, "accepted"),
                ("revoke_waiver_job", "revoke_waiver_op", {"waiver_id": 1, "by": "李四", "reason": "复核"}, "rejected")):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config={"ops": {op: {"config": op_config}}})
            assert result.success
            context = dg.build_run_status_sensor_context(
                sensor_name="after_waiver", dagster_instance=instance, dagster_run=result.dagster_run,
                dagster_event=result.get_run_success_event(),
                resources={name: defs.resources[name] for name in ("warehouse", "registry")})
            request = after_waiver(context)
            assert request.partition_key == "2023" and request.tags == {PROJECTS_TAG: REJECTED}
            follow_up = defs.resolve_job_def("nightly_job").execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags)
            assert follow_up.success
            assert Run(export).status(REJECTED) == status
            assert Run(export).status("2023-ST-01") == "accepted"
        bad = defs.resolve_job_def("revoke_waiver_job").execute_in_process(
            instance=instance, run_config={"ops": {"revoke_waiver_op": {"config": {"waiver_id": 1, "by": "李四",
                                                                                    "reason": "再次"}}}},
            raise_on_error=False)
        assert not bad.success  # revoked once; the operator reads why in the run's failure


def test_waivers_survive_new_versions_unless_narrowed_to_a_package(clean, inbox, database_url, run_etl, tmp_path,
                                                                    capsys):
    versions = {}
    for code in (REJECTED, "2023-ST-04"):
        for n in (1, 2):
            spec = clean(code)
            spec.name = f"{code}-v{n}.zip"
            spec.sheets["经费支出"][2][2] = "设备购置费"  # the same S004 in both versions
            spec.modified_at = spec.modified_at.replace(day=spec.modified_at.day + n)
            versions[code, n] = spec
        put(inbox, versions[code, 1])
    run_etl(inbox, database_url, tmp_path / "e1")
    base = ["--year", "2023", "--rule", "S004", "--by", "张三", "--reason", REASON, "--database-url", database_url]
    assert cli(capsys, "waive", "--project", REJECTED, *base)[0] == 0
    assert cli(capsys, "waive", "--project", "2023-ST-04", "--package", "2023-ST-04-v1.zip", *base)[0] == 0
    first = run_etl(inbox, database_url, tmp_path / "e2")
    assert first.status(REJECTED) == "accepted" and first.status("2023-ST-04") == "accepted"
    for code in (REJECTED, "2023-ST-04"):
        put(inbox, versions[code, 2])
    second = run_etl(inbox, database_url, tmp_path / "e3")
    assert second.status(REJECTED) == "accepted"  # the package in use, whichever it is
    assert second.status("2023-ST-04") == "rejected"  # that package only: the new one is not covered
    waived = second.issues[second.issues.waived == "true"]
    assert sorted(waived.package) == [f"{REJECTED}-v2.zip", "2023-ST-04-v1.zip"]
