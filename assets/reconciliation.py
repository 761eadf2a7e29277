"""Reconciliation: per project and funding source, what was granted against what the package in
use spent, the leftover to refund and to whom (notice §三), and the money rules R001–R007.

A package in use is reconciled whenever every expense line's amount and funding source could be read
(the amount in exact fen, the source one of its project's level), whatever else is wrong with it: the
unit hears of its money problems in the same round as of its other findings. A project is left
`unreconciled` only when it has no package or its expense amounts or sources could not be read.
Whether figures are final (no fatal finding) or provisional is decided where the package's status
is (store.fatal_package_ids), not here. All sums are integer fen.
"""

import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from sqlalchemy import Connection, Engine, Select, func, or_, select

from adapters.fee_caps import FeeCaps
from adapters.registry import FUNDING_SOURCES, REFUND_TO, RegisteredProject, YearRegistry
from adapters.resources import FeeCapsResource, RegistryResource, WarehouseResource
from adapters.warehouse import store
from adapters.warehouse.models import ExpenseLine, ExpenseTotal, Package, PackageSheet, SheetRow
from assets.charts import as_markdown_image, spending_svg
from assets.deadlines import after_completion_findings, late_findings, missing_findings
from assets.overview import deadline_end
from assets.fees import fee_findings
from assets.incremental import code_hash, digest, to_redo
from assets.partitions import forced_projects, single_run, year_partitions, years_of_run
from assets.validation import package_validation
from schemas.catalog import RECONCILIATION_STATUS_ZH
from schemas.findings import Finding, make_finding
from schemas.layout import EXPENSES, LEFTOVER, SOURCES_BY_LEVEL
from schemas.values import amount_of, fen_to_yuan


@dataclass
class LeftoverRow:
    excel_row: int
    funding_source: str
    amount_fen: int | None
    amount_typed: str
    refund_to: str


@dataclass
class PackageMoney:
    """What a package says about money, read back from the warehouse."""

    package_id: int
    spent: dict[str, int] = field(default_factory=dict)  # funding source -> fen
    declared_total: tuple[int, str] | None = None  # the 合计 row: (Excel row, amount typed)
    audited_total: tuple[int, str, str] | None = None  # (Excel row, header typed, amount typed)
    leftovers: list[LeftoverRow] = field(default_factory=list)
    leftover_sheet: str = ""  # the 结余说明 sheet's name as typed ("" when absent)
    leftover_headers: dict[str, str] = field(default_factory=dict)  # field -> header typed
    expense_sheet: str = EXPENSES.name
    expense_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceLine:
    """One row of reconciliation.csv."""

    funding_source: str
    granted: int
    spent: int | None = None
    refund_declared: int = 0
    refund_to_declared: str = ""
    status: str = "unreconciled"

    @property
    def balance(self) -> int | None:
        return None if self.spent is None else self.granted - self.spent


def load_money(conn: Connection, spent: dict[int, dict[str, int]]) -> dict[int, PackageMoney]:
    """What the readable packages (readable_money: package -> fen spent per funding source) say about money."""
    money = {pid: PackageMoney(pid, dict(by_source)) for pid, by_source in spent.items()}
    package_ids = list(money)
    if not package_ids:
        return money
    _add_sheet_names(conn, money)
    rows = conn.execute(
        select(SheetRow.package_id, SheetRow.sheet, SheetRow.excel_row, SheetRow.data)
        .where(SheetRow.package_id.in_(package_ids), SheetRow.sheet.in_([EXPENSES.name, "基本信息", LEFTOVER.name]))
        .order_by(SheetRow.package_id, SheetRow.excel_row)
    )
    for package_id, sheet, excel_row, data in rows:
        values = json.loads(data)
        target = money[package_id]
        if sheet == EXPENSES.name and "declared_total" in values:
            target.declared_total = (excel_row, values["declared_total"])
        elif sheet == "基本信息" and values.get("field") == "audited_total":
            target.audited_total = (excel_row, values["header"], values["value"])
        elif sheet == LEFTOVER.name:
            target.leftovers.append(LeftoverRow(
                excel_row, str(values.get("funding_source", "")).strip(), _fen(values.get("amount", "")),
                str(values.get("amount", "")), str(values.get("refund_to", "")).strip(),
            ))
    return money


