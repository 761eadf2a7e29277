"""The whole year job over real packages, on SQLite and PostgreSQL: clean packages are accepted
with no finding, messy-but-valid ones too, the inbox is never touched, a second run changes nothing."""


import hashlib
import os
from decimal import Decimal
import subprocess
from collections import Counter

import openpyxl
from sqlalchemy import create_engine, func, select, update

from adapters.warehouse.models import ExpenseLine, FindingRow, Package, PackageReading, SheetRow
from adapters.workbook import Workbook
from assets.sheets import READER_KEY
from tests.conftest import put, tree_digest

ALL_CODES = ["2023-GT-01", "2023-GT-02", "2023-ST-01", "2023-ST-02", "2023-ST-03", "2023-ST-04",
             "2023-SB-01", "2023-SB-02", "2023-SB-03", "2023-SB-04", "2023-SB-05", "2023-SB-06"]


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = {m.__tablename__: conn.scalar(select(func.count()).select_from(m))
                  for m in (Package, SheetRow, ExpenseLine, FindingRow)}
    engine.dispose()
    return result


def test_clean_year_is_accepted_and_rerun_changes_nothing(clean, inbox, database_url, run_etl, tmp_path):
    for code in ALL_CODES[:-1]:
        put(inbox, clean(code))
    before = tree_digest(inbox)

    first = run_etl(inbox, database_url, tmp_path / "first")
    stored = counts(database_url)
    second = run_etl(inbox, database_url, tmp_path / "second")

    assert tree_digest(inbox) == before  # byte-identical, same mtimes, nothing added
    # The one project with no package is reported missing (the 2023 deadline has passed); nothing else.
    assert first.issues[["rule_id", "project_code"]].values.tolist() == [["T003", ALL_CODES[-1]]]
    by_code = first.projects.set_index("project_code")
    assert list(first.projects.project_code) == sorted(ALL_CODES)
    assert (by_code.loc[ALL_CODES[:-1], "status"] == "accepted").all()
    assert by_code.at[ALL_CODES[-1], "status"] == "missing" and by_code.at[ALL_CODES[-1], "package"] == ""
    assert by_code.at["2023-GT-01", "received_at"].endswith("+08:00")
    assert stored["package"] == 11 and stored["expense_line"] > 100
    # Idempotent: the same database holds the same rows and the exports are byte-identical.
    assert counts(database_url) == stored
    for name in ("projects.csv", "issues.csv"):
        assert (first.dir / name).read_bytes() == (second.dir / name).read_bytes()


def test_exports_are_utf8_with_bom_and_contract_columns(clean, inbox, sqlite_url, run_etl):
    put(inbox, clean("2023-ST-01"))
    run = run_etl(inbox, sqlite_url)
    raw = (run.dir / "projects.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert list(run.projects.columns) == ["year", "project_code", "level", "type", "host_unit", "project_name",
                                          "package", "received_at", "late", "status", "fatal_count", "warning_count"]
    assert list(run.issues.columns) == ["year", "project_code", "package", "rule_id", "severity", "sheet", "row",
                                        "column", "value", "message", "waived", "waived_by", "waiver_reason"]


def test_messy_but_valid_package_is_accepted(clean, inbox, sqlite_url, run_etl):
    spec = clean("2023-ST-02")
    expenses = spec.sheets["经费支出"]
    expenses[0] = ["序号", "支出日期", "支出科目", "经费来源", "金额\n（元）", "收款单位", "凭证 号", "摘要"]
    for i, row in enumerate(expenses[1:-1], start=1):
        amount = row[4]
        row[4] = [f"¥{amount:,.2f}", f"{amount}".translate(str.maketrans("0123456789.", "０１２３４５６７８９．")),
                  str(amount)][i % 3]
        row[1] = [f"{row[1]:%Y年%-m月%-d日}", f"{row[1]:%Y/%-m/%-d}", f"{row[1]:%Y.%m.%d}"][i % 3]
    expenses.insert(3, [None] * 8)
    expenses.append(["注：金额单位为元，凭证号为记账凭证编号。"])
    spec.sheets["基本信息"][1][1] = " 2023－st－02 "  # code typed with full-width dash and spaces
    put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    assert run.findings(package=spec.name).empty, run.findings(package=spec.name).to_string()
    assert run.status("2023-ST-02") == "accepted"


def test_gbk_names_folder_and_csv_packages(clean, inbox, sqlite_url, run_etl):
    gbk = clean("2023-GT-01")
    gbk.gbk_names = True
    folder = clean("2023-ST-03")
    folder.as_zip = False
    folder.name = "环境监测中心材料"
    csv = clean("2023-SB-01")
    csv.expenses_csv = "gbk"
    for spec in (gbk, folder, csv):
        put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    assert set(run.issues.rule_id) == {"T003"}, run.issues.to_string()  # only the nine missing projects
    assert {run.status(c) for c in ("2023-GT-01", "2023-ST-03", "2023-SB-01")} == {"accepted"}


