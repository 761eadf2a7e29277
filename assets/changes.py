"""What changed between two versions of a unit's package, from what the warehouse already stores:
findings fixed, new and still open; expense lines added, removed and changed (matched by 凭证号,
then by date and amount) with the cells that changed; money per funding source before and after;
materials added, removed or replaced.

One result (PackageChanges) read three ways: `python -m etl diff` prints it, changes/<项目编号>.xlsx
and the feedback workbook's 版本变更 sheet show it as tables (`sections`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, func, select

from adapters.registry import FUNDING_SOURCES
from adapters.warehouse import store
from adapters.warehouse.models import ExpenseLine, FindingRow
from assets.summary_workbook import Column, write_tables
from schemas.catalog import SEVERITY_ZH
from schemas.layout import EXPENSES
from schemas.values import fen_to_yuan

# P007 (superseded) is what a newer version does to an older one, not something the unit changed.
_NOT_A_CHANGE = {"P007"}
# The expense line's fields compared, in the template's order, with the template's headers.
_LINE_FIELDS = ("spent_on", "category", "funding_source", "amount_typed", "payee", "voucher_no", "summary")
_LINE_HEADERS = {f: EXPENSES.column("amount" if f == "amount_typed" else f).header for f in _LINE_FIELDS}


@dataclass(frozen=True)
class Section:
    """One table of the changes: a title, its headers and rows of text."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple]


@dataclass
class PackageChanges:
    project: str
    old: str  # package names
    new: str
    findings: list[tuple] = field(default_factory=list)  # (change, rule, severity, sheet, row, column, value, message)
    lines: list[tuple] = field(default_factory=list)  # (change, old row, new row, 凭证号, date, amount, cells changed)
    money: list[tuple] = field(default_factory=list)  # (source, before, after, difference), yuan strings
    materials: list[tuple] = field(default_factory=list)  # (change, path)

    def count(self, change: str) -> int:
        return sum(1 for row in self.findings if row[0] == change)

    def sections(self) -> list[Section]:
        return [
            Section("问题变化", ("变化", "规则", "级别", "工作表", "行", "列", "填写值", "问题说明"), self.findings),
            Section("支出明细变化", ("变化", "原行号", "新行号", "凭证号", "支出日期", "金额（元）", "改动的单元格"), self.lines),
            Section("经费来源", ("经费来源", "此前支出（元）", "现在支出（元）", "差额（元）"), self.money),
            Section("材料文件变化", ("变化", "文件"), self.materials),
        ]


def versions_of(conn: Connection, year: int, code: str) -> list:
    """The project's package versions, oldest first (the last is the one in use)."""
    return store.package_versions(conn, year, [code])


def package_changes(conn: Connection, year: int, code: str, old: str | None = None,
                    new: str | None = None) -> PackageChanges:
    """The changes from version `old` to version `new` (package names; default: the version before
    the one in use, and the one in use). LookupError when there is no such pair."""
    versions = versions_of(conn, year, code)
    to_index = _index_of(versions, new, len(versions), code)
    before = versions[:to_index]
    from_index = _index_of(before, old, len(before), code)
    if from_index < 0:
        raise LookupError(f"项目 {code} 只有一个材料包版本，没有可比较的早先版本")
    a, b = versions[from_index], versions[to_index]
    changes = PackageChanges(code, a.name, b.name)
    changes.findings = _finding_changes(conn, a.id, b.id)
    changes.lines = _line_changes(conn, a.id, b.id)
    changes.money = _money_changes(conn, a.id, b.id)
    changes.materials = _material_changes(conn, a.id, b.id)
    return changes


def _index_of(versions: list, name: str | None, default_after: int, code: str) -> int:
    """The newest version named `name` (or the last one) among `versions`, by position."""
    if name is None:
        return default_after - 1
    for index in range(len(versions) - 1, -1, -1):
        if versions[index].name == name:
            return index
    raise LookupError(f"项目 {code} 没有名为“{name}”的材料包版本（早于比较对象）")


def _finding_changes(conn: Connection, old_id: int, new_id: int) -> list[tuple]:
    f = FindingRow
    rows = conn.execute(select(f.package_id, f.rule_id, f.severity, f.sheet, f.row, f.column, f.value, f.message)
                        .where(f.package_id.in_([old_id, new_id]), f.rule_id.not_in(_NOT_A_CHANGE))
                        .order_by(f.rule_id, f.sheet, f.row, f.column)).all()
    # A finding is the same in both versions when it says the same about the same cell: rule, place, value.
    old = {(r.rule_id, r.sheet, r.row, r.column, r.value): r for r in rows if r.package_id == old_id}
    new = {(r.rule_id, r.sheet, r.row, r.column, r.value): r for r in rows if r.package_id == new_id}
    out = []
    for change, keys, source in (("已改正", old.keys() - new.keys(), old), ("新出现", new.keys() - old.keys(), new),
                                 ("仍存在", new.keys() & old.keys(), new)):
        for key in sorted(keys, key=lambda k: (k[0], k[1], k[2] or 0, k[3], k[4])):
            r = source[key]
            out.append((change, r.rule_id, SEVERITY_ZH.get(r.severity, r.severity), r.sheet, r.row, r.column, r.value,
                        r.message))
    return out