def _add_sheet_names(conn: Connection, money: dict[int, PackageMoney]) -> None:
    """Sheet names and headers as the unit typed them, for the findings to quote."""
    for (package_id, sheet), found in store.package_sheets(conn, list(money), [LEFTOVER.name, EXPENSES.name]).items():
        headers = {f: typed for f, (typed, _) in found["headers"].items()}
        if sheet == LEFTOVER.name:
            money[package_id].leftover_sheet, money[package_id].leftover_headers = found["typed_name"], headers
        elif sheet == EXPENSES.name:
            money[package_id].expense_sheet, money[package_id].expense_headers = found["typed_name"], headers


def readable_money(conn: Connection, levels: dict[int, str]) -> dict[int, dict[str, int]]:
    """Which of these packages (id -> its project's level) can be reconciled: its 经费支出 was read with
    its 金额 and 经费来源 columns (a sheet no reader could read is P001, one whose header was not found
    has no lines at all: either says nothing of the money), every expense line's amount was read in
    exact fen and its funding source is one of the level's. A package whose 经费支出 has its header and
    no line is readable too (it spent nothing). Returns each readable package's fen spent per funding
    source."""
    read = {package_id for package_id, headers in conn.execute(
        select(PackageSheet.package_id, PackageSheet.headers).where(
            PackageSheet.package_id.in_(list(levels)), PackageSheet.sheet == EXPENSES.name))
        if _MONEY_COLUMNS <= json.loads(headers).keys()}
    # From the lines as validation counted them (expense_total), not from the lines themselves: a pass
    # over a year's million lines took 0.3 s at every run, for totals that change only with a package.
    lines: Counter = Counter()  # package -> its lines
    amounts: Counter = Counter()  # package -> its lines with the amount read
    counted: dict[int, Counter] = defaultdict(Counter)  # package -> source -> its lines
    fen: dict[int, Counter] = defaultdict(Counter)  # package -> source -> the fen read
    t = ExpenseTotal
    for package_id, source, n, read_n, read_fen in conn.execute(
            select(t.package_id, t.funding_source, t.lines, t.amounts, t.fen).where(t.package_id.in_(list(levels)))):
        lines[package_id] += n
        amounts[package_id] += read_n
        counted[package_id][source] += n
        fen[package_id][source] += read_fen
    spent: dict[int, dict[str, int]] = {}
    unreadable = set()
    for package_id in lines:
        # Every amount read, and every line's source one of the level's (a line of an unknown or empty
        # source is counted in no source).
        level_lines = sum(counted[package_id][source] for source in SOURCES_BY_LEVEL[levels[package_id]])
        if lines[package_id] != amounts[package_id] or level_lines != lines[package_id]:
            unreadable.add(package_id)
        spent[package_id] = {source: fen[package_id][source] for source in FUNDING_SOURCES if counted[package_id][source]}
    return {pid: spent.get(pid, {}) for pid in sorted(levels) if pid in read and pid not in unreadable}


# The columns of 经费支出 the money is read from.
_MONEY_COLUMNS = {"amount", "funding_source"}


def _fen(typed: object) -> int | None:
    return amount_of(typed).fen


def reconcile(project: RegisteredProject, registry: YearRegistry, money: PackageMoney | None) -> tuple[list[SourceLine], list[Finding]]:
    """The project's rows of reconciliation.csv and its money findings (none when unreconciled)."""
    lines = [SourceLine(source, granted) for source, granted in registry.grants_for(project).items()]
    if money is None:
        return lines, []
    findings: list[Finding] = []
    total_spent = sum(money.spent.values())
    declared = {row.funding_source: row for row in money.leftovers}
    for line in lines:
        line.spent = money.spent.get(line.funding_source, 0)
        leftover = declared.get(line.funding_source)
        if leftover is not None:
            line.refund_declared, line.refund_to_declared = leftover.amount_fen or 0, leftover.refund_to
        findings += _source_findings(line, leftover, money)
        line.status = "balanced" if line.balance == 0 else ("refund_due" if line.balance > 0 else "overspent")
    findings += _total_findings(total_spent, money)
    return lines, findings


