"""The floors: what the e2e run cannot go below, written twice (pandas and polars) over the same work.

    python bench/floors.py pandas|polars --inbox DIR --registry DIR --year 2099 --db OUT.db [--cells OUT.tsv]

Each floor reads the CSV year the e2e run reads (the 经费支出.csv out of each package's zip, the project
code out of its workbook's 基本信息), makes validation's S002–S008 checks on 经费支出 as vectorised
expressions (the same NFKC normalisation, the same regexes), rejects the packages with a failing cell,
reconciles the rest against the registry's grants by a group-by, and inserts every line into a fresh
SQLite table with one `sqlite3` executemany. The bench runs each as a process of its own, start-up
included, like the pipeline's run; the last line printed is its JSON (times per part, counts).

--cells writes the failing cells, one `file<TAB>row<TAB>column<TAB>rule` a line (sorted): the bench
checks that both floors found the same set (`same_cells`), so neither is faster by doing less.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AMOUNT_NOISE = r"[¥￥,，\s元]"
AMOUNT = r"^(?P<sign>[-+]?)(?P<whole>\d+)(?:\.(?P<frac>\d*))?$"
DATE = r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?$"
REQUIRED = ["spent_on", "category", "funding_source", "amount", "voucher_no"]
COLUMNS = ["seq", "spent_on", "category", "funding_source", "amount", "payee", "voucher_no", "summary"]
INSERT = ("INSERT INTO expense_line (package_id, excel_row, spent_on, category, funding_source, amount_fen, "
          "amount_typed, payee, voucher_no, summary) VALUES (?,?,?,?,?,?,?,?,?,?)")
CREATE = ("CREATE TABLE expense_line (id INTEGER PRIMARY KEY, package_id INTEGER, excel_row INTEGER, "
          "spent_on DATE, category TEXT, funding_source TEXT, amount_fen BIGINT, amount_typed TEXT, "
          "payee TEXT, voucher_no TEXT, summary TEXT)")
# Python's whitespace (str.strip, re's \s): Rust's (polars' strip_chars, its regex \s) lacks \x1c-\x1f,
# so the polars floor names Python's set. Every one of them is below U+3001.
PY_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


# --- what both floors share: the packages and their CSVs ---------------------------------------------


def packages(inbox: Path, year: int) -> list[Path]:
    return sorted((Path(inbox) / str(year)).glob("*.zip"))


def zip_members(path: Path) -> tuple[bytes, bytes | None]:
    """The workbook and 经费支出.csv of a generated package (a zip)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        workbook = next(n for n in names if n.lower().endswith(".xlsx"))
        csv = next((n for n in names if n.endswith("经费支出.csv")), None)
        return archive.read(workbook), (archive.read(csv) if csv else None)


def project_code(workbook: bytes) -> str:
    from python_calamine import CalamineWorkbook

    basic = CalamineWorkbook.from_filelike(io.BytesIO(workbook)).get_sheet_by_name("基本信息").to_python()
    return next(str(row[1]) for row in basic if row and row[0] == "项目编号")


def csv_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def fresh_table(db: Path):
    import sqlite3

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(CREATE)
    return conn


Cell = tuple[str, int, str, str]  # (package file, excel row, column, rule)


def write_cells(path: Path, cells: set[Cell]) -> None:
    Path(path).write_text("".join(f"{f}\t{r}\t{c}\t{rule}\n" for f, r, c, rule in sorted(cells)), encoding="utf-8")


def read_cells(path: Path) -> set[Cell]:
    rows = (line.split("\t") for line in Path(path).read_text(encoding="utf-8").splitlines())
    return {(f, int(r), c, rule) for f, r, c, rule in rows}


def same_cells(first: set[Cell], second: set[Cell], names: tuple[str, str] = ("pandas", "polars")) -> str:
    """'' when both floors found the same failing cells, else what differs (counts and a few examples)."""
    if first == second:
        return ""
    only = [(names[0], sorted(first - second)), (names[1], sorted(second - first))]
    return "; ".join(f"{len(cells):,} cells only in the {name} floor (e.g. {cells[:3]})" for name, cells in only if cells)


