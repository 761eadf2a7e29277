"""Each defect a unit can make ends as the right finding at the sheet, row and column it typed,
and nothing else: one bad cell is one finding. One package per project, one run for them all."""


import io

import pytest

from etl.sample.builder import BASIC_FIELDS, EXPENSE_HEADER, PHOTOS, write_workbook
from tests.conftest import put

AMOUNT, SOURCE, CATEGORY, VOUCHER, DATE = (EXPENSE_HEADER.index(h) for h in ("金额（元）", "经费来源", "支出科目", "凭证号", "支出日期"))


def basic_row(field: str) -> int:
    return BASIC_FIELDS.index(field) + 1


def _defects(clean):
    specs = {}

    def plant(code, change):
        spec = clean(code)
        change(spec)
        specs[code] = spec

    def set_cell(sheet, row, col, value):
        return lambda s: s.sheets[sheet][row - 1].__setitem__(col, value)

    plant("2023-GT-01", set_cell("经费支出", 2, SOURCE, "市级经费"))
    plant("2023-GT-02", set_cell("经费支出", 3, AMOUNT, "一千元"))
    plant("2023-ST-01", set_cell("经费支出", 2, CATEGORY, "设备购置费"))

    def duplicate_voucher(s):
        rows = s.sheets["经费支出"]
        rows[2][VOUCHER] = rows[1][VOUCHER]
    plant("2023-ST-02", duplicate_voucher)

    def drop_voucher_column(s):
        for row in s.sheets["经费支出"]:
            del row[VOUCHER]
    plant("2023-ST-03", drop_voucher_column)
    plant("2023-ST-04", set_cell("经费支出", 4, SOURCE, None))
    plant("2023-SB-01", set_cell("基本信息", basic_row("统一社会信用代码"), 1, "91310000MA1FL0000X"))
    plant("2023-SB-02", set_cell("基本信息", basic_row("依托单位"), 1, "上海某某咨询有限公司"))

    def photos(s):
        rows = s.sheets[PHOTOS]
        rows[1][1] = "照片/不存在.jpg"
        rows[2][4] = None
    plant("2023-SB-03", photos)

    def documents(s):
        s.sheets["基本信息"][basic_row("工作总结文件") - 1][1] = "总结-找不到.pdf"
        audit = s.sheets["基本信息"][basic_row("审计报告文件") - 1][1]
        s.files[audit] = b""
    plant("2023-SB-04", documents)

    def exe_as_photo(s):
        listed = s.sheets[PHOTOS][1][1]
        path = next(p for p in s.files if p.endswith(listed.rsplit("/", 1)[-1]))
        s.files[path] = b"MZ\x90\x00" + bytes(200)
        s.sheets["基本信息"][basic_row("年度") - 1][1] = "今年"  # the 年度 typed is checked as typed
    plant("2023-SB-05", exe_as_photo)

    def region_and_decimals(s):
        s.sheets["服务活动"][1][4] = "999999"
        s.sheets["经费支出"][2][AMOUNT] = "100.123"
        s.sheets["经费支出"][3][DATE] = "2022-12-01"
    plant("2023-SB-06", region_and_decimals)
    return specs


@pytest.fixture(scope="module")
def defect_run(tmp_path_factory, registry):
    from tests.conftest import Run, project_dict
    from etl.cli import main
    from etl.sample.builder import clean_package

    root = tmp_path_factory.mktemp("rules")
    inbox = root / "inbox"
    (inbox / "2023").mkdir(parents=True)
    specs = _defects(lambda code, **kw: clean_package(project_dict(registry, code), 2023, **kw))
    for spec in specs.values():
        put(inbox, spec)
    assert main(["run", "--year", "2023", "--inbox", str(inbox), "--export", str(root / "exports"),
                 "--database-url", f"sqlite:///{root / 'w.db'}"]) == 0
    return Run(root / "exports"), specs


def only(run, code):
    return run.issues[run.issues.project_code == code]