def _source_findings(line: SourceLine, leftover: LeftoverRow | None, money: PackageMoney) -> list[Finding]:
    source, balance = line.funding_source, line.balance
    refund_to = REFUND_TO[source]
    if balance < 0:
        return [make_finding("R001", source=source, amount=fen_to_yuan(-balance), granted=fen_to_yuan(line.granted),
                             spent=fen_to_yuan(line.spent))]
    findings = []
    if balance > 0:
        findings.append(make_finding("R006", source=source, amount=fen_to_yuan(balance), refund_to=refund_to))
        if leftover is None:
            findings.append(make_finding("R004", sheet=money.leftover_sheet, source=source, amount=fen_to_yuan(balance)))
    if leftover is None:
        return findings
    place = dict(sheet=money.leftover_sheet or LEFTOVER.name, row=leftover.excel_row)
    if leftover.amount_fen is not None and leftover.amount_fen != max(balance, 0):
        detail = (f"结余说明填写结余 {fen_to_yuan(leftover.amount_fen)} 元，实际结余 {fen_to_yuan(balance)} 元")
        findings.append(make_finding("R005", **place, column=money.leftover_headers.get("amount", "结余金额（元）"),
                                     value=leftover.amount_typed, source=source, detail=detail))
    if balance > 0 and leftover.refund_to != refund_to:
        detail = f"结余应退回{refund_to}，结余说明填写的退回对象为“{leftover.refund_to}”"
        findings.append(make_finding("R005", **place, column=money.leftover_headers.get("refund_to", "退回对象"),
                                     value=leftover.refund_to, source=source, detail=detail))
    return findings


def _total_findings(total_spent: int, money: PackageMoney) -> list[Finding]:
    findings = []
    if money.audited_total is not None:
        row, header, typed = money.audited_total
        audited = _fen(typed)
        if audited is not None and audited != total_spent:
            findings.append(make_finding("R002", sheet="基本信息", row=row, column=header, value=typed,
                                         spent=fen_to_yuan(total_spent), audited=fen_to_yuan(audited),
                                         amount=fen_to_yuan(abs(audited - total_spent))))
    if money.declared_total is not None:
        row, typed = money.declared_total
        declared = _fen(typed)
        if declared is not None and declared != total_spent:
            column = money.expense_headers.get("amount", EXPENSES.column("amount").header)
            findings.append(make_finding("R003", sheet=money.expense_sheet, row=row, column=column, value=typed,
                                         spent=fen_to_yuan(total_spent), declared=fen_to_yuan(declared),
                                         amount=fen_to_yuan(abs(declared - total_spent))))
    return findings


def double_claims(conn: Connection, in_use: dict[str, int], reported: set[int],
                  among: Select | None = None) -> list[tuple[int, str, Finding]]:
    """R007: the same 凭证号 in two projects' packages in use, accepted or not. Each `reported` package
    (every readable one) gets a warning per line, naming the other projects, so both units are asked.
    `among`: only the vouchers this query gives (the year's when None)."""
    package_project = {pid: code for code, pid in in_use.items()}
    in_year = ExpenseLine.package_id.in_(list(package_project))
    # The lines of vouchers in more than one package in use (one per project), found by the database in
    # one statement: a year holds a million lines and only the shared ones need to come out (MIN <> MAX:
    # no per-group sort; no index on voucher_no either, a scan of the table is faster, see migration 0005).
    shared = (select(ExpenseLine.voucher_no).where(in_year, ExpenseLine.voucher_no != "")
              .group_by(ExpenseLine.voucher_no)
              .having(func.min(ExpenseLine.package_id) != func.max(ExpenseLine.package_id)))
    if among is not None:
        # A scan probing the few vouchers asked about, instead of grouping a year's million lines by
        # voucher (a sort): 2.2 -> 0.5 s at a million lines in SQLite, for one project's vouchers.
        shared = shared.where(ExpenseLine.voucher_no.in_(among.scalar_subquery()))
    lines = pd.DataFrame(conn.execute(
        select(ExpenseLine.package_id, ExpenseLine.excel_row, ExpenseLine.voucher_no)
        .where(in_year, ExpenseLine.voucher_no.in_(shared.scalar_subquery()))
    ).all(), columns=["package_id", "excel_row", "voucher_no"])
    if lines.empty:
        return []
    lines["project"] = lines["package_id"].map(package_project)
    hits = lines[lines["package_id"].isin(reported)]
    projects = lines.groupby("voucher_no")["project"].agg(set)
    sheets = {pid: PackageMoney(pid) for pid in set(hits["package_id"])}
    _add_sheet_names(conn, sheets)  # of the packages named, not the year's
    out = []
    for package_id, excel_row, voucher, code in hits.itertuples(index=False, name=None):
        sheet = sheets[package_id]
        finding = make_finding("R007", sheet=sheet.expense_sheet, row=excel_row,
                               column=sheet.expense_headers.get("voucher_no", "凭证号"), value=voucher,
                               other="、".join(sorted(projects[voucher] - {code})))
        out.append((package_id, code, finding))
    return out