def test_newest_package_is_in_use_and_older_is_superseded(clean, inbox, database_url, run_etl):
    old = clean("2023-ST-04")
    old.name = "超算中心-初稿.zip"
    old.sheets["经费支出"][2][2] = "设备购置费"  # the first version was wrong…
    new = clean("2023-ST-04", seed=3)
    new.name = "超算中心-更正.zip"
    new.modified_at = old.modified_at.replace(day=old.modified_at.day + 1)
    put(inbox, old)
    put(inbox, new)
    run = run_etl(inbox, database_url)
    assert run.status("2023-ST-04") == "accepted"  # …the correction is what counts
    assert run.projects.set_index("project_code").at["2023-ST-04", "package"] == "超算中心-更正.zip"
    superseded = run.findings(package="超算中心-初稿.zip")
    assert set(superseded.rule_id) == {"S004", "P007"}  # its history stays visible
    assert "超算中心-更正.zip" in superseded[superseded.rule_id == "P007"].iloc[0].message


def test_a_late_package_is_picked_up_by_the_next_run(clean, inbox, sqlite_url, run_etl, tmp_path):
    put(inbox, clean("2023-GT-02"))
    first = run_etl(inbox, sqlite_url)
    assert first.status("2023-SB-02") == "missing"
    put(inbox, clean("2023-SB-02"))
    second = run_etl(inbox, sqlite_url)
    assert second.status("2023-SB-02") == "accepted"
    assert counts(sqlite_url)["package"] == 2  # the first package was not ingested twice