# --- the pandas floor -----------------------------------------------------------------------------------


def hand_checks(frame, year: int) -> dict:
    """The checks validation makes on 经费支出 (S002–S008), as plain vectorised masks (True = fails).

    frame: one row per expense line, text cells, with package_id and level columns."""
    import pandas as pd

    from schemas.layout import ALLOWED_CATEGORIES, SOURCES_BY_LEVEL

    clean = {c: frame[c].astype("string").fillna("").str.normalize("NFKC").str.strip() for c in REQUIRED}
    blank = {c: clean[c].eq("") for c in REQUIRED}
    amount = clean["amount"].str.replace(AMOUNT_NOISE, "", regex=True).str.extract(AMOUNT)
    readable = amount["whole"].notna()
    frac = amount["frac"].fillna("")
    decimals = frac.str.len()
    exact = readable & (decimals <= 2)
    fen = (pd.to_numeric(amount["whole"].where(exact), errors="coerce") * 100
           + pd.to_numeric(frac.where(exact).str.ljust(2, "0"), errors="coerce"))
    fen = fen.where(amount["sign"] != "-", -fen)
    day = clean["spent_on"].str.extract(DATE)
    spent_on = pd.to_datetime(day["y"] + "-" + day["m"].str.zfill(2) + "-" + day["d"].str.zfill(2),
                              format="%Y-%m-%d", errors="coerce")
    source = clean["funding_source"]
    national, municipal = SOURCES_BY_LEVEL["national"], SOURCES_BY_LEVEL["municipal"]
    source_ok = ((frame["level"] == "national") & source.isin(national)) | ((frame["level"] == "municipal") & source.isin(municipal))
    voucher = clean["voucher_no"]
    repeated = pd.DataFrame({"p": frame["package_id"].to_numpy(), "v": voucher.to_numpy()}).duplicated(keep=False).to_numpy()
    fails = {f"S003:{c}": blank[c] for c in REQUIRED}
    fails["S002:spent_on"] = ~blank["spent_on"] & spent_on.isna()
    fails["S002:amount"] = ~blank["amount"] & ~readable
    fails["S006:amount"] = readable & ~(exact & (fen > 0)).fillna(False)
    fails["S004:category"] = ~blank["category"] & ~clean["category"].isin(ALLOWED_CATEGORIES)
    fails["S005:funding_source"] = ~blank["funding_source"] & ~source_ok
    fails["S007:voucher_no"] = ~blank["voucher_no"] & pd.Series(repeated, index=frame.index)
    fails["S008:spent_on"] = spent_on.notna() & (spent_on.dt.year != year)
    return {"fails": fails, "fen": fen, "spent_on": spent_on, "source": source}


def failure_cells(frame, fails: dict):
    """(package_id, excel_row, rule:column) of every failing cell: what validation turns into findings."""
    import pandas as pd

    parts = [pd.DataFrame({"package_id": frame["package_id"][mask].to_numpy(),
                           "excel_row": frame["excel_row"][mask].to_numpy(), "check": name})
             for name, mask in fails.items() if mask.any()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["package_id", "excel_row", "check"])