def _lines(conn: Connection, package_id: int) -> list:
    e = ExpenseLine
    return conn.execute(select(e.excel_row, *[getattr(e, f) for f in _LINE_FIELDS], e.amount_fen)
                        .where(e.package_id == package_id).order_by(e.excel_row)).all()


def _line_changes(conn: Connection, old_id: int, new_id: int) -> list[tuple]:
    old, new = _lines(conn, old_id), _lines(conn, new_id)
    pairs = _match(old, new, lambda line: line.voucher_no if line.voucher_no else None)
    paired_old, paired_new = {id(a) for a, _ in pairs}, {id(b) for _, b in pairs}
    pairs += _match([a for a in old if id(a) not in paired_old], [b for b in new if id(b) not in paired_new],
                    lambda line: (line.spent_on, line.amount_fen) if line.amount_fen is not None else None)
    paired_old, paired_new = {id(a) for a, _ in pairs}, {id(b) for _, b in pairs}
    out = []
    for a, b in sorted(pairs, key=lambda pair: pair[1].excel_row):
        cells = [f"{_LINE_HEADERS[f]}：{_shown(getattr(a, f))} → {_shown(getattr(b, f))}"
                 for f in _LINE_FIELDS if getattr(a, f) != getattr(b, f)]
        if cells:
            out.append(("修改", a.excel_row, b.excel_row, *_described(b), "；".join(cells)))
    out += [("删除", a.excel_row, None, *_described(a), "") for a in old if id(a) not in paired_old]
    out += [("新增", None, b.excel_row, *_described(b), "") for b in new if id(b) not in paired_new]
    return out


def _match(old: list, new: list, key) -> list[tuple]:
    """Pairs of lines with the same key, where the key is present and unique on both sides."""
    old_keys, new_keys = Counter(key(a) for a in old), Counter(key(b) for b in new)
    by_key = {key(b): b for b in new if key(b) is not None and new_keys[key(b)] == 1}
    return [(a, by_key[key(a)]) for a in old if key(a) in by_key and old_keys[key(a)] == 1]


def _described(line) -> tuple[str, str, str]:
    return line.voucher_no, _shown(line.spent_on), line.amount_typed


def _shown(value: object) -> str:
    return "" if value is None else str(value)


def _money_changes(conn: Connection, old_id: int, new_id: int) -> list[tuple]:
    sums = {(pid, source): int(fen or 0) for pid, source, fen in conn.execute(
        select(ExpenseLine.package_id, ExpenseLine.funding_source, func.sum(ExpenseLine.amount_fen))
        .where(ExpenseLine.package_id.in_([old_id, new_id]))
        .group_by(ExpenseLine.package_id, ExpenseLine.funding_source))}
    sources = [s for s in FUNDING_SOURCES if (old_id, s) in sums or (new_id, s) in sums]
    sources += sorted({s for _, s in sums} - set(sources))  # a source the unit typed wrong shows too
    return [(s, fen_to_yuan(sums.get((old_id, s), 0)), fen_to_yuan(sums.get((new_id, s), 0)),
             fen_to_yuan(sums.get((new_id, s), 0) - sums.get((old_id, s), 0))) for s in sources]


def _material_changes(conn: Connection, old_id: int, new_id: int) -> list[tuple]:
    files = store.package_files(conn, [old_id, new_id])
    old = {f.path: f.sha256 for f in files[old_id]}
    new = {f.path: f.sha256 for f in files[new_id]}
    return ([("新增", p) for p in sorted(new.keys() - old.keys())] + [("删除", p) for p in sorted(old.keys() - new.keys())]
            + [("内容有变化", p) for p in sorted(old.keys() & new.keys()) if old[p] != new[p]])


def projects_with_versions(conn: Connection, year: int) -> list[str]:
    """Projects with more than one package version."""
    counts = Counter(p.project_code for p in store.package_versions(conn, year))
    return sorted(code for code, n in counts.items() if n > 1)


def changes_text(changes: PackageChanges) -> str:
    """The changes in Chinese, for the operator's terminal."""
    lines = [f"项目 {changes.project}：{changes.old} → {changes.new}",
             f"问题：已改正 {changes.count('已改正')} 条，新出现 {changes.count('新出现')} 条，仍存在 {changes.count('仍存在')} 条"]
    for section in changes.sections():
        lines.append(f"\n【{section.title}】" + ("" if section.rows else " 无"))
        for row in section.rows:
            lines.append("  " + "；".join(f"{h}：{_shown(v)}" for h, v in zip(section.headers, row) if _shown(v)))
    return "\n".join(lines)


_WIDE = {"问题说明", "改动的单元格", "文件"}
_WHOLE = {"行", "原行号", "新行号"}


def _column(header: str) -> Column:
    if header in _WHOLE:
        return Column(header, "int")
    return Column(header, "wrap", 60) if header in _WIDE else Column(header, max_width=30)


def write_changes(path: Path, changes: PackageChanges, year: int) -> Path:
    """changes/<项目编号>.xlsx: one sheet per section."""
    return write_tables(path, [
        dict(name=section.title, title=f"{year}年度 {changes.project} 材料包版本变更：{changes.old} → {changes.new}",
             columns=[_column(h) for h in section.headers], rows=[list(row) for row in section.rows],
             note="" if section.rows else "无")
        for section in changes.sections()])
