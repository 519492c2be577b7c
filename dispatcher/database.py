"""Engines and migrations: SQLite (WAL, one writer at a time) or PostgreSQL, same code.

A plain URL such as `sqlite:///var/ingest.db` or `postgresql://user@host/db` gets its async
driver here. Migrations are Alembic scripts shipped in `dispatcher/migrations`; on PostgreSQL
an advisory lock lets several dispatchers start at once without migrating twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

log = structlog.get_logger("dispatcher.store")

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
MIGRATION_LOCK = 0x1D15_0001
# Serialization failure, deadlock, lock not available, and the connection classes (08...).
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}

T = TypeVar("T")


class StoreNotMigrated(Exception):
    """The store's schema is not the one this version needs; the message says what to do."""


def async_url(url: str) -> URL:
    """Pick the async driver for a plain database URL."""
    parsed = make_url(url)
    return parsed.set(drivername=ASYNC_DRIVERS[parsed.get_backend_name()])


def shown_url(url: str) -> str:
    """The URL for messages and logs, password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        if target.database not in (None, "", ":memory:"):
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(target, pool_pre_ping=True, pool_size=pool_size)


async def in_transaction(engine: AsyncEngine, work: Callable[..., T], *args: Any) -> T:
    """Run `work(session, *args)` (plain synchronous ORM code) in one committed transaction."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        return await session.run_sync(work, *args)


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying as they are: connection trouble, locks, deadlocks."""
    if isinstance(error, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return bool(state) and (state in TRANSIENT_SQLSTATES or str(state).startswith("08"))
    return False


def head_revision() -> str:
    """The newest migration this version ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The migration the store is at (None when it was never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Apply the missing migrations; return (revision before, revision after)."""
    before = await current_revision(engine)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
    return before, head_revision()


async def check_migrated(engine: AsyncEngine, url: str, auto_migrate: bool) -> None:
    """Raise StoreNotMigrated unless the store is at head (migrating first if allowed)."""
    current, head = await current_revision(engine), head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current is not None and current not in known:
        raise StoreNotMigrated(
            f"the store at {shown_url(url)} is at revision {current}, which this version "
            "does not know (a newer version migrated it)"
        )
    if not auto_migrate:
        raise StoreNotMigrated(
            f"the store at {shown_url(url)} is not migrated (at {current or 'no revision'}, "
            f"this version needs {head}): run `ingest db upgrade`, or set "
            "[store] auto_migrate = true"
        )
    before, after = await upgrade(engine)
    log.info("store migrated", store=shown_url(url), before=before, after=after)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "dispatcher:migrations")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    command.upgrade(_config(connection), "head")


def _sqlite_connect(connection: Any, _record: Any) -> None:
    # Transactions are begun by hand (below), so that the driver never opens one itself.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock at the start: a reader that later writes could otherwise fail
    # with "database is locked" instead of waiting its turn (SQLite's single writer).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