@pytest.mark.parametrize(
    "code, rule_id, sheet, row, column, value",
    [
        ("2023-GT-01", "S005", "经费支出", "2", "经费来源", "市级经费"),
        ("2023-GT-02", "S002", "经费支出", "3", "金额（元）", "一千元"),
        ("2023-ST-01", "S004", "经费支出", "2", "支出科目", "设备购置费"),
        ("2023-ST-04", "S003", "经费支出", "4", "经费来源", ""),
        ("2023-SB-01", "S009", "基本信息", str(basic_row("统一社会信用代码")), "统一社会信用代码", "91310000MA1FL0000X"),
        ("2023-SB-02", "P006", "基本信息", str(basic_row("依托单位")), "依托单位", "上海某某咨询有限公司"),
        ("2023-SB-03", "M003", "影像资料", "2", "文件名", "照片/不存在.jpg"),
        ("2023-SB-03", "M004", "影像资料", "3", "说明", ""),
        ("2023-SB-04", "M001", "基本信息", str(basic_row("工作总结文件")), "工作总结文件", "总结-找不到.pdf"),
        ("2023-SB-05", "S002", "基本信息", str(basic_row("年度")), "年度", "今年"),
        ("2023-SB-06", "S010", "服务活动", "2", "行政区划代码", "999999"),
        ("2023-SB-06", "S006", "经费支出", "3", "金额（元）", "100.123"),
        ("2023-SB-06", "S008", "经费支出", "4", "支出日期", "2022-12-01"),
    ],
)
def test_defect_found_where_the_unit_typed_it(defect_run, code, rule_id, sheet, row, column, value):
    run, _ = defect_run
    hits = only(run, code)
    hit = hits[(hits.rule_id == rule_id) & (hits.sheet == sheet) & (hits.row == row)]
    assert len(hit) == 1, hits[["rule_id", "sheet", "row", "column", "value"]].to_string()
    assert hit.iloc[0].column == column and hit.iloc[0].value == value
    assert hit.iloc[0].message  # Chinese sentence from the catalog


def test_one_bad_cell_is_one_finding(defect_run):
    run, _ = defect_run
    # Unreadable amount: S002 only, not also S006 or a money rule on the same cell.
    gt02 = only(run, "2023-GT-02")
    assert gt02[["rule_id", "row"]].values.tolist() == [["S002", "3"]]
    # A missing column is one S001, not an S003 for each of its rows.
    st03 = only(run, "2023-ST-03")
    assert st03[["rule_id", "column"]].values.tolist() == [["S001", "凭证号"]]


def test_duplicate_voucher_names_both_rows(defect_run):
    run, _ = defect_run
    s007 = only(run, "2023-ST-02")
    assert sorted(s007[s007.rule_id == "S007"].row) == ["2", "3"]
    assert "第 3 行" in s007[s007.row == "2"].iloc[0].message


def test_empty_audit_report_and_exe_photo(defect_run):
    run, specs = defect_run
    sb04 = only(run, "2023-SB-04")
    m002 = sb04[sb04.rule_id == "M002"]
    assert len(m002) == 1 and "空文件" in m002.iloc[0].message
    assert "M005" not in set(sb04.rule_id)  # the empty file is said once, as M002
    sb05 = only(run, "2023-SB-05")
    m005 = sb05[sb05.rule_id == "M005"]
    assert len(m005) == 1 and "可执行程序" in m005.iloc[0].message


def test_status_follows_severity(defect_run):
    run, _ = defect_run
    assert run.status("2023-SB-06") == "rejected"  # S006 is fatal
    assert run.status("2023-GT-01") == "rejected"
    warnings_only = run.projects.set_index("project_code")
    assert set(run.projects.status) == {"rejected"}
    assert int(warnings_only.at["2023-SB-06", "warning_count"]) >= 2  # S008 and S010


def _read(spec) -> dict:
    """The spec's sheets as assets.sheets reads them (no package file, no run)."""
    from assets.sheets import read_sheets

    workbook = io.BytesIO()
    write_workbook(spec.sheets, workbook)
    return read_sheets(workbook.getvalue()).sheets


def test_a_batch_finds_what_each_package_finds_alone(clean, registry):
    """Validation checks many packages in one frame: nothing one package holds (a voucher another
    uses too, a column it lacks) may change another's findings."""
    from assets.validation import PackageSheets, validate_sheets

    codes = ("2023-GT-01", "2023-ST-01", "2023-ST-02")
    shared, repeats, lacks = (clean(code) for code in codes)
    lines = repeats.sheets["经费支出"]
    lines[1][VOUCHER] = shared.sheets["经费支出"][1][VOUCHER]  # in another package: R007's business
    lines[3][VOUCHER] = lines[2][VOUCHER]
    for row in lacks.sheets["经费支出"]:
        del row[VOUCHER]
    lacks.sheets["经费支出"][2][AMOUNT] = "一千元"
    batch = [PackageSheets(i, 2023, registry.project(code), _read(spec))
             for i, (code, spec) in enumerate(zip(codes, (shared, repeats, lacks)), start=1)]

    together, _ = validate_sheets(batch)
    for package in batch:
        alone, _ = validate_sheets([package])
        assert together[package.package_id] == alone[package.package_id]
    assert together[1] == []
    assert [(f.rule_id, f.row) for f in together[2]] == [("S007", 3), ("S007", 4)]
    assert "第 4 行" in together[2][0].message
    assert [(f.rule_id, f.column) for f in together[3]] == [("S001", "凭证号"), ("S002", "金额（元）")]
