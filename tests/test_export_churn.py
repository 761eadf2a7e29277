"""Exports rewrite only what changed: a second run over the same inbox leaves every export file as it was
(same bytes and same modification time)."""

from tests.conftest import put


def _stamps(directory):
    # manifest.json names the run that wrote the exports: each run writes its own.
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*")
            if p.is_file() and p.name != "manifest.json"}


def test_unchanged_exports_are_not_rewritten(clean, inbox, sqlite_url, run_etl, tmp_path):
    put(inbox, clean("2023-ST-01"))
    bad = clean("2023-ST-02")
    bad.sheets["经费支出"][2][4] = "十元"
    put(inbox, bad)
    export = tmp_path / "exports"
    first = run_etl(inbox, sqlite_url, export)
    before = _stamps(first.dir)
    assert "summary.xlsx" in before and "feedback/2023-ST-02.xlsx" in before
    second = run_etl(inbox, sqlite_url, export)
    assert _stamps(second.dir) == before