def reconciliation_keys(conn: Connection, registry: YearRegistry, caps: list[FeeCaps], now: datetime) -> dict[str, str]:
    """project -> what its money and time findings are made of: its registry entry, each version's
    validated content and received time, the year's grants, dates and fee caps (and whether the
    deadline has passed, for T003), and the code of these rules. R007 looks across projects and is
    redone, for the vouchers involved, whenever any project is. An operator's active waivers of the project count too (recording,
    revoking or the expiry of one redoes that project alone); a project without any keeps its key."""
    year_inputs = digest(_MONEY_CODE, registry.grants, registry.deadline, registry.team_completion_date, caps,
                         now >= deadline_end(registry))
    versions: dict[str, list] = defaultdict(list)
    for p in store.package_versions(conn, registry.year):
        versions[p.project_code].append((p.id, p.validated_key, p.intake_status, p.received_at, p.modified_at))
    waivers: dict[str, list] = defaultdict(list)
    for w in store.active_waivers(conn, registry.year):
        waivers[w.project_code].append(w.id)
    return {p.code: digest(year_inputs, p, versions.get(p.code, []), *([waivers[p.code]] if p.code in waivers else []))
            for p in registry.projects}


def _money_code() -> str:
    from adapters import fee_caps
    from assets import deadlines, fees, overview
    from schemas import catalog, findings, values

    return code_hash(fee_caps, deadlines, fees, overview, catalog, findings, values, sys.modules[__name__])


_MONEY_CODE = _money_code()
KEYS = "reconciliation/"  # fingerprints of each project's money and time findings

def reconcile_projects(engine: Engine, registry: YearRegistry, keys: dict[str, str], caps: list[FeeCaps],
                       now: datetime) -> None:
    """Reconcile the projects' packages in use, apply the money and time rules, and store it all
    with each project's key (see reconciliation_keys), in one transaction."""
    year = registry.year
    projects = [p for code in keys if (p := registry.project(code)) is not None]
    with engine.begin() as conn:
        versions = store.package_versions(conn, year, [p.code for p in projects])
        in_use = {p.project_code: p for p in versions}  # oldest first, so the last one wins
        spent = readable_money(conn, {p.id: registry.project(code).level for code, p in in_use.items()
                                      if p.intake_status == "readable"})
        readable = list(spent)
        money = load_money(conn, spent)
        fees = fee_findings(conn, readable, caps, {pid: m.expense_sheet for pid, m in money.items()},
                            {pid: m.expense_headers for pid, m in money.items()})
        teams = [p.id for p in versions if p.intake_status == "readable" and registry.project(p.project_code).type == "team"]
        time_rules = {**late_findings(registry, versions)}
        for pid, found in after_completion_findings(conn, registry, teams).items():
            time_rules.setdefault(pid, []).extend(found)
        missing = missing_findings(registry, projects, set(in_use), now)

        money_rows, recon_rows = [], []
        for project in projects:
            package = in_use.get(project.code)
            package_money = money.get(package.id) if package else None
            lines, found = reconcile(project, registry, package_money)
            found += fees.get(package.id, []) if package else []
            money_rows += [store.finding_row(year, package.id, project.code, f) for f in found]
            recon_rows += [_reconciliation_row(year, project.code, package, package_money, line) for line in lines]
        time_rows = [store.finding_row(year, p.id, p.project_code, f) for p in versions for f in time_rules.get(p.id, [])]
        time_rows += [store.finding_row(year, None, code, f) for code, found in missing.items() for f in found]

        store.replace_reconciliation(conn, year, [p.code for p in projects], recon_rows)
        store.replace_findings(conn, "reconciliation", money_rows, year=year, project_codes=[p.code for p in projects])
        store.replace_findings(conn, "time", time_rows, year=year, project_codes=[p.code for p in projects])
        _refresh_double_claims(conn, registry, [p.code for p in projects])
        store.set_fingerprints(conn, year, KEYS, keys)


