"""The warehouse: SQLAlchemy models, Alembic migrations and the bulk reads/writes the stages use."""

from adapters.warehouse.engine import connect, upgrade

__all__ = ["connect", "upgrade"]
