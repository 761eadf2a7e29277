"""The sample inbox `make run` shows a newcomer: one year's packages, most of the ways a unit gets it
right and most of the ways it gets it wrong.

Every registered project gets a role (ROLES, by the code after the year); the projects themselves come
from the registry yaml. About half the packages are clean (one a folder, one with GBK member names, one
with 经费支出.csv in GBK, one messy but valid), one project hands in nothing, the others carry planted
defects, and a few packages name no registered project at all.

EXPECTED lists every planted defect as (package, rule_id, sheet, row), with these conventions:
- package: the file or folder name in <inbox>/<year>/; "" only for T003 (a project with no package).
- row: the Excel row the unit sees (header = 1; in 基本信息 the row of the field); None when the
  finding points at no row. sheet is "" for package- and project-level findings, and names the sheet
  for a missing sheet (P003) or a missing column (S001), which point at a sheet but at no cell.
- R006 (money left over, a warning) is listed for the project that leaves money over on purpose.
- Planted money defects keep the typed amounts adding up (a negative line reverses a duplicate, a
  3-decimal split adds up to the line it split), so no R-rule follows from them as long as amounts are
  summed as typed. The one exception is the 部拨经费 line on a municipal project (S005): it necessarily
  puts money on a source the project was not granted. A package is reconciled whenever every expense
  line's amount and source could be read, rejected or not, so its R-findings are listed (the wrong
  identity package overspends on purpose: R001); one whose amounts or sources cannot all be read (the
  bad accounts package) is left unreconciled and gets none.
- P007 is listed for the older package wherever a project has two, including the path-traversal one
  (P004): its workbook can still be read safely, so it names its project.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path


from adapters.registry import RegisteredProject, YearRegistry, load_year
from assets.templates import template_bytes
from etl.sample.builder import (
    ACTIVITIES, BASIC_INFO, EXPENSES, EXPERT_PAID_LIMITS, PHOTOS, SHANGHAI, TOTAL_LABEL, Cell, PackageSpec,
    USCC_ALPHABET, clean_package, docx_bytes, write_package,
)

SAMPLE_YEAR = 2023
REGISTRY_DIR = Path(__file__).resolve().parents[2] / "data" / "registry"
DEFAULT_REGISTRY = REGISTRY_DIR / f"{SAMPLE_YEAR}.yaml"

Expected = tuple[str, str, str, int | None]  # (package, rule_id, sheet, row)


@dataclass
class SampleInbox:
    packages: list[PackageSpec] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)


def yuan_grants(fen_by_source: dict[str, int]) -> dict[str, Decimal]:
    return {source: Decimal(fen) / 100 for source, fen in fen_by_source.items()}


def project_spec(registry: YearRegistry, project: RegisteredProject) -> dict:
    """A registered project as clean_package takes it: its registry fields, grants in Decimal yuan, and
    the template generated for it (the package's workbook is that template, filled in)."""
    return dict(code=project.code, level=project.level, type=project.type, host_unit=project.host_unit,
                project_name=project.project_name, aliases=list(project.aliases), uscc=project.uscc,
                grants=yuan_grants(registry.grants_for(project)), template=template_bytes(registry, project))


def load_projects(registry_path: Path) -> tuple[YearRegistry, list[dict]]:
    """The registry (read as the pipeline reads it) and its projects as clean_package takes them."""
    registry = load_year(int(registry_path.stem), registry_path.parent)
    return registry, [project_spec(registry, p) for p in registry.projects]


def sample_inbox(year: int, registry_path: Path) -> SampleInbox:
    """Every package of the sample inbox (not written yet) and the defects planted in them."""
    registry, projects = load_projects(registry_path)
    if registry.year != year:
        raise ValueError(f"{registry_path} is the registry of {registry.year}, not {year}")
    sample = _Sample(year, registry.deadline)
    for seed, project in enumerate(projects):
        ROLES.get(project["code"].split("-", 1)[1], _clean)(sample, project, seed)
    _unregistered(sample, registry)
    return sample.inbox


def build_sample_inbox(year: int, out_dir: Path, registry_path: Path | None = None) -> list[Path]:
    """Write the sample packages into out_dir/<year>/ and return their paths; the registry defaults to
    data/registry/<year>.yaml. Other files there are left alone, so a package renamed in a later version
    of this sample stays behind until removed by hand."""
    specs = sample_inbox(year, registry_path or REGISTRY_DIR / f"{year}.yaml").packages
    return [write_package(spec, out_dir / str(year)) for spec in specs]


@functools.cache
def _default_expected() -> list[Expected]:
    return sample_inbox(SAMPLE_YEAR, DEFAULT_REGISTRY).expected


def __getattr__(name: str) -> list[Expected]:
    # EXPECTED is computed on first use: it needs the registry and renders every package.
    if name == "EXPECTED":
        return _default_expected()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Sample:
    def __init__(self, year: int, deadline: date):
        self.year, self.deadline = year, deadline
        self.inbox = SampleInbox()

    def received(self, spec: PackageSpec, days_before_deadline: int, hour: int, minute: int) -> None:
        """Stamp when the package arrived (its mtime) and the 填报日期 the unit typed that day."""
        arrived = datetime.combine(self.deadline - timedelta(days=days_before_deadline), time(hour, minute),
                                   SHANGHAI)
        spec.modified_at = arrived
        if BASIC_INFO in spec.sheets:
            _field(spec, "填报日期")[1] = arrived.date()

    def add(self, spec: PackageSpec, *findings: tuple[str, str, list[Cell] | None]) -> None:
        """Add a finished package; each finding names its rule, its sheet and the planted row itself."""
        self.inbox.packages.append(spec)
        for rule_id, sheet, row in findings:
            number = None if row is None else _position(spec.sheets[sheet], row) + 1
            self.inbox.expected.append((spec.name, rule_id, sheet, number))


def _position(rows: list[list[Cell]], row: list[Cell]) -> int:
    # By identity: a planted duplicate line is equal to its original, list.index would find the original.
    return next(index for index, candidate in enumerate(rows) if candidate is row)


def _field(spec: PackageSpec, name: str) -> list[Cell]:
    return next(row for row in spec.sheets[BASIC_INFO] if row[0] == name)


def _col(rows: list[list[Cell]], name: str) -> int:
    return rows[0].index(name)


def _firm_paid(spec: PackageSpec) -> list[list[Cell]]:
    """Expense lines paid to firms (not the 合计 row): planting a defect there cannot push an expert over
    a fee cap (R008)."""
    rows = spec.sheets[EXPENSES]
    category = _col(rows, "支出科目")
    return [row for row in rows[1:] if row[0] != TOTAL_LABEL and row[category] not in EXPERT_PAID_LIMITS]


def _renumber(rows: list[list[Cell]]) -> None:
    for number, row in enumerate((row for row in rows[1:] if row[0] != TOTAL_LABEL), start=1):
        row[0] = number


def _renamed(spec: PackageSpec, label: str) -> str:
    return spec.name.removesuffix(".zip") + label + ".zip"


# --- roles ------------------------------------------------------------------------------------------


def _clean(sample: _Sample, project: dict, seed: int) -> None:
    spec = clean_package(project, sample.year, seed=seed)
    sample.received(spec, 6, 10, 15)
    sample.add(spec)


def _leftover(sample: _Sample, project: dict, seed: int) -> None:
    """Clean, but some money left over on every source, explained and refunded: R006 per source."""
    leftover = dict(zip(project["grants"], [Decimal("3860.00"), Decimal("1275.50")]))
    spec = clean_package(project, sample.year, seed=seed, leftover=leftover)
    sample.received(spec, 4, 15, 20)
    sample.add(spec, *[("R006", "", None)] * len(leftover))


def _folder(sample: _Sample, project: dict, seed: int) -> None:
    """Clean, handed in as a folder, the work summary written in Word."""
    spec = clean_package(project, sample.year, seed=seed)
    spec.as_zip, spec.name = False, spec.name.removesuffix(".zip")
    summary = _field(spec, "工作总结文件")
    del spec.files[summary[1]]
    summary[1] = f"{sample.year}年度工作成效总结.docx"
    spec.files[summary[1]] = docx_bytes(f"{project['project_name']}{sample.year}年度工作成效总结\n"
                                        f"依托单位：{project['host_unit']}\n本年度各项服务活动均按计划完成。")
    sample.received(spec, 2, 10, 5)
    sample.add(spec)


def _corrected(sample: _Sample, project: dict, seed: int) -> None:
    """A first package with mistakes, then the corrected one: the first is superseded (P007)."""
    first = clean_package(project, sample.year, seed=seed)
    del first.files[_field(first, "审计报告文件")[1]]  # the unit had not got the audit report yet
    rows, lines = first.sheets[EXPENSES], _firm_paid(first)
    lines[1][_col(rows, "支出日期")] = f"{sample.year}-06-31"
    lines[3][_col(rows, "支出日期")] = None
    activity = first.sheets[ACTIVITIES][2]
    activity[_col(first.sheets[ACTIVITIES], "服务人次")] = "约200"
    sample.received(first, 8, 16, 40)
    sample.add(first, ("P007", "", None), ("M002", BASIC_INFO, _field(first, "审计报告文件")),
               ("S002", EXPENSES, lines[1]), ("S003", EXPENSES, lines[3]), ("S002", ACTIVITIES, activity))

    corrected = clean_package(project, sample.year, seed=seed)
    corrected.name = _renamed(corrected, "（修改版）")
    sample.received(corrected, 3, 11, 30)
    sample.add(corrected)


def _gbk_names(sample: _Sample, project: dict, seed: int) -> None:
    """Clean, zipped on Chinese Windows: GBK names without the UTF-8 flag, all under the folder the unit
    right-clicked (so every member differs from the workbook's reference by that folder)."""
    spec = clean_package(project, sample.year, seed=seed)
    root = spec.name.removesuffix(".zip") + "/"
    spec.gbk_names = True
    spec.workbook_name = root + spec.workbook_name
    spec.files = {root + path: data for path, data in spec.files.items()}
    sample.received(spec, 7, 9, 15)
    sample.add(spec)


def _bad_accounts(sample: _Sample, project: dict, seed: int) -> None:
    """The expense sheet of a unit whose accounting went wrong in every way the schema checks."""
    spec = clean_package(project, sample.year, seed=seed)
    rows, lines = spec.sheets[EXPENSES], _firm_paid(spec)
    category, source, amount, payee, voucher, summary = (
        _col(rows, name) for name in ("支出科目", "经费来源", "金额（元）", "收款方", "凭证号", "摘要"))
    equipment, wrong_source, entered_twice, split = lines[0], lines[1], lines[2], lines[4]

    equipment[category], equipment[payee] = "设备购置费", "上海精测仪器设备有限公司"
    equipment[summary] = "便携式多参数水质检测仪"
    wrong_source[source] = "部拨经费"
    # A line typed twice under one voucher, then reversed by a negative line: S007 twice, S006 once.
    duplicate, reversal = list(entered_twice), list(entered_twice)
    reversal[amount], reversal[voucher] = -entered_twice[amount], f"{entered_twice[voucher]}-冲"
    reversal[summary] = f"冲销重复录入（凭证{entered_twice[voucher]}）"
    position = _position(rows, entered_twice)
    rows[position + 1 : position + 1] = [duplicate, reversal]
    # A venue bill split over three sessions to the tenth of a fen: every part has 3 decimals.
    third = (split[amount] / 3).quantize(Decimal("0.001"), ROUND_DOWN)
    while third % Decimal("0.005") == 0:  # a last digit of 0 or 5 would leave one part with 2 decimals
        third -= Decimal("0.001")
    parts = []
    for session, part in enumerate([third, third, split[amount] - 2 * third], start=1):
        line = list(split)
        line[category], line[payee] = "场地租赁费", "上海汇展会展服务有限公司"
        line[amount], line[voucher] = part, f"{split[voucher]}/{session}"
        line[summary] = f"培训场地租赁费分摊（第{session}期）"
        parts.append(line)
    position = _position(rows, split)
    rows[position : position + 1] = parts
    _renumber(rows)
    sample.received(spec, 0, 17, 55)
    sample.add(spec, ("S004", EXPENSES, equipment), ("S005", EXPENSES, wrong_source),
               ("S007", EXPENSES, entered_twice), ("S007", EXPENSES, duplicate), ("S006", EXPENSES, reversal),
               *[("S006", EXPENSES, part) for part in parts])


def _missing_sheet(sample: _Sample, project: dict, seed: int) -> None:
    """Clean but for a required sheet the unit deleted."""
    spec = clean_package(project, sample.year, seed=seed)
    del spec.sheets[ACTIVITIES]
    sample.received(spec, 4, 8, 50)
    sample.add(spec, ("P003", ACTIVITIES, None))


def _wrong_identity(sample: _Sample, project: dict, seed: int) -> None:
    """The supervising body typed as 依托单位, a USCC with a typo in it, an old template's 经费支出
    without the 支出科目 column, and 500.00 spent over the grant (合计 and audited total in step): the
    package is rejected, yet its amounts and sources read, so its overspending (R001) comes in the same
    answer."""
    spec = clean_package(project, sample.year, seed=seed)
    rows = spec.sheets[EXPENSES]
    amount = _col(rows, "金额（元）")
    over = Decimal("500.00")
    for row in (_firm_paid(spec)[0], rows[-1]):
        row[amount] += over
    _field(spec, "审计确认支出金额（元）")[1] += over
    host, uscc = _field(spec, "依托单位"), _field(spec, "统一社会信用代码")
    host[1] = "上海市科学技术委员会"
    # Any other last character fails the check: the one the unit typed was the check character.
    wrong = USCC_ALPHABET[(USCC_ALPHABET.index(uscc[1][-1]) + 7) % len(USCC_ALPHABET)]
    uscc[1] = uscc[1][:-1] + wrong
    rows = spec.sheets[EXPENSES]
    dropped = _col(rows, "支出科目")
    for row in rows:
        del row[dropped]
    sample.received(spec, 2, 14, 10)
    sample.add(spec, ("P006", BASIC_INFO, host), ("S009", BASIC_INFO, uscc), ("S001", EXPENSES, None),
               ("R001", "", None))


def _messy_and_unsafe(sample: _Sample, project: dict, seed: int) -> None:
    """An early package with a path-traversal member (P004), then the real one: typed any which way,
    yet valid. The unsafe one is older, so it is also superseded (P007) and the project stays accepted
    on its messy package."""
    unsafe = clean_package(project, sample.year, seed=seed)
    unsafe.name = _renamed(unsafe, "（打包工具导出）")
    unsafe.files["../../evil.txt"] = "这个文件会被解压到收件箱之外。".encode()
    sample.received(unsafe, 9, 13, 0)
    sample.add(unsafe, ("P004", "", None), ("P007", "", None))

    spec = clean_package(project, sample.year, seed=seed)
    sample.received(spec, 3, 9, 40)
    _mess_up(spec)
    sample.add(spec)


def _missing_materials(sample: _Sample, project: dict, seed: int) -> None:
    """The work summary left out, a listed photo left out, and an .exe that calls itself a photo."""
    spec = clean_package(project, sample.year, seed=seed)
    del spec.files[_field(spec, "工作总结文件")[1]]
    photos = spec.sheets[PHOTOS]
    lost = photos[2]
    del spec.files[lost[_col(photos, "文件名")]]
    spec.files["照片/IMG_2045.jpg"] = _windows_executable()
    sample.received(spec, 0, 20, 30)
    sample.add(spec, ("M001", BASIC_INFO, _field(spec, "工作总结文件")), ("M003", PHOTOS, lost),
               ("M005", "", None))


def _warnings_only(sample: _Sample, project: dict, seed: int) -> None:
    """Accepted, with what the bureau should still look at: a 2022 expense, a made-up region code and a
    photo without its caption."""
    spec = clean_package(project, sample.year, seed=seed)
    rows, activities, photos = spec.sheets[EXPENSES], spec.sheets[ACTIVITIES], spec.sheets[PHOTOS]
    early = _firm_paid(spec)[0]
    early[_col(rows, "支出日期")] = date(sample.year - 1, 12, 20)
    activities[2][_col(activities, "行政区划代码")] = "999999"
    photos[2][_col(photos, "说明")] = None
    sample.received(spec, 5, 10, 20)
    sample.add(spec, ("S008", EXPENSES, early), ("S010", ACTIVITIES, activities[2]),
               ("M004", PHOTOS, photos[2]))


def _nothing(sample: _Sample, project: dict, seed: int) -> None:
    """No package at all: the project is missing after the deadline (T003)."""
    sample.inbox.expected.append(("", "T003", "", None))


def _csv_expenses(sample: _Sample, project: dict, seed: int) -> None:
    """Clean; a large unit's finance system exported 经费支出 as a GBK CSV."""
    spec = clean_package(project, sample.year, seed=seed)
    spec.expenses_csv = "gbk"
    sample.received(spec, 7, 16, 0)
    sample.add(spec)


ROLES: dict[str, Callable[[_Sample, dict, int], None]] = {
    "GT-01": _leftover,
    "GT-02": _folder,
    "ST-01": _corrected,
    "ST-02": _gbk_names,
    "ST-03": _bad_accounts,
    "ST-04": _missing_sheet,
    "SB-01": _wrong_identity,
    "SB-02": _messy_and_unsafe,
    "SB-03": _missing_materials,
    "SB-04": _warnings_only,
    "SB-05": _nothing,
    "SB-06": _csv_expenses,
}


def _unregistered(sample: _Sample, registry: YearRegistry) -> None:
    """Packages that name no registered project: a corrupt zip, photos without a workbook, and a unit
    funded in an earlier batch that made up a project code."""
    corrupt = PackageSpec(name="专家服务基层材料（最终版）.zip", sheets={},
                          raw=random.Random(f"{sample.year}/corrupt").randbytes(4096))
    sample.received(corrupt, 6, 12, 0)
    sample.add(corrupt, ("P001", "", None))

    # An earlier batch's base: its unit fills a template of that batch, with a code the registry lacks.
    stranger = project_spec(registry, RegisteredProject(
        code=f"{sample.year}-XX-99", level="municipal", type="base", host_unit="上海市松江区农业技术推广中心",
        project_name="松江区农业科技专家服务站"))
    photos_only = clean_package(stranger, sample.year)
    photos_only.name, photos_only.no_workbook = "现场照片及工作总结.zip", True
    sample.received(photos_only, 4, 18, 0)
    sample.add(photos_only, ("P002", "", None))

    unknown = clean_package(stranger, sample.year)
    sample.received(unknown, 3, 15, 0)
    sample.add(unknown, ("P005", BASIC_INFO, _field(unknown, "项目编号")))


# --- what a real unit types -------------------------------------------------------------------------

_FULL_WIDTH = str.maketrans("0123456789.,", "０１２３４５６７８９．，")
_AMOUNT_STYLES: list[Callable[[Decimal], Cell]] = [
    lambda amount: amount,
    lambda amount: f"¥{amount:,.2f}",
    lambda amount: f"{amount:.2f}".translate(_FULL_WIDTH),
    lambda amount: f"{amount:,.2f}",
    lambda amount: f"{amount.normalize():f}",
]
_DATE_STYLES: list[Callable[[date], Cell]] = [
    lambda day: day,
    lambda day: f"{day.year}年{day.month}月{day.day}日",
    lambda day: f"{day.year}/{day.month}/{day.day}",
    lambda day: f"{day:%Y.%m.%d}",
    lambda day: day.isoformat(),
]


def _mess_up(spec: PackageSpec) -> None:
    """Everything submission-package.md says to accept and normalise: header variants, amounts and dates
    typed as text in every usual way, blank rows, a 合计 row in 摘要, notes under the table, attachments
    referenced by bare name or in another case and folder."""
    info = spec.sheets[BASIC_INFO]
    for row in info:
        if isinstance(row[1], date):
            row[1] = _DATE_STYLES[1](row[1])
    audited = _field(spec, "审计确认支出金额（元）")
    audited[0], audited[1] = "审计确认支出金额 (元)", f"{audited[1]:,.2f}"

    rows = spec.sheets[EXPENSES]
    day, amount, summary = _col(rows, "支出日期"), _col(rows, "金额（元）"), _col(rows, "摘要")
    total = rows.pop()
    lines = rows[1:]
    for index, line in enumerate(lines):
        line[day] = _DATE_STYLES[index % len(_DATE_STYLES)](line[day])
        line[amount] = _AMOUNT_STYLES[index % len(_AMOUNT_STYLES)](line[amount])
    blank = [None] * len(rows[0])
    rows[1:] = [row for index, line in enumerate(lines)
                for row in ([line, list(blank)] if index % 5 == 4 else [line])]
    total[0], total[summary], total[amount] = None, TOTAL_LABEL, f"¥{total[amount]:,.2f}"
    rows += [list(blank), total, list(blank),
             ["注：以上支出均已经第三方审计确认，原始凭证留存备查。"], [f"填表人：{_field(spec, '联系人')[1]}"]]
    rows[0] = ["序号", "支出\n日期", "支出科目", "经费来源 ", "金额\n（元）", "收款方", "凭证号", "摘要"]

    activities = spec.sheets[ACTIVITIES]
    region = _col(activities, "行政区划代码")
    for row in activities[1:]:
        row[1], row[2], row[region] = _DATE_STYLES[2](row[1]), _DATE_STYLES[2](row[2]), int(row[region])
    activities[0] = [name.replace("专家人数", "专家\n人数").replace("行政区划代码", "行政区划 代码")
                     for name in activities[0]]

    photos = spec.sheets[PHOTOS]
    name = _col(photos, "文件名")
    for number, row in enumerate(photos[1:], start=1):
        data = spec.files.pop(row[name])
        spec.files[f"现场照片/IMG_{number:04d}.JPG"] = data
        row[name] = f"img_{number:04d}.jpg"
    for field_name in ("工作总结文件", "审计报告文件"):
        path = _field(spec, field_name)[1]
        spec.files[f"附件/{path}"] = spec.files.pop(path)


def _windows_executable() -> bytes:
    # The start of a real Windows program: the MZ header (pointing at 0x80), the DOS stub, and the PE
    # signature of an x86-64 image at 0x80.
    header = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8" + bytes(43) + b"\x80\x00\x00\x00"
    stub = b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21This program cannot be run in DOS mode.\r\r\n$"
    return ((header + stub).ljust(0x80, b"\x00") + b"PE\x00\x00\x64\x86").ljust(512, b"\x00")