def _refresh_double_claims(conn: Connection, registry: YearRegistry, redone: list[str]) -> None:
    """R007 looks across the whole year: a late package can make an earlier project's voucher a double.
    Only vouchers a package of a `redone` project holds can have changed (a project's new, superseded or
    reassigned version changes its key), or one of a package no project holds any more: when few projects
    were redone, the findings of those vouchers alone are made again. The result is the whole year's."""
    year = registry.year
    newest = store.newest_packages(conn, year)
    in_use = {code: p.id for code, p in newest.items()}
    readable = {p.id for p in newest.values() if p.intake_status == "readable"}
    among = None
    if len(redone) <= len(registry.projects) // _FEW:
        changed = select(Package.id).where(Package.year == year, or_(Package.project_code.in_(redone),
                                                                        Package.project_code.is_(None)))
        among = select(ExpenseLine.voucher_no).where(ExpenseLine.package_id.in_(changed.scalar_subquery()))
    rows = [store.finding_row(year, pid, code, f) for pid, code, f in double_claims(conn, in_use, readable, among)]
    if among is None:
        store.replace_findings(conn, "double_claims", rows, year=year, whole_year=True)
    else:
        store.replace_findings(conn, "double_claims", rows, year=year, values=among)


# At most this share of the registry redone (1/_FEW), R007 is made again for the vouchers it touched only.
_FEW = 10


def _reconciliation_row(year: int, code: str, package, money: PackageMoney | None, line: SourceLine) -> dict:
    audited = _fen(money.audited_total[2]) if money and money.audited_total else None
    declared = _fen(money.declared_total[1]) if money and money.declared_total else None
    balance = line.balance
    return dict(
        year=year, project_code=code, funding_source=line.funding_source,
        package_id=package.id if package else None, granted_fen=line.granted, spent_fen=line.spent,
        balance_fen=balance, refund_to=REFUND_TO[line.funding_source] if balance and balance > 0 else "",
        refund_declared_fen=line.refund_declared, refund_to_declared=line.refund_to_declared,
        declared_total_fen=declared, audited_total_fen=audited, status=line.status,
    )


# Figures come only from packages whose every expense amount and source was read. Whether they are
# final is the package's status (provisional while it has fatal findings; national reports are made
# only from packages without: assets/national.py), not this check's business.
MONEY_CHECK = "reconciled_only_readable_money"