def floor_pandas(inbox: Path, registry_dir: Path, year: int, db: Path) -> tuple[dict, set[Cell]]:
    """read_csv + masks + group-by + sqlite3 executemany, in pandas."""
    import pandas as pd

    from adapters.registry import load_year

    began = time.perf_counter()
    registry = load_year(year, registry_dir)
    files = packages(inbox, year)
    frames = []
    for package_id, path in enumerate(files, start=1):
        workbook, data = zip_members(path)
        code = project_code(workbook)
        frame = pd.read_csv(io.StringIO(csv_text(data)), dtype=str, keep_default_na=False)
        frame.columns = COLUMNS
        total = frame.index[frame["seq"].str.strip().str.startswith("合计")]
        if len(total):
            frame = frame.loc[: total[0] - 1]
        frame["excel_row"] = frame.index + 2
        frame["package_id"] = package_id
        frame["level"] = registry.project(code).level
        frame["project_code"] = registry.project(code).code
        frames.append(frame)
    lines = pd.concat(frames, ignore_index=True)
    read_s = time.perf_counter() - began

    t = time.perf_counter()
    checked = hand_checks(lines, year)
    failing = pd.concat(list(checked["fails"].values()), axis=1).any(axis=1)
    cells = failure_cells(lines, checked["fails"])
    checks_s = time.perf_counter() - t

    t = time.perf_counter()
    rejected = lines.loc[failing, "package_id"].unique()
    accepted = ~lines["package_id"].isin(rejected)
    spent = (pd.DataFrame({"project_code": lines["project_code"], "source": checked["source"], "fen": checked["fen"]})[accepted]
             .groupby(["project_code", "source"])["fen"].sum())
    granted = {(p.code, s): fen for p in registry.projects for s, fen in registry.grants_for(p).items()}
    granted = pd.Series(list(granted.values()), index=pd.MultiIndex.from_tuples(list(granted), names=spent.index.names))
    balance = granted.sub(spent, fill_value=0)
    reconcile_s = time.perf_counter() - t

    t = time.perf_counter()
    conn = fresh_table(db)
    fen = checked["fen"].astype(object).where(checked["fen"].notna(), None)
    spent_on = checked["spent_on"].dt.strftime("%Y-%m-%d").astype(object).where(checked["spent_on"].notna(), None)
    rows = zip(lines["package_id"].tolist(), lines["excel_row"].tolist(), spent_on.tolist(), lines["category"].tolist(),
               checked["source"].tolist(), fen.tolist(), lines["amount"].tolist(), lines["payee"].tolist(),
               lines["voucher_no"].tolist(), lines["summary"].tolist())
    with conn:
        conn.executemany(INSERT, rows)
    conn.close()
    insert_s = time.perf_counter() - t
    found = {(files[p - 1].name, int(r), *reversed(check.split(":"))) for p, r, check in cells.itertuples(index=False)}
    return dict(lines=len(lines), failing_cells=len(cells), rejected=len(rejected), balances=len(balance),
                read_s=read_s, checks_s=checks_s, reconcile_s=reconcile_s, insert_s=insert_s,
                by_rule=cells["check"].str.split(":").str[0].value_counts().sort_index().to_dict()), found


# --- the polars floor -----------------------------------------------------------------------------------


def rust_regex(pattern: str) -> str:
    """The pattern with Python's \\s spelled out for polars' regex engine (whose \\s is Rust's whitespace)."""
    body = "".join(f"\\x{{{ord(c):x}}}" for c in PY_SPACE)
    return re.sub(r"\[[^\]]*\]|\\s", lambda m: m[0].replace("\\s", body) if m[0].startswith("[") else f"[{body}]", pattern)


def nfkc(series):
    """series.str.normalize("NFKC"), normalising only the strings that may change (CPython's quick check, done
    once per column): ASCII and CJK Unified Ideographs are each NFKC with combining class 0, so a string of
    them alone is already NFKC. polars normalises every string otherwise, 2–5× slower than unicodedata."""
    needs = series.str.contains(r"[^\x00-\x7f\x{4e00}-\x{9fff}]")
    if not needs.any():
        return series
    return series.scatter(needs.arg_true(), series.filter(needs).str.normalize("NFKC"))


