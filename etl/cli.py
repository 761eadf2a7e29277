"""Headless command line: `python -m etl run|sample`. `run` executes the same Dagster job the UI
and the schedule launch (in-process), so there is no second code path."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from pathlib import Path

from datetime import date, datetime, timezone

import dagster as dg

from adapters.national_system import TOKEN_ENV, mock_server
from adapters.registry import load_year
from adapters.warehouse import connect, store, upgrade
from assets.changes import changes_text, package_changes
from assets.overview import SHANGHAI
from assets.partitions import projects_tags
from assets.waivers import WaiverError, WaiverRequest, record_waiver, revoke_waiver, waiver_line, waiver_table
from etl.alerts import failure_message
from etl.definitions import build_definitions
from etl.report import print_summary

log = logging.getLogger("etl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl", description="专家服务基层 材料处理流水线")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="process a year's inbox and write its exports")
    run.add_argument("--year", type=int, required=True)
    run.add_argument("--inbox", required=True, help="inbox root; packages are read from <inbox>/<year>/")
    run.add_argument("--export", required=True, help="export root; files go to <export>/<year>/")
    run.add_argument("--database-url", help="SQLAlchemy URL (default: $ETL_DATABASE_URL or sqlite:///warehouse.db)")
    run.add_argument("--registry", help="registry directory (default: data/registry)")
    run.add_argument("--national-mock", metavar="STATE_FILE",
                     help="start the mock national system in-process with this state file and sync to it "
                          "(the demo; production sets NATIONAL_SYSTEM_URL and NATIONAL_SYSTEM_TOKEN)")

    backfill = commands.add_parser("backfill", help="re-run some projects of a year (after late or corrected packages)")
    backfill.add_argument("--year", type=int, required=True)
    backfill.add_argument("--project", action="append", required=True, help="project code; repeat for several")
    backfill.add_argument("--inbox", required=True)
    backfill.add_argument("--export", required=True)
    backfill.add_argument("--database-url")
    backfill.add_argument("--registry")
    backfill.add_argument("--national-mock", metavar="STATE_FILE")

    sample = commands.add_parser("sample", help="build the sample inbox of a year")
    sample.add_argument("--year", type=int, required=True)
    sample.add_argument("--out", required=True, help="inbox root to write <out>/<year>/ into")

    received = commands.add_parser("received", help="record when a package really arrived (overrides its file time)")
    received.add_argument("--year", type=int, required=True)
    received.add_argument("--package", required=True, help="the package's file or folder name in <inbox>/<year>/")
    received.add_argument("--at", required=True, help="ISO 8601 time, e.g. 2023-11-09T16:30+08:00 (no offset: Asia/Shanghai)")
    received.add_argument("--database-url")

    _add_waiver_commands(commands)
    _add_unit_commands(commands)

    commands.add_parser("mock-national", add_help=False, help="serve the mock national system (see --help)")

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["mock-national"]:
        return mock_server.main(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command in ("run", "backfill"):
        return run_year(args)
    if args.command == "received":
        return record_received(args)
    if args.command in _OPERATOR_COMMANDS:
        return _OPERATOR_COMMANDS[args.command](args)
    if args.command in _UNIT_COMMANDS:
        return _UNIT_COMMANDS[args.command](args)
    return build_sample(args)


def run_year(args: argparse.Namespace) -> int:
    """`run`: the year job over the year's partition, one run (incremental: what is unchanged since
    the last run is not read again). `backfill`: the same run, re-processing the named projects even
    if nothing about them changed (e.g. after a late package or a registry correction)."""
    registry = load_year(args.year, args.registry)
    projects = getattr(args, "project", None)
    unknown = [code for code in projects or [] if registry.project(code) is None]
    if unknown:
        log.error("not registered in %s: %s", args.year, ", ".join(unknown))
        return 2
    with contextlib.ExitStack() as stack:
        if args.national_mock:
            stack.enter_context(_mock_national(Path(args.national_mock)))
        defs = build_definitions(inbox=args.inbox, exports=args.export, database_url=args.database_url,
                                 registry=args.registry)
        tags = projects_tags([registry.project(c).code for c in projects or []])
        with _instance() as instance:
            result = _execute(defs, instance, str(args.year), tags)
    if not result.success:
        steps = [e.step_key for e in result.all_events if e.is_step_failure and e.step_key]
        error = next((e.message for e in result.all_events if e.is_step_failure), "")
        print(failure_message(result.job_def.name, result.run_id, steps, error), file=sys.stderr)
        return 1
    print_summary(Path(args.export) / str(args.year))
    return 0


@contextlib.contextmanager
def _mock_national(state: Path):
    """The mock national system on a free loopback port for this run, with a token of its own."""
    state.parent.mkdir(parents=True, exist_ok=True)
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    server = mock_server.serve(0, state, token)
    previous = {k: os.environ.get(k) for k in ("NATIONAL_SYSTEM_URL", TOKEN_ENV)}
    os.environ.update({"NATIONAL_SYSTEM_URL": server.url, TOKEN_ENV: token})
    log.info("mock national system at %s (state %s)", server.url, state)
    try:
        yield server
    finally:
        server.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, year: str,
             tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("year_job").execute_in_process(
        instance=instance,
        partition_key=year,
        tags=tags,
        # Dagster's console logger speaks DEBUG by default: an operator wants the steps, not the events.
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )


def _instance() -> dg.DagsterInstance:
    """The operator's instance when DAGSTER_HOME is set (runs then show in the UI), else a temporary one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def record_received(args: argparse.Namespace) -> int:
    moment = datetime.fromisoformat(args.at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    engine = connect(args.database_url)
    upgrade(engine)
    with engine.begin() as conn:
        updated = store.record_received(conn, args.year, args.package, moment.astimezone(timezone.utc).replace(tzinfo=None))
    if not updated:
        log.error("no package named %r in %s: run the year first, then record its time", args.package, args.year)
        return 1
    log.info("recorded %s as received at %s; the next run applies it", args.package, moment.isoformat())
    return 0


def _add_waiver_commands(commands) -> None:
    waive = commands.add_parser("waive", help="waive a finding of a project (an operator's decision)")
    waive.add_argument("--year", type=int, required=True)
    waive.add_argument("--project", required=True)
    waive.add_argument("--rule", required=True)
    waive.add_argument("--by", required=True, help="who decides")
    waive.add_argument("--reason", required=True)
    waive.add_argument("--package", default="", help="only this package (default: the project's package in use)")
    waive.add_argument("--sheet", default="", help="only findings of this sheet (as issues.csv names it)")
    waive.add_argument("--row", type=int, help="only findings of this Excel row")
    waive.add_argument("--until", type=date.fromisoformat, help="last day it holds (YYYY-MM-DD, Asia/Shanghai)")
    waive.add_argument("--database-url")
    listing = commands.add_parser("waivers", help="list a year's waivers, one a line, id first")
    listing.add_argument("--year", type=int, required=True)
    listing.add_argument("--database-url")
    unwaive = commands.add_parser("unwaive", help="revoke a waiver (kept on record as revoked)")
    unwaive.add_argument("id", type=int)
    unwaive.add_argument("--by", required=True)
    unwaive.add_argument("--reason", required=True)
    unwaive.add_argument("--database-url")
    diff = commands.add_parser("diff", help="what changed between two versions of a project's package")
    diff.add_argument("--year", type=int, required=True)
    diff.add_argument("--project", required=True)
    diff.add_argument("--from", dest="old", help="package name (default: the version before --to)")
    diff.add_argument("--to", dest="new", help="package name (default: the package in use)")
    diff.add_argument("--database-url")
    diff.add_argument("--registry")


def _warehouse(args: argparse.Namespace):
    engine = connect(args.database_url)
    upgrade(engine)
    return engine


def waive(args: argparse.Namespace) -> int:
    request = WaiverRequest(year=args.year, project=args.project, rule=args.rule, by=args.by, reason=args.reason,
                            package=args.package, sheet=args.sheet, row=args.row, until=args.until)
    try:
        waiver_id, new = record_waiver(_warehouse(args), load_year(args.year), request)
    except WaiverError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{waiver_id}\t{'已记录豁免' if new else '相同的豁免已有记录，未重复记录'}；下次运行（或 backfill --project）生效")
    return 0


def list_waivers(args: argparse.Namespace) -> int:
    for w in waiver_table(_warehouse(args), args.year).to_dict("records"):
        print(waiver_line(w))
    return 0


def unwaive(args: argparse.Namespace) -> int:
    try:
        waiver = revoke_waiver(_warehouse(args), args.id, args.by, args.reason)
    except WaiverError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{waiver.id}\t已撤销 {waiver.project_code} {waiver.rule_id} 的豁免；下次运行（或 backfill --project）生效")
    return 0


def show_diff(args: argparse.Namespace) -> int:
    registry = load_year(args.year, args.registry)
    project = registry.project(args.project)
    if project is None:
        print(f"项目编号“{args.project}”不在 {args.year} 年立项名单中", file=sys.stderr)
        return 2
    try:
        with _warehouse(args).connect() as conn:
            changes = package_changes(conn, args.year, project.code, args.old, args.new)
    except LookupError as error:
        print(error, file=sys.stderr)
        return 2
    print(changes_text(changes))
    return 0


_OPERATOR_COMMANDS = {"waive": waive, "waivers": list_waivers, "unwaive": unwaive, "diff": show_diff}


def build_sample(args: argparse.Namespace) -> int:
    from etl.sample import build_sample_inbox

    paths = build_sample_inbox(args.year, Path(args.out))
    print(f"sample inbox: {len(paths)} packages in {Path(args.out) / str(args.year)}")
    return 0


# --- the unit's side: a template to fill, a check before sending ----------------------------------------

def _add_unit_commands(commands) -> None:
    template = commands.add_parser("template", help="write the workbook template of each project (or one)")
    template.add_argument("--year", type=int, required=True)
    template.add_argument("--project", help="one project code (default: every registered project)")
    template.add_argument("--out", required=True, help="directory to write <项目编号>.xlsx into")
    template.add_argument("--registry")
    check = commands.add_parser("check", help="check one package (zip or folder) before sending it")
    check.add_argument("package")
    check.add_argument("--year", type=int, required=True)
    check.add_argument("--out", help="directory to write the feedback workbook into")
    check.add_argument("--registry")
    check.add_argument("--fee-caps", help="fee caps file (default: data/rules/fee_caps.yaml)")


def write_templates(args: argparse.Namespace) -> int:
    from assets.templates import write_year_templates

    registry = load_year(args.year, args.registry)
    project = registry.project(args.project) if args.project else None
    if args.project and project is None:
        print(f"项目编号 {args.project} 不在 {args.year} 年立项名单中。", file=sys.stderr)
        return 2
    paths = write_year_templates(registry, Path(args.out), [project.code] if project else None)
    print(f"已生成 {len(paths)} 个填报模板：{Path(args.out)}")
    return 0


def check_package(args: argparse.Namespace) -> int:
    """Exit 0 when the package has no fatal finding, 1 otherwise (2 when it cannot be checked at all)."""
    from adapters.fee_caps import load_fee_caps
    from assets.self_check import check_package as check
    from assets.summary_workbook import integer
    from schemas.catalog import SEVERITY_ZH

    package = Path(args.package)
    if not package.exists():
        print(f"找不到材料包：{package}", file=sys.stderr)
        return 2
    result = check(package, load_year(args.year, args.registry), load_fee_caps(args.fee_caps),
                   Path(args.out) if args.out else None)
    findings = result.findings
    print(f"材料包：{result.package}（项目编号：{result.project_code or '未识别'}）")
    for f in findings.sort_values("severity", key=lambda s: s != "fatal", kind="stable").itertuples(index=False):
        place = "".join([f"工作表“{f.sheet}”" if f.sheet else "", f"第 {integer(f.row)} 行" if integer(f.row) else "",
                         f"“{f.column}”" if f.column else ""])
        print(f"[{SEVERITY_ZH[f.severity]}] {f.rule_id} {place + '：' if place else ''}{f.message}")
    warnings = len(findings) - result.fatal
    print(f"检查结果：致命问题 {result.fatal} 个，警告 {warnings} 个。"
          + ("有致命问题，请改正后再报送。" if result.fatal else "可以报送。"))
    if result.money:
        print("\n".join(result.money.text))
    if result.feedback:
        print(f"问题清单已写入：{result.feedback}")
    return 1 if result.fatal else 0


_UNIT_COMMANDS = {"template": write_templates, "check": check_package}


if __name__ == "__main__":
    sys.exit(main())
