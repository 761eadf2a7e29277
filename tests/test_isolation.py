"""No unit's file can stop the year: hostile and odd workbooks get findings (or are read as meant), the
worker pool turns a dead, out-of-memory or out-of-time worker into that package's P008, and the run goes on."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import zipfile
from pathlib import Path

import pytest

from adapters.workers import WorkerFailure, WorkerSettings, in_background, map_isolated
from adapters.xlsx_census import sheet_members
from tests.conftest import put, tree_digest

POOL = WorkerSettings(workers=2, memory_mib=256, timeout_s=5)


# --- the pool ---------------------------------------------------------------------------------

def _square(n: int) -> int:
    return n * n


def _misbehave(kind: str) -> str:
    if kind == "memory":
        hoard = bytearray(1 << 30)  # 1 GiB: past the 256 MiB the test pool allows
        return str(len(hoard))
    if kind == "rust-abort":
        from python_calamine import CalamineWorkbook  # the stray-cell abort, without our census in front

        CalamineWorkbook.from_filelike(io.BytesIO(_stray_cell_xlsx())).get_sheet_by_name("经费支出")
    if kind == "time":
        time.sleep(60)
    if kind == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "raise":
        raise RuntimeError("a reader's own error")
    return kind


def test_pool_keeps_order_and_results():
    assert [r for _, r in map_isolated(_square, range(20), POOL)] == [n * n for n in range(20)]


def test_each_failure_costs_only_its_item():
    kinds = ["ok-1", "memory", "ok-2", "rust-abort", "time", "segfault", "raise", "ok-3"]
    started = time.monotonic()
    results = dict(map_isolated(_misbehave, kinds, POOL))
    assert time.monotonic() - started < 30
    assert [results[k] for k in ("ok-1", "ok-2", "ok-3")] == ["ok-1", "ok-2", "ok-3"]
    assert {k: results[k].limit for k in kinds if isinstance(results[k], WorkerFailure)} == {
        "memory": "memory", "rust-abort": "memory", "time": "time", "segfault": "crash", "raise": "crash"}
    assert results["memory"].bound == 256 and results["time"].bound == 5


def test_in_process_mode_runs_in_this_process():
    settings = WorkerSettings(workers=1, memory_mib=256, timeout_s=5)
    assert dict(map_isolated(_pid, [0], settings))[0] == os.getpid()
    assert isinstance(dict(map_isolated(_misbehave, ["raise"], settings))["raise"], WorkerFailure)


def _pid(_: int) -> int:
    return os.getpid()


def _note_pid(path: Path, fail: bool = False) -> None:
    if fail:
        raise ValueError("the background work's own error")
    path.write_text(str(os.getpid()))


def test_background_work_runs_in_another_process_beside_the_block(tmp_path, monkeypatch):
    monkeypatch.setenv("ETL_WORKERS", "2")
    with in_background(_note_pid, tmp_path / "pid"):
        inside = os.getpid()
    assert int((tmp_path / "pid").read_text()) != inside  # done by the time the block is left
    with pytest.raises(RuntimeError, match="the background work's own error"):
        with in_background(_note_pid, tmp_path / "never", fail=True):
            pass
    monkeypatch.setenv("ETL_WORKERS", "1")  # debugging: in this process
    with in_background(_note_pid, tmp_path / "pid"):
        pass
    assert int((tmp_path / "pid").read_text()) == os.getpid()


# --- hostile and odd workbooks, through the whole run -----------------------------------------

def _stray_cell_xlsx() -> bytes:
    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("经费支出")
    sheet.write_row(0, 0, ["序号", "金额（元）"])
    sheet.write(1048575, 16383, "stray")
    book.close()
    return buffer.getvalue()


def _edit_sheet(workbook: Path, sheet: str, edit) -> None:
    """Rewrite one sheet's XML of a workbook on disk (the test's own file, as the unit hands it in: its
    time stays the package's, so the package is not late)."""
    with zipfile.ZipFile(workbook) as archive:
        member = sheet_members(archive)[sheet]
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    contents[member] = edit(contents[member].decode("utf-8")).encode("utf-8")
    _rewrite(workbook, contents)


