"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and a
warehouse made by an earlier migration is brought up to date without losing a package."""

from datetime import datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, select

from adapters.warehouse import upgrade
from adapters.warehouse.engine import alembic_config
from adapters.warehouse.models import Base, Package

MOMENT = datetime(2023, 11, 1)


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
