"""The sample packages are real files, clean where they claim to be, and defective exactly where
EXPECTED says.

The last part re-reads the whole sample inbox with a small independent checker written from
../shared/spec (not the pipeline's code) and compares what it finds with EXPECTED, so a clean package
that is not clean, or a planted defect that is not there, fails here first.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

import openpyxl
import pytest
from PIL import Image
from python_calamine import CalamineWorkbook

from assets.sheets import EXAMPLE_MARK
from etl.sample import year_sample
from etl.sample.builder import (
    BASIC_FIELDS, EXPENSE_HEADER, EXPERT_PAID_LIMITS, REFUND_TO, SHANGHAI, SHANGHAI_DISTRICTS,
    YUNNAN_PLACES, clean_package, docx_bytes, jpeg_bytes, pdf_bytes, png_bytes,
    uscc_check_char, write_package, write_workbook,
)
from etl.sample.year_sample import DEFAULT_REGISTRY, build_sample_inbox, load_projects, sample_inbox

YEAR = 2023
REGISTRY, PROJECTS = load_projects(DEFAULT_REGISTRY)
BY_CODE = {project["code"]: project for project in PROJECTS}
REQUIRED_SHEETS = ["基本信息", "经费支出", "服务活动", "影像资料"]
ALLOWED_CATEGORIES = {"专家咨询费", "讲课费", "劳务费", "差旅费", "住宿费", "伙食费", "会议费", "培训费",
                      "场地租赁费", "资料印刷费", "宣传费", "交通费", "其他"}
SOURCES = {"national": {"部拨经费", "市级配套"}, "municipal": {"市级经费"}}
VALID_REGIONS = set(SHANGHAI_DISTRICTS) | set(YUNNAN_PLACES)


# --- reading a package back, as a unit's package would be read -----------------------------------------


def members(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {file.relative_to(path).as_posix(): file.read_bytes() for file in path.rglob("*") if file.is_file()}
    with zipfile.ZipFile(path) as archive:
        return {_zip_name(info): archive.read(info) for info in archive.infolist()}


def _zip_name(info: zipfile.ZipInfo) -> str:
    # Without the UTF-8 flag zipfile decodes names as cp437; Chinese Windows wrote them in GBK.
    return info.filename if info.flag_bits & 0x800 else info.filename.encode("cp437").decode("gbk")


def sheets_of(files: dict[str, bytes]) -> dict[str, list[list[object]]]:
    (workbook,) = [name for name in files if name.endswith(".xlsx")]
    book = CalamineWorkbook.from_filelike(io.BytesIO(files[workbook]))
    return {name: book.get_sheet_by_name(name).to_python(skip_empty_area=False) for name in book.sheet_names}


def header(cell: object) -> str:
    return re.sub(r"\s", "", str(cell)).replace("(", "（").replace(")", "）")


def amount(value: object) -> Decimal | None:
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        text = str(value).translate(str.maketrans("０１２３４５６７８９．，", "0123456789.,"))
        return Decimal(text.replace("¥", "").replace(",", "").strip())
    except InvalidOperation:
        return None


def day(value: object) -> date | None:
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    match = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", str(value).strip())
    try:
        return date(*map(int, match.groups())) if match else None
    except ValueError:
        return None


def blank(value: object) -> bool:
    return value is None or str(value).strip() == ""


def table(rows: list[list[object]]) -> tuple[dict[str, int], list[tuple[int, list[object]]], list[object] | None]:
    """Columns by normalised header, the data rows with their Excel row number, and the 合计 row."""
    columns = {header(name): index for index, name in enumerate(rows[0]) if not blank(name)}
    data, total = [], None
    for number, row in enumerate(rows[1:], start=2):
        if total is not None:
            break  # notes typed below the table
        if all(blank(value) for value in row) or row[0] == EXAMPLE_MARK:  # the template's example row
            continue
        if any(str(row[columns[name]]).strip() == "合计" for name in ("序号", "摘要") if name in columns):
            total = row
        else:
            data.append((number, row))
    return columns, data, total


def expense_rows(files: dict[str, bytes], sheets: dict[str, list[list[object]]]) -> list[list[object]]:
    csv_name = next((name for name in files if PurePosixPath(name).name == "经费支出.csv"), None)
    if csv_name is None:
        return sheets["经费支出"]
    raw = files[csv_name]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    return list(csv.reader(io.StringIO(text)))


def spent_by_source(rows: list[list[object]]) -> tuple[dict[str, Decimal], Decimal]:
    columns, data, total = table(rows)
    spent: dict[str, Decimal] = Counter()
    for _, row in data:
        spent[row[columns["经费来源"]]] += amount(row[columns["金额（元）"]])
    return dict(spent), amount(total[columns["金额（元）"]])


def basic_info(sheets: dict[str, list[list[object]]]) -> dict[str, tuple[int, object]]:
    return {header(row[0]): (number, row[1]) for number, row in enumerate(sheets["基本信息"], start=1)}


# --- builder ---------------------------------------------------------------------------------------


def test_uscc_check_char_of_a_known_valid_code():
    assert uscc_check_char("91350100M000100Y4") == "3"


@pytest.mark.parametrize("project", PROJECTS, ids=lambda project: project["code"])
def test_clean_package_is_complete_and_adds_up(tmp_path, project):
    spec = clean_package(project, YEAR, seed=3)
    path = write_package(spec, tmp_path)
    assert path.name == spec.name and zipfile.is_zipfile(path)
    files = members(path)
    sheets = sheets_of(files)
    assert set(REQUIRED_SHEETS) <= set(sheets)
    assert [row[0] for row in sheets["基本信息"]][:len(BASIC_FIELDS)] == BASIC_FIELDS
    assert sheets["经费支出"][0] == EXPENSE_HEADER
    info = {name: value for name, (_, value) in basic_info(sheets).items()}
    assert info["项目编号"] == project["code"] and info["依托单位"] == project["host_unit"]
    uscc = info["统一社会信用代码"]
    assert len(uscc) == 18 and uscc_check_char(uscc[:17]) == uscc[17]

    columns, lines, _ = table(sheets["经费支出"])
    assert 10 <= len(lines) <= 30
    spent, declared_total = spent_by_source(sheets["经费支出"])
    assert spent == project["grants"]  # exactly, to the fen
    assert declared_total == amount(info["审计确认支出金额（元）"]) == sum(project["grants"].values())
    vouchers = [row[columns["凭证号"]] for _, row in lines]
    assert len(set(vouchers)) == len(vouchers)
    completion = REGISTRY.team_completion_date
    for _, row in lines:
        assert row[columns["支出科目"]] in ALLOWED_CATEGORIES
        assert row[columns["经费来源"]] in SOURCES[project["level"]]
        value = amount(row[columns["金额（元）"]])
        assert value > 0 and value == value.quantize(Decimal("0.01"))
        assert date(YEAR, 1, 1) <= day(row[columns["支出日期"]]) <= completion
    for row in sheets["服务活动"][1:]:
        assert row[4] in VALID_REGIONS and day(row[2]) <= completion
    for row in sheets["影像资料"][1:]:
        assert Image.open(io.BytesIO(files[row[1]])).format == "JPEG" and row[4]
    for name in ("工作总结文件", "审计报告文件"):
        assert files[info[name]].startswith(b"%PDF-")


def test_clean_package_pays_no_expert_above_the_limits():
    for project in PROJECTS:
        sheets = clean_package(project, YEAR, seed=1).sheets
        days = {row[1]: row[5] for row in sheets["专家名单"][1:]}
        paid: Counter[tuple[str, str]] = Counter()
        for row in sheets["经费支出"][1:-1]:
            if row[2] in EXPERT_PAID_LIMITS:
                paid[row[2], row[5]] += row[4]
        assert all(total <= EXPERT_PAID_LIMITS[category] * days[name] for (category, name), total in paid.items())


def test_leftover_is_left_and_explained(tmp_path):
    project = BY_CODE["2023-GT-01"]
    leftover = {"部拨经费": Decimal("1000.01"), "市级配套": Decimal("99999.99")}
    files = members(write_package(clean_package(project, YEAR, leftover=leftover), tmp_path))
    sheets = sheets_of(files)
    spent, total = spent_by_source(sheets["经费支出"])
    assert spent == {source: project["grants"][source] - leftover[source] for source in leftover}
    assert total == sum(spent.values()) == amount(basic_info(sheets)["审计确认支出金额（元）"][1])
    explained = {row[0]: (amount(row[1]), row[3]) for row in sheets["结余说明"][1:]}
    assert explained == {source: (leftover[source], REFUND_TO[source]) for source in leftover}


def test_gbk_names_have_no_utf8_flag_and_decode_as_gbk(tmp_path):
    spec = clean_package(BY_CODE["2023-ST-02"], YEAR)
    spec.gbk_names = True
    with zipfile.ZipFile(write_package(spec, tmp_path)) as archive:
        infos = archive.infolist()
    chinese = [info for info in infos if not info.filename.isascii()]
    assert chinese and all(not info.flag_bits & 0x800 for info in infos)
    names = {info.filename.encode("cp437").decode("gbk") for info in chinese}
    assert {spec.workbook_name, "照片/现场照片01.jpg"} <= names
    assert sheets_of(members(tmp_path / spec.name))["基本信息"][1][1] == "2023-ST-02"


def test_utf8_names_are_flagged_by_default(tmp_path):
    spec = clean_package(BY_CODE["2023-ST-02"], YEAR)
    with zipfile.ZipFile(write_package(spec, tmp_path)) as archive:
        assert all(info.flag_bits & 0x800 for info in archive.infolist() if not info.filename.isascii())
        assert spec.workbook_name in archive.namelist()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_expenses_csv_replaces_the_sheet(tmp_path, encoding):
    spec = clean_package(BY_CODE["2023-SB-06"], YEAR)
    spec.expenses_csv = encoding
    files = members(write_package(spec, tmp_path))
    raw = files["经费支出.csv"]
    assert "经费支出" not in sheets_of(files)
    text = raw.decode(encoding)
    assert text.splitlines()[0].lstrip("\ufeff") == ",".join(EXPENSE_HEADER)
    assert raw.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    if encoding == "gbk":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    spent, total = spent_by_source(expense_rows(files, sheets_of(files)))
    assert spent == {"市级经费": Decimal("200000.00")} and total == Decimal("200000.00")


def test_folder_package_and_mtime(tmp_path):
    spec = clean_package(BY_CODE["2023-GT-02"], YEAR)
    spec.as_zip, spec.name = False, "敬业中学材料"
    spec.modified_at = datetime(2023, 11, 9, 23, 59)  # naive: Asia/Shanghai
    path = write_package(spec, tmp_path)
    expected = datetime(2023, 11, 9, 23, 59, tzinfo=SHANGHAI).timestamp()
    assert path.is_dir() and path.stat().st_mtime == expected
    assert all(file.stat().st_mtime == expected for file in path.rglob("*"))
    assert set(members(path)) == {spec.workbook_name, *spec.files}


def test_several_workbooks_or_none(tmp_path):
    spec = clean_package(BY_CODE["2023-SB-01"], YEAR)
    spec.extra_workbooks = 2
    names = set(members(write_package(spec, tmp_path)))
    assert {"专家服务基层材料.xlsx", "专家服务基层材料 - 副本.xlsx", "专家服务基层材料 - 副本 (2).xlsx"} <= names
    spec.extra_workbooks, spec.no_workbook = 0, True
    assert not [name for name in members(write_package(spec, tmp_path)) if name.endswith((".xlsx", ".csv"))]


def test_workbook_cells_keep_their_types(tmp_path):
    path = tmp_path / "book.xlsx"
    write_workbook({"经费支出": [["金额（元）", "支出日期"], [Decimal("1234.50"), date(2023, 6, 1)],
                                 ["１２３４．５０", "2023年6月1日"], [None, 7]]}, path)
    sheet = openpyxl.load_workbook(path)["经费支出"]
    assert sheet["A2"].value == 1234.5 and sheet["A2"].number_format == "#,##0.00"
    assert sheet["B2"].is_date and sheet["B2"].value == datetime(2023, 6, 1)
    assert sheet["A3"].value == "１２３４．５０" and sheet["B3"].value == "2023年6月1日"
    assert sheet["A4"].value is None and sheet["B4"].value == 7


def test_attachments_are_real_files():
    pdf = pdf_bytes("Audit report (2023)", ("line \\ one",))
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF") and pdf[startxref:].startswith(b"xref")
    entries = pdf[startxref:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        assert pdf[int(entry[:10]):].startswith(b"%d 0 obj" % number)
    assert Image.open(io.BytesIO(jpeg_bytes("photo", 1))).format == "JPEG"
    assert Image.open(io.BytesIO(png_bytes("photo", 1))).size == (320, 240)
    assert 1000 < len(jpeg_bytes("photo", 1)) < 20000 and jpeg_bytes("photo", 1) != jpeg_bytes("photo", 2)
    with zipfile.ZipFile(io.BytesIO(docx_bytes("工作总结\n第二段"))) as docx:
        assert {"[Content_Types].xml", "_rels/.rels", "word/document.xml"} == set(docx.namelist())
        assert "第二段" in docx.read("word/document.xml").decode()


# --- the sample inbox ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inbox")
    build_sample_inbox(YEAR, out, DEFAULT_REGISTRY)
    return out / str(YEAR)


def test_build_is_deterministic(inbox, tmp_path):
    build_sample_inbox(YEAR, tmp_path, DEFAULT_REGISTRY)
    again = tmp_path / str(YEAR)
    assert sorted(path.name for path in again.iterdir()) == sorted(path.name for path in inbox.iterdir())
    for path in inbox.iterdir():
        if path.is_file():
            assert path.read_bytes() == (again / path.name).read_bytes(), path.name
        else:
            assert members(path) == members(again / path.name), path.name


def test_packages_carry_their_arrival_time(inbox):
    deadline_end = datetime.combine(REGISTRY.deadline, datetime.max.time(), SHANGHAI).timestamp()
    for spec in sample_inbox(YEAR, DEFAULT_REGISTRY).packages:
        mtime = (inbox / spec.name).stat().st_mtime
        assert mtime == spec.modified_at.timestamp() <= deadline_end, spec.name
    times = [path.stat().st_mtime for path in inbox.iterdir()]
    assert len(set(times)) == len(times)


def test_sample_has_every_kind_of_package(inbox):
    kinds = {path.name: path for path in inbox.iterdir()}
    assert sum(path.is_dir() for path in kinds.values()) == 1
    gbk, csv_encodings = 0, []
    for path in kinds.values():
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                gbk += any(not info.flag_bits & 0x800 and not info.filename.isascii() for info in archive.infolist())
        files = members(path) if path.is_dir() or zipfile.is_zipfile(path) else {}
        if "经费支出.csv" in files:
            with pytest.raises(UnicodeDecodeError):
                files["经费支出.csv"].decode("utf-8")
            csv_encodings.append(files["经费支出.csv"].decode("gbk").split(",", 1)[0])
    assert gbk == 1 and csv_encodings == ["序号"]


def test_expected_covers_every_rule():
    required = {"P001", "P002", "P003", "P004", "P005", "P006", "P007", "M001", "M002", "M003", "M004", "M005",
                "S001", "S002", "S003", "S004", "S005", "S006", "S007", "S008", "S009", "S010"}
    assert required <= {rule_id for _, rule_id, _, _ in year_sample.EXPECTED}
    assert ("", "T003", "", None) in year_sample.EXPECTED


def test_accepted_packages_add_up(inbox):
    """Packages with only warnings planted: every source adds up to its grant minus its leftover, and
    the 合计 row and the audited total agree with the lines, however the amounts were typed."""
    warnings = {"P007", "M004", "S008", "S010", "R006", "T003"}
    rejected = {package for package, rule_id, _, _ in year_sample.EXPECTED if rule_id not in warnings}
    accepted = [path for path in inbox.iterdir() if path.name not in rejected]
    assert len(accepted) == 7
    for path in accepted:
        files = members(path)
        sheets = sheets_of(files)
        info = basic_info(sheets)
        project = BY_CODE[info["项目编号"][1]]
        leftover = {row[0]: amount(row[1]) for _, row in table(sheets.get("结余说明", [["经费来源"]]))[1]}
        spent, total = spent_by_source(expense_rows(files, sheets))
        assert spent == {source: granted - leftover.get(source, 0) for source, granted in project["grants"].items()}
        assert total == sum(spent.values()) == amount(info["审计确认支出金额（元）"][1]), path.name


def test_no_voucher_is_shared_between_projects(inbox):
    owners: dict[str, set[str]] = {}
    for path in inbox.iterdir():
        files = members(path) if path.is_dir() or zipfile.is_zipfile(path) else {}
        if len([name for name in files if name.endswith(".xlsx")]) != 1:
            continue
        sheets = sheets_of(files)
        rows = expense_rows(files, sheets)
        columns, data, _ = table(rows)
        for _, row in data:
            owners.setdefault(row[columns["凭证号"]], set()).add(basic_info(sheets)["项目编号"][1])
    assert owners and all(len(codes) == 1 for codes in owners.values())


def test_sample_findings_are_exactly_expected(inbox):
    assert Counter(check_inbox(inbox)) == Counter(year_sample.EXPECTED)


# --- an independent checker of the rules the sample plants ------------------------------------------


def check_inbox(inbox: Path) -> list[tuple[str, str, str, int | None]]:
    found: list[tuple[str, str, str, int | None]] = []
    versions: dict[str, list[tuple[float, str]]] = {}
    for path in sorted(inbox.iterdir()):
        code = check_package(path, found)
        if code in BY_CODE:
            versions.setdefault(code, []).append((path.stat().st_mtime, path.name))
    for code, packages in versions.items():
        found += [(name, "P007", "", None) for _, name in sorted(packages)[:-1]]
    found += [("", "T003", "", None) for code in BY_CODE if code not in versions]
    return found


def check_package(path: Path, found: list) -> str | None:
    """Append the package's findings; return the project code it names."""
    def finding(rule_id: str, sheet: str = "", row: int | None = None) -> None:
        found.append((path.name, rule_id, sheet, row))

    if path.is_file() and not zipfile.is_zipfile(path):
        return finding("P001")
    files = members(path)
    if any(name.startswith("/") or ".." in PurePosixPath(name).parts for name in files):
        finding("P004")
    for name, data in files.items():
        magic = {".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".pdf": b"%PDF-", ".xlsx": b"PK", ".docx": b"PK"}
        expected = magic.get(PurePosixPath(name).suffix.lower())
        if expected and not data.startswith(expected):
            finding("M005")
    if len([name for name in files if name.endswith(".xlsx")]) != 1:
        return finding("P002")
    sheets = sheets_of(files)
    present = {PurePosixPath(name).name.lower() for name in files}
    for sheet in REQUIRED_SHEETS:
        if sheet not in sheets and not (sheet == "经费支出" and "经费支出.csv" in present):
            finding("P003", sheet)

    info = basic_info(sheets)
    code = info["项目编号"][1]
    project = BY_CODE.get(code)
    if project is None:
        finding("P005", "基本信息", info["项目编号"][0])
    elif info["依托单位"][1] not in [project["host_unit"], *project.get("aliases", [])]:
        finding("P006", "基本信息", info["依托单位"][0])
    row, uscc = info["统一社会信用代码"]
    if uscc_check_char(uscc[:17]) != uscc[17]:
        finding("S009", "基本信息", row)
    for rule_id, name in (("M001", "工作总结文件"), ("M002", "审计报告文件")):
        row, reference = info[name]
        if PurePosixPath(reference).name.lower() not in present:
            finding(rule_id, "基本信息", row)

    columns, lines, _ = table(expense_rows(files, sheets))
    if not set(EXPENSE_HEADER) <= set(columns):
        finding("S001", "经费支出")
    else:
        vouchers = Counter(row[columns["凭证号"]] for _, row in lines)
        for number, row in lines:
            spent_on = row[columns["支出日期"]]
            if blank(spent_on):
                finding("S003", "经费支出", number)
            elif day(spent_on) is None:
                finding("S002", "经费支出", number)
            elif day(spent_on).year != YEAR:
                finding("S008", "经费支出", number)
            if row[columns["支出科目"]] not in ALLOWED_CATEGORIES:
                finding("S004", "经费支出", number)
            if project and row[columns["经费来源"]] not in SOURCES[project["level"]]:
                finding("S005", "经费支出", number)
            value = amount(row[columns["金额（元）"]])
            if value <= 0 or value != value.quantize(Decimal("0.01")):
                finding("S006", "经费支出", number)
            if vouchers[row[columns["凭证号"]]] > 1:
                finding("S007", "经费支出", number)

    # Money is reconciled whenever every line's amount and source reads, whatever else is wrong (R001).
    if project and {"经费来源", "金额（元）"} <= set(columns):
        money = [(row[columns["经费来源"]], amount(row[columns["金额（元）"]])) for _, row in lines]
        if all(value is not None and value == value.quantize(Decimal("0.01")) and source in SOURCES[project["level"]]
               for source, value in money):
            spent: dict[str, Decimal] = Counter()
            for source, value in money:
                spent[source] += value
            found.extend((path.name, "R001", "", None) for source, granted in project["grants"].items()
                         if spent[source] > granted)

    if "服务活动" in sheets:
        columns, activities, _ = table(sheets["服务活动"])
        for number, row in activities:
            counts = [row[columns[name]] for name in ("参与专家人数", "服务人次", "培训人次", "解决问题数")]
            if not all(amount(count) is not None for count in counts) or day(row[columns["开始日期"]]) is None:
                finding("S002", "服务活动", number)
            if str(row[columns["行政区划代码"]]).removesuffix(".0") not in VALID_REGIONS:
                finding("S010", "服务活动", number)
    columns, photos, _ = table(sheets["影像资料"])
    for number, row in photos:
        if PurePosixPath(str(row[columns["文件名"]])).name.lower() not in present:
            finding("M003", "影像资料", number)
        if blank(row[columns["说明"]]):
            finding("M004", "影像资料", number)
    found.extend((path.name, "R006", "", None) for _ in table(sheets.get("结余说明", [["经费来源"]]))[1])
    return code