def _rewrite(workbook: Path, contents: dict[str, bytes]) -> None:
    times = [(p, p.stat()) for p in (workbook, workbook.parent)]
    with zipfile.ZipFile(workbook, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    for path, st in times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _folder_package(inbox: Path, spec) -> Path:
    spec.as_zip = False
    spec.name = spec.name.removesuffix(".zip")
    return put(inbox, spec) / spec.workbook_name


def test_stray_cell_at_xfd1048576_is_read_as_meant(clean, inbox, database_url, run_etl):
    spec = clean("2023-ST-01")
    lines = len(spec.sheets["经费支出"]) - 2  # header and 合计
    workbook = _folder_package(inbox, spec)
    _edit_sheet(workbook, "经费支出", lambda xml: xml.replace(
        "</sheetData>", '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'))
    put(inbox, clean("2023-ST-02"))
    before = tree_digest(inbox)
    run = run_etl(inbox, database_url)
    assert run.findings(package=spec.name).empty, run.findings(package=spec.name).to_string()
    assert run.status("2023-ST-01") == "accepted" and run.status("2023-ST-02") == "accepted"
    money = run.dir / "reconciliation.csv"
    assert "2023-ST-01" in money.read_text(encoding="utf-8-sig")
    assert lines > 0 and tree_digest(inbox) == before


def test_damaged_sheet_is_p001_naming_it_and_others_go_on(clean, inbox, database_url, run_etl):
    spec = clean("2023-ST-01")
    workbook = _folder_package(inbox, spec)
    # A cell pointing past the shared-strings table: calamine's "Cell string index not found".
    _edit_sheet(workbook, "经费支出",
                lambda xml: re.sub(r'<c r="C2"[^>]*>.*?</c>', '<c r="C2" t="s"><v>999999</v></c>', xml, count=1))
    put(inbox, clean("2023-ST-02"))
    run = run_etl(inbox, database_url)
    found = run.findings(package=spec.name)
    assert list(found.rule_id) == ["P001"] and "经费支出" in found.message.iloc[0]
    assert run.status("2023-ST-01") == "rejected" and run.status("2023-ST-02") == "accepted"


def test_formula_without_value_is_s011_not_empty(clean, inbox, sqlite_url, run_etl):
    spec = clean("2023-ST-01")
    workbook = _folder_package(inbox, spec)
    # What a tool (not Excel/WPS) writes: the formula, no cached <v>.
    _edit_sheet(workbook, "经费支出",
                lambda xml: re.sub(r'<c r="E3"([^>]*?)(?: t="\w+")?>.*?</c>', r'<c r="E3"\1><f>100+20</f></c>', xml, count=1))
    run = run_etl(inbox, sqlite_url)
    found = run.findings(package=spec.name)
    assert list(zip(found.rule_id, found.sheet, found.row, found.column)) == [("S011", "经费支出", "3", "金额（元）")]
    assert run.status("2023-ST-01") == "rejected"


def test_a_workbook_too_big_for_the_memory_limit_is_p008(clean, inbox, sqlite_url, run_etl, monkeypatch):
    spec = clean("2023-ST-01")
    workbook = _folder_package(inbox, spec)
    # 300 MB of blank XML (a huge empty area), which deflates to a few hundred KB.
    _edit_sheet(workbook, "服务活动", lambda xml: xml.replace("<sheetData>", "<sheetData>" + " " * (300 << 20)))
    put(inbox, clean("2023-ST-02"))
    monkeypatch.setenv("ETL_WORKER_MEMORY_MIB", "128")
    run = run_etl(inbox, sqlite_url)
    found = run.findings(package=spec.name)
    assert set(found.rule_id) == {"P008"} and "内存" in found.message.iloc[0] and "128" in found.message.iloc[0]
    assert run.status("2023-ST-01") == "rejected" and run.status("2023-ST-02") == "accepted"


def test_xls_xlsm_hidden_sheet_and_merged_title_are_read_as_meant(clean, inbox, sqlite_url, run_etl):
    import xlwt

    xls = clean("2023-ST-01")
    book = xlwt.Workbook(encoding="utf-8")
    for name, rows in xls.sheets.items():
        sheet = book.add_sheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(r, c, value if isinstance(value, (str, int)) else str(value))
    buffer = io.BytesIO()
    book.save(buffer)
    xls.workbook_name = "材料.xls"
    workbook = _folder_package(inbox, xls)
    times = [(p, p.stat()) for p in (workbook, workbook.parent)]
    workbook.unlink()
    (workbook.parent / "材料.xls").write_bytes(buffer.getvalue())
    os.utime(workbook.parent / "材料.xls", ns=(times[0][1].st_atime_ns, times[0][1].st_mtime_ns))
    os.utime(workbook.parent, ns=(times[1][1].st_atime_ns, times[1][1].st_mtime_ns))

    xlsm = clean("2023-ST-02")
    xlsm.workbook_name = "材料.xlsm"
    titled = xlsm.sheets["经费支出"]
    titled.insert(0, ["2023年度经费支出明细表"] + [None] * (len(titled[0]) - 1))
    workbook = _folder_package(inbox, xlsm)
    _edit_sheet(workbook, "经费支出", lambda xml: xml.replace("</sheetData>", '</sheetData><mergeCells count="1">'
                                                         '<mergeCell ref="A1:H1"/></mergeCells>'))
    with zipfile.ZipFile(workbook) as archive:
        contents = {i.filename: archive.read(i) for i in archive.infolist()}
    book_xml = contents["xl/workbook.xml"].decode("utf-8")
    contents["xl/workbook.xml"] = re.sub(r'(<sheet name="服务活动")', r'\1 state="hidden"', book_xml).encode("utf-8")
    _rewrite(workbook, contents)

    run = run_etl(inbox, sqlite_url)
    for spec in (xls, xlsm):
        assert run.findings(package=spec.name).empty, run.findings(package=spec.name).to_string()
    assert run.status("2023-ST-01") == "accepted" and run.status("2023-ST-02") == "accepted"


def test_results_do_not_depend_on_the_pool(clean, inbox, run_etl, monkeypatch, tmp_path):
    put(inbox, clean("2023-ST-01"))
    bad = clean("2023-ST-02")
    bad.sheets["经费支出"][2][4] = "十元"
    put(inbox, bad)
    exports = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("ETL_WORKERS", workers)
        run = run_etl(inbox, f"sqlite:///{tmp_path / workers}.db", tmp_path / f"exports-{workers}")
        exports[workers] = [(run.dir / name).read_bytes() for name in ("issues.csv", "reconciliation.csv")]
    assert list(run.findings(package=bad.name).rule_id) == ["S002"]
    assert exports["1"] == exports["2"]


# --- the census: which cells a reader is spared ------------------------------------------------

def _sheet_xml(rows: list[tuple[int, int]], prefix: str = "") -> bytes:
    """A sheet of the given (row, number of cells from column A) rows, in the namespace prefix given."""
    body = "".join(f'<{prefix}row r="{r}">' + "".join(f'<{prefix}c r="{chr(65 + j)}{r}"><{prefix}v>{j}</{prefix}v></{prefix}c>'
                                                     for j in range(width)) + f"</{prefix}row>" for r, width in rows)
    return f'<{prefix}worksheet><{prefix}dimension ref="A1:H{rows[-1][0]}"/><{prefix}sheetData>{body}</{prefix}sheetData></{prefix}worksheet>'.encode()


class _NoCellScan:
    """Stands in for a cell pattern the census must not use on the sheet at hand: any use fails the test."""

    def __getattr__(self, method: str):
        raise AssertionError(f"the census ran a cell pattern's {method} over a sheet that needed none")


def test_long_narrow_sheet_is_kept_whole_from_its_rows_alone(monkeypatch):
    from adapters import xlsx_census

    # The cheap verdict stops at 26 columns × 100 rows here (a million lines of a real sheet).
    monkeypatch.setattr(xlsx_census, "_SCAN_FROM_CELLS", 26 * 100)
    long_sheet = _sheet_xml([(r, 8) for r in range(1, 2001)])
    monkeypatch.setattr(xlsx_census, "_CELL_REF", _NoCellScan())
    assert xlsx_census._trim(long_sheet) == (long_sheet, 0)


def test_a_wide_sheet_with_nothing_outside_its_region_is_not_rewritten(monkeypatch):
    from adapters import xlsx_census

    # A column AB named in the header row (a unit's own 备注 column) makes the sheet wide: its cells are
    # looked at, and since all of them lie within the header's columns, none is substituted away.
    monkeypatch.setattr(xlsx_census, "_TRIM_FROM_CELLS", 26 * 100)
    sheet = _sheet_xml([(r, 8) for r in range(1, 201)]).replace(b'</v></c></row>', b'</v></c><c r="AB1"><v>9</v></c></row>', 1)
    monkeypatch.setattr(xlsx_census, "_CELL", _NoCellScan())
    assert xlsx_census._trim(sheet) == (sheet, 0)


def test_cell_references_are_read_into_columns_and_rows():
    from adapters import xlsx_census

    xml = b'<row r="1"><c r="A1"/><c r="AB1" t="s"><v>0</v></c></row><x:row r="9"><x:c r="XFD9"/></x:row>' \
          b'<row r="99999999999999999999"><c r="B99999999999999999999"/></row>'
    cols, rows = xlsx_census._cell_refs(xml)
    assert cols.tolist() == [1, 28, 16384, 2]
    assert rows.tolist() == [1, 1, 9, xlsx_census._ROW_CEILING]


def test_a_stray_cell_far_down_column_a_is_dropped():
    from adapters import xlsx_census

    # Ctrl+↓ and typing: the span is 8 columns × 1,048,576 rows, which a reader would build cell by cell.
    table = [(r, 8) for r in range(1, 201)]
    sheet = _sheet_xml(table + [(1_048_576, 1)])
    trimmed, dropped = xlsx_census._trim(sheet)
    assert dropped == 1 and b"A1048576" not in trimmed and b'r="A200"' in trimmed


def test_stray_cells_below_a_long_gap_are_dropped_in_narrow_sheets_too(monkeypatch):
    from adapters import xlsx_census

    monkeypatch.setattr(xlsx_census, "_SCAN_FROM_CELLS", 26 * 100)
    monkeypatch.setattr(xlsx_census, "_TRIM_FROM_CELLS", 26 * 100)
    for prefix in ("", "x:"):
        table = [(r, 8) for r in range(1, 201)]
        sheet = _sheet_xml(table + [(30_000, 1)], prefix)
        stray = f'<{prefix}c r="A30000"><{prefix}v>0</{prefix}v></{prefix}c>'.encode()
        dimension = f'<{prefix}dimension ref="A1:H30000"/>'.encode()
        assert xlsx_census._trim(sheet) == (sheet.replace(stray, b"").replace(dimension, b""), 1)
        # Rows out of order (a tool's) still show their gap, and so does a row number past Excel's last.
        assert xlsx_census._trim(_sheet_xml([(30_000, 1)] + table, prefix))[1] == 1
        assert xlsx_census._trim(_sheet_xml(table + [(10**20, 1)], prefix))[1] == 1


# --- damaged workbooks, sheet by sheet --------------------------------------------------------

def _mutations() -> dict[str, callable]:
    """Ways a tool or a disk damages a workbook's 经费支出 sheet (or the parts it points into)."""
    def sheet(edit):
        return ("sheet", edit)

    return {
        "truncated sheet xml": sheet(lambda xml: xml[: len(xml) // 2]),
        "not xml at all": sheet(lambda xml: "\x00\xff garbage"),
        "negative row": sheet(lambda xml: xml.replace('r="2"', 'r="-2"', 1)),
        "error cell": sheet(lambda xml: re.sub(r'<c r="E2"[^>]*>.*?</c>', '<c r="E2" t="e"><v>#DIV/0!</v></c>', xml, count=1)),
        "bad iso date cell": sheet(lambda xml: re.sub(r'<c r="B2"[^>]*>.*?</c>', '<c r="B2" t="d"><v>2023-13-45</v></c>', xml, count=1)),
        "huge merge": sheet(lambda xml: xml.replace("</sheetData>", '</sheetData><mergeCells count="1"><mergeCell ref="A1:XFD1048576"/></mergeCells>')),
        "bad shared string index": sheet(lambda xml: re.sub(r'(t="s"[^>]*><v>)\d+', r"\g<1>4294967295", xml, count=1)),
        "no shared strings part": ("drop", "xl/sharedStrings.xml"),
        "no styles part": ("drop", "xl/styles.xml"),
        "broken styles": ("replace", "xl/styles.xml"),
    }


def _damaged(workbook: bytes, how) -> bytes:
    kind, what = how
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
        member = sheet_members(archive)["经费支出"]
    if kind == "sheet":
        contents[member] = what(contents[member].decode("utf-8")).encode("utf-8", "surrogateescape")
    elif kind == "drop":
        contents.pop(what)
    else:
        contents[what] = b"<styleSheet><cellXfs count='9'><xf numFmtId='oops'/></cellXfs>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_damaged_workbooks_end_as_findings_never_as_errors(clean, registry):
    from assets.validation import _Batch, _Outcome, _Version, validate_batch
    from etl.sample.builder import write_workbook

    spec = clean("2023-ST-01")
    buffer = io.BytesIO()
    write_workbook(spec.sheets, buffer)
    project = registry.project("2023-ST-01")
    listing = [dict(path=path, size=len(data)) for path, data in spec.files.items()]
    versions = [_Version(i, project.code, True, project, "", "key", workbook=_damaged(buffer.getvalue(), how),
                         files=listing)
                for i, how in enumerate(_mutations().values())]
    names = list(_mutations())
    # Each alone (as the pool retries a failed batch), then all in one batch.
    for version, (_, outcome) in zip(versions, map_isolated(validate_batch, [_Batch(2023, [v]) for v in versions], POOL)):
        assert isinstance(outcome, _Outcome), (names[version.package_id], outcome)
    [(_, together)] = map_isolated(validate_batch, [_Batch(2023, versions)], POOL)
    assert isinstance(together, _Outcome)
    rules = {names[pid]: {f["rule_id"] for f in together.findings if f["package_id"] == pid} for pid in range(len(names))}
    # Damage a reader cannot get past is P001 naming the sheet; what it reads past is judged as read
    # (an error cell is blank, dates without their styles are serial numbers); a merge over the whole
    # sheet changes nothing and builds no grid.
    assert rules == {
        "truncated sheet xml": {"P001"}, "not xml at all": {"P001"}, "negative row": {"P001"},
        "error cell": {"S003"}, "bad iso date cell": {"S002"}, "huge merge": set(),
        "bad shared string index": {"P001"}, "no shared strings part": {"P001"}, "no styles part": {"S002"},
        "broken styles": {"P001"},
    }
    messages = {names[f["package_id"]]: f["message"] for f in together.findings if f["rule_id"] == "P001"}
    assert all("经费支出" in messages[name] for name in ("truncated sheet xml", "bad shared string index"))
