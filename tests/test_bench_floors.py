"""The benchmark's two floors (bench/floors.py) find the same failing cells, on a generated CSV year and
on a package of odd cells (full-width digits, Python-only whitespace, blank lines, impossible dates,
amounts too long for an int64, a GB18030 file), and the bench refuses to go on when they do not; and
its peak RSS is that of a run's whole process tree (bench/children.py)."""

import sqlite3
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import floors  # noqa: E402  (bench/floors.py)
import generate  # noqa: E402
import run  # noqa: E402

HEADER = "序号,支出日期,支出科目,经费来源,金额（元）,收款单位,凭证号,摘要"
# One line per oddity; the comment says what each floor must make of it.
ODD_LINES = [
    "1,２０９９－０３－０５,会议费,{source},１２３.４５,某公司,记-odd-1,全角",  # NFKC: clean
    "2,2099-03-06\x1c,会议费,{source},\u00a0100.00\u3000,某公司,记-odd-2,Python whitespace",  # stripped: clean
    "",  # a blank line: skipped, not a row
    "3,2099年2月30日,会议费,{source},10.00,某公司,记-odd-3,no such day",  # S002
    "   ",  # a line of spaces: skipped too
    "4,1600-01-01,会议费,{source},10.00,某公司,记-odd-4,before pandas' dates",  # S002 (as the pandas floor)
    "5,2099-03-07,会议费,{source},12345678901234567890.00,某公司,记-odd-5,too long for int64",  # clean
    "6,2099-03-07,会议费,{source},-0.00,某公司,记-odd-6,not positive",  # S006
    "7,2099-03-07,会议费,{source},12.,某公司,记-odd-7,no decimals",  # clean
    "8,2099-03-07,会议费,{source},1.234,某公司,记-odd-8,three decimals",  # S006
    "9,2098-12-31 10:00,会议费,{source},¥1，000元,某公司,记-odd-8,year before; repeated voucher",  # S008, S007
    "10,2099/3/8,不存在的科目,没有的来源,,某公司,,blanks",  # S004, S005, S003 ×2
    "合计,,,,,,,",  # the total: nothing after it is read
    "11,bad,bad,bad,bad,bad,bad,after the total",
]


def _odd_package(source: Path, target: Path, funding_source: str) -> None:
    """source's package with its 经费支出.csv replaced by ODD_LINES, in GB18030."""
    text = "\n".join([HEADER, *(line.format(source=funding_source) for line in ODD_LINES)]) + "\n"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = text.encode("gb18030") if name.endswith("经费支出.csv") else old.read(name)
            new.writestr(name, data)


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("floors")
    spec = generate.YearSpec("floors", projects=8, lines=120, fmt="csv", seed=5, defective_share=0.5)
    data = generate.generate(spec, workers=1, cache_dir=tmp / "generated", log=lambda *_: None)
    first = floors.packages(data.inbox, spec.year)[0]
    from adapters.registry import load_year
    code = floors.project_code(floors.zip_members(first)[0])
    level = load_year(spec.year, data.registry).project(code).level
    _odd_package(first, data.inbox / str(spec.year) / "zz-odd.zip", generate.SOURCES[level][0])
    return data, tmp


def test_both_floors_find_the_same_failing_cells(year):
    data, tmp = year
    found = {}
    for engine, floor in floors.FLOORS.items():
        result, found[engine] = floor(data.inbox, data.registry, data.spec.year, tmp / f"{engine}.db")
        assert result["failing_cells"] == len(found[engine])
        with sqlite3.connect(tmp / f"{engine}.db") as conn:
            assert conn.execute("SELECT count(*) FROM expense_line").fetchone()[0] == result["lines"]
    assert floors.same_cells(found["pandas"], found["polars"]) == ""
    odd = {(row, column, rule) for file, row, column, rule in found["polars"] if file == "zz-odd.zip"}
    # excel rows count the header (row 1) and not the skipped blank lines
    assert odd == {(4, "spent_on", "S002"), (5, "spent_on", "S002"), (7, "amount", "S006"), (9, "amount", "S006"),
                   (10, "spent_on", "S008"), (9, "voucher_no", "S007"), (10, "voucher_no", "S007"),
                   (11, "category", "S004"), (11, "funding_source", "S005"), (11, "amount", "S003"),
                   (11, "voucher_no", "S003")}
    # the generated packages: every planted defect is a failing cell (a repeated voucher on both rows)
    planted = data.manifest["planted"]
    rules = {}
    for file, _row, _column, rule in found["pandas"]:
        if file != "zz-odd.zip":
            rules[rule] = rules.get(rule, 0) + 1
    expected = {"S002": planted.get("S002:amount", 0) + planted.get("S002:date", 0),
                "S004": planted.get("S004:refused", 0) + planted.get("S004:unknown", 0),
                "S007": 2 * planted.get("S007", 0),
                **{rule: planted.get(rule, 0) for rule in ("S003", "S005", "S006", "S008")}}
    assert rules == {rule: n for rule, n in expected.items() if n}


def test_the_bench_stops_when_the_floors_disagree(tmp_path):
    cells = {("a.zip", 2, "amount", "S006"), ("a.zip", 3, "spent_on", "S002")}
    floors.write_cells(tmp_path / "floor_pandas.cells.tsv", cells)
    floors.write_cells(tmp_path / "floor_polars.cells.tsv", cells)
    done = {name: run.Child(name, 1.0, 0, 1.0, tmp_path / "log", None) for name in ("floor_pandas", "floor_polars")}
    assert run.compare_floors(tmp_path, done) == "the same 2 in both floors"
    floors.write_cells(tmp_path / "floor_polars.cells.tsv", cells - {("a.zip", 2, "amount", "S006")})
    with pytest.raises(run.FloorsDisagree, match="1 cells only in the pandas floor"):
        run.compare_floors(tmp_path, done)


def test_peak_rss_counts_the_whole_process_tree(tmp_path):
    """Two workers of 200 MiB each at once: the tree's peak is their sum (wait4 sees one process at most)."""
    worker = "import time; block = b'x' * (200 * 2**20); time.sleep(1.5)"
    parent = (f"import subprocess, sys; workers = [subprocess.Popen([sys.executable, '-c', {worker!r}]) for _ in range(2)]; "
              "[w.wait() for w in workers]")
    child = run.run_child("tree", [sys.executable, "-c", parent], env={"PATH": "/usr/bin:/bin"}, log=tmp_path / "log",
                          timeout=60)
    assert child.ok and child.processes == 3
    assert child.peak_mib >= 400 > child.maxrss_mib >= 200
