"""Alembic environment: runs against the engine handed over in config.attributes (see engine.py)."""

from alembic import context

from adapters.warehouse.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