def polars_checks(lines, year: int):
    """hand_checks in polars over the lines' frame (columns COLUMNS, package_id, level): one boolean column
    per check (True = fails) and fen, spent_on, source. Staged: each value is computed once, then used."""
    import polars as pl

    from schemas.layout import ALLOWED_CATEGORIES, SOURCES_BY_LEVEL

    clean = lines.select("package_id", "level", *(nfkc(lines[c].fill_null("")).str.strip_chars(PY_SPACE) for c in REQUIRED))
    amount = pl.col("amount").str.replace_all(rust_regex(AMOUNT_NOISE), "").str.extract_groups(rust_regex(AMOUNT))
    day = pl.col("spent_on").str.extract_groups(rust_regex(DATE))
    day = day.struct.field("y") + "-" + day.struct.field("m").str.zfill(2) + "-" + day.struct.field("d").str.zfill(2)
    parts = clean.with_columns(amount.struct.unnest(), parsed=day.str.to_date("%Y-%m-%d", strict=False),
                               repeated=pl.len().over("package_id", "voucher_no") > 1)
    sign, whole, frac = pl.col("sign"), pl.col("whole"), pl.col("frac").fill_null("")
    readable = whole.is_not_null()
    exact = readable & (frac.str.len_chars() <= 2)
    magnitude = whole.cast(pl.Int64, strict=False) * 100 + frac.str.pad_end(2, "0").cast(pl.Int64, strict=False)
    # pandas' fen is a float: any number of digits is > 0 when one of them is not zero; Int64 would overflow.
    positive = (sign != "-") & (whole.str.contains("[1-9]") | frac.str.contains("[1-9]"))
    parsed = pl.col("parsed")
    parts = parts.with_columns(readable=readable, exact=exact, positive=positive,
                               fen=pl.when(exact).then(pl.when(sign == "-").then(-magnitude).otherwise(magnitude)),
                               # pandas' datetime64[ns] holds 1677-09-22 … 2262-04-11 only: outside, NaT (S002)
                               day=pl.when(parsed.is_between(pl.date(1677, 9, 22), pl.date(2262, 4, 11))).then(parsed))
    blank = {c: pl.col(c) == "" for c in REQUIRED}
    spent_on, source, level = pl.col("day"), pl.col("funding_source"), pl.col("level")
    national, municipal = SOURCES_BY_LEVEL["national"], SOURCES_BY_LEVEL["municipal"]
    source_ok = ((level == "national") & source.is_in(national)) | ((level == "municipal") & source.is_in(municipal))
    fails = {f"S003:{c}": blank[c] for c in REQUIRED}
    fails["S002:spent_on"] = ~blank["spent_on"] & spent_on.is_null()
    fails["S002:amount"] = ~blank["amount"] & ~pl.col("readable")
    fails["S006:amount"] = pl.col("readable") & ~(pl.col("exact") & pl.col("positive"))
    fails["S004:category"] = ~blank["category"] & ~pl.col("category").is_in(sorted(ALLOWED_CATEGORIES))
    fails["S005:funding_source"] = ~blank["funding_source"] & ~source_ok
    fails["S007:voucher_no"] = ~blank["voucher_no"] & pl.col("repeated")
    fails["S008:spent_on"] = spent_on.is_not_null() & (spent_on.dt.year() != year)
    return parts.select("fen", spent_on.alias("spent_on"), source.alias("source"),
                        **{name: check.fill_null(False) for name, check in fails.items()})


# pandas' C tokenizer skips a line of nothing but spaces or tabs (outside quotes); polars reads it as a row
BLANK_LINE = re.compile(r"^[ \t]*\r?\n", re.MULTILINE)
BLANK_MARKS = ("\n\n", "\n\r\n", "\n ", "\n\t")


def polars_csv(data: bytes):
    """One package's 经费支出.csv as read_csv(dtype=str, keep_default_na=False) reads it: all text, an empty
    cell as "", blank lines skipped."""
    import polars as pl

    text = csv_text(data)  # decoded as the pandas floor does (utf-8-sig, else gb18030)
    if text.startswith((" ", "\t", "\n", "\r")) or any(mark in text for mark in BLANK_MARKS):  # memchr: fast
        text = BLANK_LINE.sub("", text)  # rare, and slow: re tries every position
    frame = pl.read_csv(text.encode("utf-8"), infer_schema=False, empty_string_is_null=False)
    frame.columns = COLUMNS
    return frame