@dg.asset(
    deps=[package_validation],
    partitions_def=year_partitions,
    backfill_policy=single_run,
    group_name="reconciliation",
    kinds={"python"},
    check_specs=[dg.AssetCheckSpec(
        MONEY_CHECK, asset="reconciliation", blocking=True,
        description="本次重新对账的项目只使用经费支出金额和经费来源全部可识别的材料包；有致命问题的材料包的对账结果为暂定"
                    "（reconciliation.csv 的 provisional 列），不进入国家系统报告。")],
)
def reconciliation(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: RegistryResource,
    fee_caps: FeeCapsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """对账：按项目和经费来源（部拨经费、市级配套、市级经费）核对拨付与支出，计算结余及退回对象
    （部拨经费退人力资源社会保障部，市级经费退市人力资源社会保障局），检查超支、审计金额、合计行、
    结余说明、重复凭证、专家咨询费/讲课费标准（R001–R008）和报送时间（T001–T003）。"""
    engine = warehouse.engine()
    now = datetime.now(timezone.utc)
    caps = fee_caps.load()
    money_table, chart_rows = [], []
    by_rule: Counter = Counter()
    misused: list[str] = []
    redone = 0
    for year in years_of_run(context):
        year_registry = registry.year(year)
        with engine.connect() as conn:
            keys = reconciliation_keys(conn, year_registry, caps, now)
            done = store.fingerprints(conn, year, KEYS)
        todo = to_redo(keys, done, forced_projects(context))
        if todo:
            reconcile_projects(engine, year_registry, {code: keys[code] for code in todo}, caps, now)
        redone += len(todo)
        with engine.connect() as conn:
            stored = store.reconciliation(conn, year)
            redone_now = set(todo)
            misused += _reconciled_unreadable(conn, [r for r in stored if r.project_code in redone_now], year_registry)
            for (rule_id, _), n in store.finding_counts(conn, year).items():
                if rule_id[0] in "RT":
                    by_rule[rule_id] += n
        table = _by_project(stored)
        shown = _attention_first(table)[:_SHOWN_PROJECTS]
        money_table += [dict(项目=code, 经费来源=l.funding_source, 拨付=_shown_yuan(l.granted),
                             支出=_shown_yuan(l.spent), 结余=_shown_yuan(l.balance), 状态=RECONCILIATION_STATUS_ZH[l.status])
                        for code in shown for l in table[code]]
        chart_rows += [(code, l.funding_source, l.granted, l.spent) for code in shown for l in table[code]]
    frame = pd.DataFrame(money_table)
    yield dg.MaterializeResult(metadata={
        "本次重新对账的项目数": redone,
        # disable_numparse: tabulate would turn "98724.50" back into the float 98724.5.
        f"对账表（需关注的项目在前，最多 {_SHOWN_PROJECTS} 个；全部见 reconciliation.csv）": dg.MetadataValue.md(
            frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "无"),
        "支出图": dg.MetadataValue.md(as_markdown_image(spending_svg(chart_rows), "各项目经费支出")),
        "对账与时间问题（按规则）": dg.MetadataValue.json(dict(sorted(by_rule.items()))),
    })
    yield dg.AssetCheckResult(
        check_name=MONEY_CHECK, passed=not misused,
        metadata={"对账使用了金额或来源无法识别的材料包的项目": dg.MetadataValue.json(sorted(misused))},
    )


def _by_project(stored: list) -> dict[str, list[SourceLine]]:
    """The year's reconciliation as stored (what this run redid and what it kept), by project."""
    table: dict[str, list[SourceLine]] = defaultdict(list)
    for r in stored:
        table[r.project_code].append(SourceLine(r.funding_source, r.granted_fen, r.spent_fen, r.refund_declared_fen,
                                                r.refund_to_declared, r.status))
    return table


# The UI's table and chart stay readable for a national year of thousands of projects.
_SHOWN_PROJECTS = 40
_ATTENTION = {"overspent": 0, "refund_due": 1, "unreconciled": 2, "balanced": 3}


def _attention_first(table: dict[str, list[SourceLine]]) -> list[str]:
    """Project codes, those with an overspent, then a refund due, then an unreconciled source first."""
    return sorted(table, key=lambda code: (min((_ATTENTION[l.status] for l in table[code]), default=3), code))


def _shown_yuan(fen: int | None) -> str:
    """1234567 fen -> '12,345.67' for the operator's table (exact: from integer fen)."""
    if fen is None:
        return ""
    yuan, cents = fen_to_yuan(fen).split(".")
    return f"{int(yuan):,}.{cents}"


def _reconciled_unreadable(conn: Connection, stored: list, registry: YearRegistry) -> list[str]:
    """Projects whose reconciled figures come from a package whose expense amounts or sources were not all
    read. Given the rows this run reconciled: a project's kept rows were checked by the run that made
    them, from the same inputs (its key), and a nightly run that redoes nothing reads no expense line."""
    rows = [r for r in stored if r.status != "unreconciled" and r.package_id is not None
            and registry.project(r.project_code) is not None]  # a project struck off keeps its old rows
    levels = {r.package_id: registry.project(r.project_code).level for r in rows}
    readable = readable_money(conn, levels)
    return sorted({r.project_code for r in rows if r.package_id not in readable})
