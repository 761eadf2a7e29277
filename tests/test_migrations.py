"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and a
warehouse made by an earlier migration is brought up to date without losing a package."""

import zlib
from datetime import datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import LargeBinary, column, create_engine, insert, select, table

from adapters.warehouse import store, upgrade
from adapters.warehouse.engine import alembic_config
from adapters.warehouse.models import Base, Package, PackageBlob

MOMENT = datetime(2023, 11, 1)
# The package row's NOT NULL text columns as 0006 made them (their defaults live in the model, not the schema).
_TEXT_COLUMNS = ("declared_code", "declared_code_header", "declared_unit", "workbook_member", "expenses_csv_member")


def test_migrations_match_the_models(database_url):
    engine = create_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_an_earlier_warehouse_is_upgraded_in_place(database_url):
    engine = create_engine(database_url)
    command.upgrade(alembic_config(engine), "0001")  # the warehouse as the first release made it
    with engine.begin() as conn:
        conn.execute(insert(Package.__table__).values(
            year=2023, name="a.zip", kind="zip", sha256="0" * 64, size=1, modified_at=MOMENT, mtime_ns=0,
            ingested_at=MOMENT, intake_status="readable"))
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(Package.name, Package.validated_key)).all()
    assert rows == [("a.zip", None)]  # kept, and validated once more by the next run
    engine.dispose()


def test_the_units_files_move_to_their_own_table_byte_for_byte(database_url):
    """0007 moves each version's workbook and CSV (deflated) out of the package row; downgrading moves them back."""
    engine = create_engine(database_url)
    command.upgrade(alembic_config(engine), "0006")
    workbook, csv = bytes(range(256)) * 40, "序号,金额\n1,0.10\n".encode("gbk")
    package = table("package", column("id"), column("year"), column("name"), column("kind"), column("sha256"),
                    column("size"), column("modified_at"), column("mtime_ns"), column("ingested_at"),
                    column("intake_status"), column("workbook", LargeBinary), column("expenses_csv", LargeBinary),
                    *(column(name) for name in _TEXT_COLUMNS))
    with engine.begin() as conn:
        for pid, blobs in [(1, (workbook, csv)), (2, (workbook, None)), (3, (None, None))]:
            conn.execute(insert(package).values(
                id=pid, year=2023, name=f"{pid}.zip", kind="zip", sha256=str(pid) * 64, size=1, modified_at=MOMENT,
                mtime_ns=0, ingested_at=MOMENT, intake_status="readable", workbook=blobs[0], expenses_csv=blobs[1],
                **dict.fromkeys(_TEXT_COLUMNS, "")))
    upgrade(engine)
    with engine.connect() as conn:
        assert store.package_blobs(conn, [1, 2, 3]) == {1: (workbook, csv), 2: (workbook, None), 3: (None, None)}
        kept = dict(conn.execute(select(PackageBlob.package_id, PackageBlob.expenses_csv_zlib)).all())
    assert kept.keys() == {1, 2}  # none for a version without either
    assert zlib.decompress(kept[1]) == csv and kept[2] is None  # the CSV kept deflated
    command.downgrade(alembic_config(engine), "0006")
    with engine.connect() as conn:
        moved_back = conn.execute(select(package.c.id, package.c.workbook, package.c.expenses_csv).order_by("id")).all()
    assert [tuple(row) for row in moved_back] == [(1, workbook, csv), (2, workbook, None), (3, None, None)]
    engine.dispose()


def test_the_expense_lines_already_stored_are_counted(database_url):
    """0008 counts the lines a warehouse already holds into expense_total (per package, source, category)."""
    from adapters.warehouse.models import ExpenseLine, ExpenseTotal

    engine = create_engine(database_url)
    command.upgrade(alembic_config(engine), "0007")
    with engine.begin() as conn:
        conn.execute(insert(Package.__table__).values(
            id=1, year=2023, name="a.zip", kind="zip", sha256="0" * 64, size=1, modified_at=MOMENT, mtime_ns=0,
            ingested_at=MOMENT, intake_status="readable", **dict.fromkeys(_TEXT_COLUMNS, "")))
        conn.execute(insert(ExpenseLine.__table__), [
            dict(package_id=1, excel_row=row, category=category, funding_source=source, amount_fen=fen,
                 amount_typed="", payee="", voucher_no="", summary="")
            for row, (category, source, fen) in enumerate([("差旅费", "市级经费", 10_000), ("差旅费", "市级经费", None),
                                                           ("差旅费", "市级经费", 2_550), ("劳务费", "市级经费", 30_000)],
                                                          start=2)])
    upgrade(engine)
    with engine.connect() as conn:
        kept = conn.execute(select(ExpenseTotal.package_id, ExpenseTotal.funding_source, ExpenseTotal.category,
                                   ExpenseTotal.lines, ExpenseTotal.amounts, ExpenseTotal.fen)
                            .order_by(ExpenseTotal.category)).all()
    assert [tuple(row) for row in kept] == [(1, "市级经费", "劳务费", 1, 1, 30_000), (1, "市级经费", "差旅费", 3, 2, 12_550)]
    engine.dispose()
