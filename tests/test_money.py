"""Money to the fen: reconciliation.csv figures, refunds routed to the right body, and the R/T
rules with their figures in the message, on SQLite and PostgreSQL."""

from datetime import datetime
from decimal import Decimal

from etl.sample.builder import EXPENSE_HEADER, LEFTOVER, LEFTOVER_HEADER, SHANGHAI
from tests.conftest import put

AMOUNT = EXPENSE_HEADER.index("金额（元）")
SOURCE = EXPENSE_HEADER.index("经费来源")


def recon(run, code):
    frame = run.dir / "reconciliation.csv"
    import pandas as pd

    table = pd.read_csv(frame, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    return table[table.project_code == code].set_index("funding_source")


def shift(spec, row, delta: Decimal, *, total=True, audited=True):
    """Change one expense line by delta yuan; keep the 合计 row and the audited total in step unless told."""
    rows = spec.sheets["经费支出"]
    rows[row - 1][AMOUNT] = Decimal(rows[row - 1][AMOUNT]) + delta
    if total:
        rows[-1][AMOUNT] = Decimal(rows[-1][AMOUNT]) + delta
    if audited:
        basic = {r[0]: r for r in spec.sheets["基本信息"]}
        basic["审计确认支出金额（元）"][1] = Decimal(basic["审计确认支出金额（元）"][1]) + delta


def test_balanced_national_team_to_the_fen(clean, inbox, database_url, run_etl):
    put(inbox, clean("2023-GT-01"))
    run = run_etl(inbox, database_url)
    money = recon(run, "2023-GT-01")
    assert list(money.index) == ["部拨经费", "市级配套"]
    assert money.loc["部拨经费", ["granted", "spent", "balance", "status"]].tolist() == ["100000.00", "100000.00", "0.00", "balanced"]
    assert set(money.provisional) == {"false"}  # no fatal finding: the figures are final
    assert run.status("2023-GT-01") == "accepted"


def test_one_fen_overspent_is_caught(clean, inbox, database_url, run_etl):
    spec = clean("2023-ST-01")
    shift(spec, 2, Decimal("0.01"))
    put(inbox, spec)
    run = run_etl(inbox, database_url)
    money = recon(run, "2023-ST-01").loc["市级经费"]
    assert (money.spent, money.balance, money.status) == ("100000.01", "-0.01", "overspent")
    r001 = run.findings("R001")
    assert len(r001) == 1 and "市级经费超支 0.01 元" in r001.iloc[0].message
    assert run.status("2023-ST-01") == "rejected"


def test_leftover_refund_routing_and_declaration(clean, inbox, database_url, run_etl):
    # National team: 1,234.56 left on 部拨经费 declared right; 0.01 left on 市级配套 not declared at all.
    spec = clean("2023-GT-02", leftover={"部拨经费": Decimal("1234.56")})
    lines = spec.sheets["经费支出"]
    matching = next(i for i, r in enumerate(lines[1:-1], start=2) if r[SOURCE] == "市级配套")
    shift(spec, matching, Decimal("-0.01"))
    put(inbox, spec)
    run = run_etl(inbox, database_url)
    money = recon(run, "2023-GT-02")
    assert money.loc["部拨经费", ["balance", "refund_to", "refund_declared", "status"]].tolist() == [
        "1234.56", "人力资源社会保障部", "1234.56", "refund_due"]
    assert money.loc["市级配套", ["balance", "refund_to", "refund_declared"]].tolist() == [
        "0.01", "市人力资源社会保障局", "0.00"]
    r004 = run.findings("R004")
    assert len(r004) == 1 and "市级配套结余 0.01 元" in r004.iloc[0].message
    assert len(run.findings("R006")) == 2
    assert run.findings("R005").empty


def test_wrong_refund_body_and_amount_in_leftover_sheet(clean, inbox, sqlite_url, run_etl):
    spec = clean("2023-SB-01", leftover={"市级经费": Decimal("5000.00")})
    row = spec.sheets[LEFTOVER][1]
    row[LEFTOVER_HEADER.index("退回对象")] = "人力资源社会保障部"
    row[LEFTOVER_HEADER.index("结余金额（元）")] = Decimal("4999.99")
    put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    r005 = run.findings("R005")
    assert sorted(r005.column) == ["结余金额（元）", "退回对象"]
    assert set(r005["row"]) == {"2"} and set(r005.sheet) == {"结余说明"}
    assert "实际结余 5000.00 元" in " ".join(r005.message)


def test_audited_and_declared_totals_must_match_to_the_fen(clean, inbox, database_url, run_etl):
    audited = clean("2023-ST-02")
    shift(audited, 2, Decimal("-0.01"), total=True, audited=False)  # lines and 合计 agree, audit does not
    declared = clean("2023-ST-03")
    shift(declared, 2, Decimal("0"), total=False, audited=False)
    declared.sheets["经费支出"][-1][AMOUNT] = Decimal(declared.sheets["经费支出"][-1][AMOUNT]) + Decimal("0.01")
    put(inbox, audited)
    put(inbox, declared)
    run = run_etl(inbox, database_url)
    r002 = run.findings("R002")
    assert r002.project_code.tolist() == ["2023-ST-02"] and "相差 0.01 元" in r002.iloc[0].message
    r003 = run.findings("R003")
    assert r003.project_code.tolist() == ["2023-ST-03"]
    assert r003.iloc[0].sheet == "经费支出" and r003.iloc[0].row == str(len(declared.sheets["经费支出"]))


def test_many_small_lines_do_not_drift(clean, inbox, sqlite_url, run_etl):
    spec = clean("2023-ST-04")
    rows = spec.sheets["经费支出"]
    header = rows[0]
    template = rows[1]
    # 10,000 lines of 10.00 yuan = exactly the 100,000.00 granted.
    lines = [[i, template[1], "劳务费", "市级经费", Decimal("10.00"), "上海人才服务有限公司", f"记-2023-{i:06d}", "劳务"]
             for i in range(1, 10_001)]
    spec.sheets["经费支出"] = [header, *lines, ["合计", None, None, None, Decimal("100000.00"), None, None, None]]
    put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    money = recon(run, "2023-ST-04").loc["市级经费"]
    assert (money.spent, money.balance, money.status) == ("100000.00", "0.00", "balanced")
    assert run.findings(package=spec.name).empty


def test_double_claimed_voucher_warns_both_projects(clean, inbox, database_url, run_etl):
    first, second = clean("2023-SB-03"), clean("2023-SB-04")
    voucher = first.sheets["经费支出"][2][EXPENSE_HEADER.index("凭证号")]
    second.sheets["经费支出"][3][EXPENSE_HEADER.index("凭证号")] = voucher
    put(inbox, first)
    put(inbox, second)
    run = run_etl(inbox, database_url)
    r007 = run.findings("R007")
    assert sorted(zip(r007.project_code, r007.row)) == [("2023-SB-03", "3"), ("2023-SB-04", "4")]
    assert "2023-SB-04" in r007[r007.project_code == "2023-SB-03"].iloc[0].message


def test_double_claim_is_reported_to_a_rejected_package_too(clean, inbox, database_url, run_etl):
    first, second = clean("2023-SB-03"), clean("2023-SB-04")
    voucher = first.sheets["经费支出"][2][EXPENSE_HEADER.index("凭证号")]
    second.sheets["经费支出"][3][EXPENSE_HEADER.index("凭证号")] = voucher
    del first.files[next(row[1] for row in first.sheets["基本信息"] if row[0] == "工作总结文件")]  # M001: rejected
    put(inbox, first)
    put(inbox, second)
    run = run_etl(inbox, database_url)
    assert run.status("2023-SB-03") == "rejected"
    r007 = run.findings("R007")
    assert sorted(zip(r007.project_code, r007.row)) == [("2023-SB-03", "3"), ("2023-SB-04", "4")]


def test_late_package_and_team_activity_after_completion(clean, inbox, sqlite_url, run_etl):
    late = clean("2023-ST-01")
    late.modified_at = datetime(2023, 11, 11, 0, 0, 1, tzinfo=SHANGHAI)  # one second after the deadline day
    on_time = clean("2023-SB-01")
    on_time.modified_at = datetime(2023, 11, 10, 23, 59, 59, tzinfo=SHANGHAI)
    after = clean("2023-ST-02")
    after.sheets["服务活动"][1][2] = "2023-11-15"  # a team's activity ending after 2023-11-10
    base_after = clean("2023-SB-02")
    base_after.sheets["服务活动"][1][2] = "2023-11-15"  # bases have no completion date: no T002
    for spec in (late, on_time, after, base_after):
        put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    t001 = run.findings("T001")
    assert t001.project_code.tolist() == ["2023-ST-01"] and "2023-11-11 00:00" in t001.iloc[0].message
    late_column = run.projects.set_index("project_code")["late"]
    assert (late_column["2023-ST-01"], late_column["2023-SB-01"]) == ("true", "false")
    t002 = run.findings("T002")
    assert t002[["project_code", "sheet", "row", "column", "value"]].values.tolist() == [
        ["2023-ST-02", "服务活动", "2", "结束日期", "2023-11-15"]]


def test_fee_above_cap_is_a_warning_with_its_figures(clean, inbox, sqlite_url, run_etl):
    spec = clean("2023-SB-06")
    experts = spec.sheets["专家名单"]
    name = experts[1][1]
    experts[1][5] = 1  # one day of service
    rows = spec.sheets["经费支出"]
    big = next(i for i, r in enumerate(rows[1:-1], start=2) if r[2] not in ("专家咨询费", "讲课费"))
    rows[big - 1][2], rows[big - 1][5] = "专家咨询费", name  # a big line paid to that expert as consultation
    put(inbox, spec)
    run = run_etl(inbox, sqlite_url)
    r008 = run.findings("R008")
    assert len(r008) == 1 and r008.iloc[0].row == str(big) and r008.iloc[0].severity == "warning"
    assert name in r008.iloc[0].message and "服务 1 天" in r008.iloc[0].message
    assert run.status("2023-SB-06") == "accepted"


def test_operator_recorded_time_decides_lateness(clean, inbox, sqlite_url, run_etl):
    from etl.cli import main

    spec = clean("2023-ST-01")
    spec.modified_at = datetime(2023, 11, 20, 9, 0, tzinfo=SHANGHAI)  # copied into the inbox late…
    put(inbox, spec)
    assert run_etl(inbox, sqlite_url).findings("T001").project_code.tolist() == ["2023-ST-01"]
    # …but the unit e-mailed it on time: the operator records that, and the next run agrees.
    assert main(["received", "--year", "2023", "--package", spec.name, "--at", "2023-11-08T15:30",
                 "--database-url", sqlite_url]) == 0
    run = run_etl(inbox, sqlite_url)
    assert run.findings("T001").empty
    row = run.projects.set_index("project_code").loc["2023-ST-01"]
    assert (row.received_at, row.late) == ("2023-11-08T15:30:00+08:00", "false")


def test_unit_text_that_looks_like_null_survives_bulk_writes(clean, inbox, database_url, run_etl):
    from sqlalchemy import create_engine, select

    from adapters.warehouse.models import ExpenseLine

    spec = clean("2023-ST-02")
    rows = spec.sheets["经费支出"]
    rows[1][EXPENSE_HEADER.index("摘要")] = r"\N"
    rows[2][EXPENSE_HEADER.index("摘要")] = '含"引号",逗号\n换行'
    put(inbox, spec)
    run_etl(inbox, database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        summaries = dict(conn.execute(select(ExpenseLine.excel_row, ExpenseLine.summary)).all())
    engine.dispose()
    assert summaries[2] == r"\N" and summaries[3] == '含"引号",逗号\n换行'


def test_national_report_of_an_accepted_package_and_n001_when_incomplete(clean, inbox, sqlite_url, run_etl):
    import json

    complete = clean("2023-GT-01")
    incomplete = clean("2023-GT-02")
    incomplete.sheets["服务活动"] = incomplete.sheets["服务活动"][:1]  # the header, no activity at all
    put(inbox, complete)
    put(inbox, incomplete)
    run = run_etl(inbox, sqlite_url)
    report = json.loads((run.dir / "national" / "2023-GT-01.json").read_text(encoding="utf-8"))
    assert report["project"]["province"] == "上海市" and report["money"]["granted"] == {
        "部拨经费": "100000.00", "市级配套": "100000.00"}
    assert {a["kind"] for a in report["attachments"]} == {"work_summary", "photo"}
    assert all(len(a["sha256"]) == 64 for a in report["attachments"])
    n001 = run.findings("N001")
    assert n001[["project_code", "column"]].values.tolist() == [["2023-GT-02", "服务活动"]]
    assert not (run.dir / "national" / "2023-GT-02.json").exists()
    assert run.status("2023-GT-02") == "rejected"


def test_a_source_of_the_other_level_leaves_the_money_unreconciled(clean, inbox, database_url, run_etl):
    # readable_money: every line's source must be one of its project's level (the aggregates are per
    # source, so a source of the other level must not count as read), and one such line is enough.
    municipal, national = clean("2023-ST-01"), clean("2023-GT-01")
    municipal.sheets["经费支出"][2][SOURCE] = "部拨经费"
    national.sheets["经费支出"][3][SOURCE] = "市级经费"
    for spec in (municipal, national, clean("2023-GT-02")):
        put(inbox, spec)
    run = run_etl(inbox, database_url)
    assert set(recon(run, "2023-ST-01").status) == {"unreconciled"}
    assert set(recon(run, "2023-GT-01").status) == {"unreconciled"}
    assert set(recon(run, "2023-GT-02").status) != {"unreconciled"}  # its lines are all of its level
    assert recon(run, "2023-GT-02").loc["部拨经费", "spent"] != ""


def test_an_expense_sheet_without_its_header_says_nothing_of_the_money(clean, inbox, database_url, run_etl):
    # The header row typed over: no column is found (S001), so no line is read. That is not "spent
    # nothing": no refund of the whole grant (R006/R004), no audited total to dispute (R002).
    spec = clean("2023-ST-01")
    spec.sheets["经费支出"][0] = [f"第{i}列" for i in range(1, len(EXPENSE_HEADER) + 1)]
    put(inbox, spec)
    run = run_etl(inbox, database_url)
    found = run.issues[run.issues.project_code == "2023-ST-01"]
    assert "S001" in set(found.rule_id)
    assert not {"R002", "R003", "R004", "R006"} & set(found.rule_id)
    assert set(recon(run, "2023-ST-01").status) == {"unreconciled"}


def test_double_claims_after_one_project_changes_equal_a_fresh_run(clean, inbox, database_url, sqlite_url,
                                                                   run_etl, tmp_path):
    # After the first run, a new version of one project makes R007 again for the vouchers it touches
    # only (reconciliation._refresh_double_claims): what it leaves must be what a fresh run finds.
    voucher = EXPENSE_HEADER.index("凭证号")
    a, b, c = clean("2023-SB-03"), clean("2023-SB-04"), clean("2023-SB-05")
    x, y, z = a.sheets["经费支出"][2][voucher], c.sheets["经费支出"][2][voucher], a.sheets["经费支出"][3][voucher]
    b.sheets["经费支出"][2][voucher], b.sheets["经费支出"][3][voucher] = x, y  # X with A, Y with C
    b.modified_at = datetime(2023, 11, 1, 9, 0)
    for spec in (a, b, c):
        put(inbox, spec)
    first = run_etl(inbox, database_url, tmp_path / "first")
    assert sorted(first.findings("R007").value) == sorted([x, x, y, y])

    b2 = clean("2023-SB-04")  # B again: X dropped, Y kept, Z (A's) added
    b2.name = b2.name.replace(".zip", "-v2.zip")
    b2.modified_at = datetime(2023, 11, 2, 9, 0)  # newer: the version in use
    b2.sheets["经费支出"][3][voucher], b2.sheets["经费支出"][4][voucher] = y, z
    put(inbox, b2)
    again = run_etl(inbox, database_url, tmp_path / "again")
    fresh = run_etl(inbox, sqlite_url, tmp_path / "fresh")

    def r007(run):
        found = run.findings("R007")
        return sorted(zip(found.project_code, found.package, found.row, found.value, found.message))

    assert r007(again) == r007(fresh)
    assert sorted(v for _, _, _, v, _ in r007(again)) == sorted([y, y, z, z])  # X is no double any more


def test_the_lines_counted_at_validation_are_the_lines_stored(clean, inbox, database_url, run_etl):
    """expense_total (what reconciliation and the indicators read) holds the stored lines counted: per
    package, source as cleaned and category, lines, lines with their amount read and those amounts' fen."""
    from sqlalchemy import create_engine, func, select

    from adapters.warehouse.models import ExpenseLine, ExpenseTotal

    spec = clean("2023-ST-01")
    spec.sheets["经费支出"][2][AMOUNT] = "一百元"  # not read: counted as a line, not as an amount
    spec.sheets["经费支出"][3][SOURCE] = "市级经费　"  # the full-width space cleaned away, as the checks do
    for package in (spec, clean("2023-GT-01")):
        put(inbox, package)
    run_etl(inbox, database_url)
    engine = create_engine(database_url)
    line, total = ExpenseLine, ExpenseTotal
    keys = (line.package_id, line.funding_source, line.category)
    with engine.connect() as conn:
        counted = conn.execute(select(*keys, func.count(), func.count(line.amount_fen),
                                      func.coalesce(func.sum(line.amount_fen), 0)).group_by(*keys)).all()
        kept = conn.execute(select(total.package_id, total.funding_source, total.category, total.lines,
                                   total.amounts, total.fen)).all()
    engine.dispose()
    assert sorted(map(tuple, kept)) == sorted(map(tuple, counted))
    assert len({row[0] for row in kept}) == 2 and any(row[3] != row[4] for row in kept)
    assert "市级经费　" not in {row[1] for row in kept}
