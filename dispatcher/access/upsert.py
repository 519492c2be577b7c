"""INSERT ... ON CONFLICT for the store's two databases (both speak it, each in its dialect)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_of(session: Session) -> str:
    """The name of the session's database: "postgresql" or "sqlite"."""
    return session.get_bind().dialect.name


def insert_for(dialect: str, table: Any) -> Any:
    """An INSERT of the dialect, with `on_conflict_do_*` and `excluded`. Callers build their
    statement once per dialect and keep it: building one costs more than running it."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