def floor_polars(inbox: Path, registry_dir: Path, year: int, db: Path) -> tuple[dict, set[Cell]]:
    """The same read, checks, group-by and executemany, in polars."""
    import polars as pl

    from adapters.registry import load_year

    began = time.perf_counter()
    registry = load_year(year, registry_dir)
    files = packages(inbox, year)
    frames = []
    for package_id, path in enumerate(files, start=1):
        workbook, data = zip_members(path)
        project = registry.project(project_code(workbook))
        frame = polars_csv(data)
        total = frame.with_row_index().filter(pl.col("seq").str.strip_chars(PY_SPACE).str.starts_with("合计"))
        if len(total):
            frame = frame.head(total["index"][0])
        frames.append(frame.with_columns(excel_row=pl.int_range(2, pl.len() + 2, dtype=pl.Int64),
                                         package_id=pl.lit(package_id, pl.Int64), level=pl.lit(project.level),
                                         project_code=pl.lit(project.code)))
    lines = pl.concat(frames, rechunk=True)
    read_s = time.perf_counter() - began

    t = time.perf_counter()
    checked = pl.concat([lines.select("package_id", "excel_row", "project_code"), polars_checks(lines, year)],
                        how="horizontal")
    names = [name for name in checked.columns if ":" in name]
    failing = checked.select(pl.any_horizontal(names)).to_series()
    cells = (checked.select("package_id", "excel_row", *names).unpivot(index=["package_id", "excel_row"], on=names,
                                                                       variable_name="check").filter(pl.col("value")))
    checks_s = time.perf_counter() - t

    t = time.perf_counter()
    rejected = checked.filter(failing)["package_id"].unique()
    spent = (checked.filter(~pl.col("package_id").is_in(rejected.implode()))
             .group_by("project_code", "source").agg(pl.col("fen").sum()))
    granted = pl.DataFrame([(p.code, s, fen) for p in registry.projects for s, fen in registry.grants_for(p).items()],
                           schema={"project_code": pl.String, "source": pl.String, "granted": pl.Int64}, orient="row")
    balance = (granted.join(spent, on=["project_code", "source"], how="full", coalesce=True)
               .select(pl.col("granted").fill_null(0) - pl.col("fen").fill_null(0)))
    reconcile_s = time.perf_counter() - t

    t = time.perf_counter()
    conn = fresh_table(db)
    columns = [lines["package_id"], lines["excel_row"], checked["spent_on"].dt.to_string("%Y-%m-%d"), lines["category"],
               checked["source"], checked["fen"], lines["amount"], lines["payee"], lines["voucher_no"], lines["summary"]]
    rows = zip(*(column.to_list() for column in columns))  # as the pandas floor: faster than iter_rows
    with conn:
        conn.executemany(INSERT, rows)
    conn.close()
    insert_s = time.perf_counter() - t
    found = {(files[p - 1].name, r, *reversed(check.split(":"))) for p, r, check, _ in cells.iter_rows()}
    by_rule = cells.group_by(pl.col("check").str.split(":").list.first()).len().sort("check")
    return dict(lines=len(lines), failing_cells=len(cells), rejected=len(rejected), balances=len(balance),
                read_s=read_s, checks_s=checks_s, reconcile_s=reconcile_s, insert_s=insert_s,
                by_rule=dict(by_rule.iter_rows())), found


FLOORS = {"pandas": floor_pandas, "polars": floor_polars}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("floor", choices=list(FLOORS))
    parser.add_argument("--inbox", required=True, type=Path)
    parser.add_argument("--registry", required=True, type=Path)
    parser.add_argument("--year", required=True, type=int)
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--cells", type=Path, help="write the failing cells here (file, row, column, rule)")
    args = parser.parse_args(argv)
    result, cells = FLOORS[args.floor](args.inbox, args.registry, args.year, args.db)
    if args.cells:
        write_cells(args.cells, cells)
    print(json.dumps(result, ensure_ascii=False, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