def test_intake_stores_each_packages_files_and_findings_under_its_own_id(clean, inbox, database_url, registry):
    """Intake stores a batch of packages in one statement each for rows, files and findings: every
    file and finding must still land on the package it came from (SQLite and PostgreSQL)."""
    from adapters.warehouse import store
    from adapters.warehouse.engine import connect, upgrade
    from adapters.warehouse.models import FindingRow, Package, PackageFile
    from assets.intake import ingest_year
    from sqlalchemy import select

    codes = [p.code for p in registry.projects[:4]]
    members = {}
    for n, code in enumerate(codes):
        spec = clean(code)
        spec.files[f"附件/extra-{n}.txt"] = f"note {n}".encode()  # a member of its own, per package
        if n == 1:
            spec.files["附件/fake.pdf"] = b"not a pdf"  # M005 on this package only
        members[put(inbox, spec).name] = set(spec.files)
    (inbox / "2023" / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")  # refused (P001), between them
    engine = connect(database_url)
    upgrade(engine)
    ingest_year(engine, inbox, registry)
    with engine.connect() as conn:
        names = dict(conn.execute(select(Package.id, Package.name)).all())
        files = {}
        for package_id, path in conn.execute(select(PackageFile.package_id, PackageFile.path)):
            files.setdefault(names[package_id], set()).add(path.rsplit("/", 1)[-1])
        found = {(names[pid], rule) for pid, rule in conn.execute(select(FindingRow.package_id, FindingRow.rule_id))}
    assert set(names.values()) == set(members) | {"broken.zip"}
    for name, listed in members.items():
        assert {f for f in files[name] if f.startswith("extra-")} == {m.rsplit("/", 1)[-1] for m in listed if "extra-" in m}
    assert {(name, rule) for name, rule in found if rule in ("M005", "P001")} == {
        (next(n for n, listed in members.items() if "附件/fake.pdf" in listed), "M005"), ("broken.zip", "P001")}


def test_each_workbook_is_opened_once_per_run(clean, inbox, database_url, run_etl, monkeypatch):
    """Intake reads every sheet of a workbook once and keeps the reading: validation and the feedback's
    copy work from it. After the reading code changes, validation reads the workbook afresh, once, and
    keeps the new reading."""
    put(inbox, clean("2023-ST-01"))
    bad = clean("2023-ST-02")
    bad.sheets["经费支出"][2][4] = "十元"
    put(inbox, bad)
    opened: Counter = Counter()
    init = Workbook.__init__

    def counted(self, data: bytes) -> None:
        opened[hashlib.sha256(data).hexdigest()] += 1
        init(self, data)

    monkeypatch.setattr(Workbook, "__init__", counted)
    monkeypatch.setenv("ETL_WORKERS", "1")  # in this process, where the count is kept
    run = run_etl(inbox, database_url)
    assert list(run.findings(package=bad.name).rule_id) == ["S002"]
    copy = openpyxl.load_workbook(run.dir / "feedback" / "2023-ST-02.xlsx", read_only=True)
    marked = [name for name in copy.sheetnames if "经费支出" in name]
    assert marked and list(copy[marked[0]].iter_rows(min_row=3, max_row=3, values_only=True))[0][4] == "十元"
    assert sorted(opened.values()) == [1, 1]

    engine = create_engine(database_url)
    with engine.begin() as conn:  # as if the reading code had changed since intake
        conn.execute(update(PackageReading).values(reader_key="older reading code"))
        conn.execute(update(Package).values(validated_key=None))
    opened.clear()
    run_etl(inbox, database_url)
    assert sorted(opened.values()) == [1, 1]
    with engine.connect() as conn:
        assert set(conn.execute(select(PackageReading.reader_key)).scalars()) == {READER_KEY}
    engine.dispose()


def test_sqlite_and_postgresql_keep_the_same_lines_and_export_the_same_issues(clean, inbox, run_etl, tmp_path,
                                                                             monkeypatch):
    """On SQLite each validation worker writes its batch's expense lines into a scratch file that the
    warehouse copies in one statement (store.RowsFile); PostgreSQL takes the rows themselves (COPY). The
    same packages leave the same lines in both, unreadable amounts and dates included, and no scratch
    file outlives the run; one left by a killed run (its process gone) is removed by the next. Both
    export the same issues.csv, byte for byte (store.findings' order)."""
    from adapters.warehouse import store
    from etl.sample.builder import BASIC_FIELDS, EXPENSE_HEADER
    from tests.conftest import postgres_schema

    messy = clean("2023-ST-02")
    messy.sheets["经费支出"][2][EXPENSE_HEADER.index("金额（元）")] = "一千元"
    messy.sheets["经费支出"][3][EXPENSE_HEADER.index("支出日期")] = "2023-13-01"
    unknown = clean("2023-ST-01")  # names no registered project: P005, a finding of no project
    unknown.sheets["基本信息"][BASIC_FIELDS.index("项目编号")][1] = "2023-XX-99"
    left_over = clean("2023-GT-01", leftover={"部拨经费": Decimal("3860.00"), "市级配套": Decimal("1275.50")})
    for package in (left_over, clean("2023-SB-01"), messy, unknown):
        put(inbox, package)
    scratch = tmp_path / "scratch"
    ended = subprocess.Popen(["true"])
    ended.wait()
    killed_run = scratch / f"etl-rows-{ended.pid}-abc"  # a run SIGKILLed while validating
    running = scratch / f"etl-rows-{os.getpid()}-def"  # a run still going
    for left in (killed_run, running):
        left.mkdir(parents=True)
        (left / "1-lines.db").write_bytes(b"lines")
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    attached = []
    monkeypatch.setattr(store, "attached_rows", _counting(store.attached_rows, attached))

    def lines(url: str) -> list[tuple]:
        engine = create_engine(url)
        with engine.connect() as conn:
            columns = [getattr(ExpenseLine, name) for name in store.EXPENSE_COLUMNS if name != "package_id"]
            found = sorted(tuple(row) for row in conn.execute(select(Package.name, *columns).join(
                Package, Package.id == ExpenseLine.package_id)))
        engine.dispose()
        return found

    sqlite_url = f"sqlite:///{tmp_path / 'w.db'}"
    run_etl(inbox, sqlite_url, tmp_path / "sqlite")
    files = sum(rows is not None for rows in attached)
    with postgres_schema() as pg_url:
        run_etl(inbox, pg_url, tmp_path / "pg")
        in_postgres = lines(pg_url)
    in_sqlite = lines(sqlite_url)
    assert files >= 1 and list(scratch.iterdir()) == [running]
    assert len(in_sqlite) > 30 and in_sqlite == in_postgres
    # Ties (R006 of two sources) and findings of no project (P005) sort alike.
    assert (tmp_path / "sqlite" / "2023" / "issues.csv").read_bytes() == (tmp_path / "pg" / "2023" / "issues.csv").read_bytes()
    assert any(amount is None for *_, amount, _, _, _, _ in in_sqlite)  # the unreadable 金额 is stored as NULL
    assert any(spent_on is None for _, _, spent_on, *_ in in_sqlite)


def _counting(attached_rows, seen: list):
    def counted(conn, rows):
        seen.append(rows)
        return attached_rows(conn, rows)
    return counted


def test_a_failing_scratch_space_costs_no_unit_anything(clean, inbox, run_etl, sqlite_url, tmp_path, monkeypatch):
    """Where the workers cannot write their expense-line files (a full disk, here a path under a file),
    they hand the lines back as before: every package keeps its lines and no unit gets P008 for it."""
    from contextlib import contextmanager

    from adapters.warehouse import store

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")

    @contextmanager
    def unusable(engine):
        yield str(blocked / "scratch")

    monkeypatch.setattr(store, "rows_scratch", unusable)
    for code in ("2023-GT-01", "2023-SB-01"):
        put(inbox, clean(code))
    run = run_etl(inbox, sqlite_url)
    assert run.findings("P008").empty and (run.projects.set_index("project_code").loc[["2023-GT-01", "2023-SB-01"],
                                                                                         "status"] == "accepted").all()
    assert counts(sqlite_url)["expense_line"] > 20
