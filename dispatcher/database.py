"""Engines and migrations: SQLite (WAL, one writer at a time) or PostgreSQL, same code.

A plain URL such as `sqlite:///var/ingest.db` or `postgresql://user@host/db` gets its driver
here. The store's work is plain synchronous SQLAlchemy run in a worker thread, one transaction
at a time per call: a batch makes a dozen statements per message, and a thread costs one hop
per batch where an async driver costs one per statement (about 2.5 times the throughput on
SQLite). Migrations are Alembic scripts shipped in `dispatcher/migrations`; on PostgreSQL an
advisory lock lets several dispatchers start at once without migrating twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, column, event, text, tuple_
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

log = structlog.get_logger("dispatcher.store")

DRIVERS = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}
MIGRATION_LOCK = 0x1D15_0001
# Serialization failure, deadlock, lock not available, statement timeout (query canceled),
# and the connection classes (08...).
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"}

T = TypeVar("T")


class StoreNotMigrated(Exception):
    """The store's schema is not the one this version needs; the message says what to do."""


def driver_url(url: str) -> URL:
    """Pick the driver for a plain database URL."""
    parsed = make_url(url)
    return parsed.set(drivername=DRIVERS[parsed.get_backend_name()])


def shown_url(url: str) -> str:
    """The URL for messages and logs, password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(
    url: str,
    pool_size: int = 5,
    lock_timeout_s: float = 10.0,
    statement_timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout and write-locking transactions, PostgreSQL
    a lock timeout: a lock held elsewhere fails a transaction (to be retried) in bounded time.
    On PostgreSQL, `statement_timeout_s` fails a statement that runs longer, and
    `connect_timeout_s` a connection attempt to a server that does not answer (none: wait)."""
    target = driver_url(url)
    timeout_ms = _ms(lock_timeout_s)
    if target.get_backend_name() == "sqlite":
        if target.database not in (None, "", ":memory:"):
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy_engine(target)
        event.listen(engine, "connect", partial(_sqlite_connect, timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = f"-c lock_timeout={timeout_ms}"
    if statement_timeout_s is not None:
        options += f" -c statement_timeout={_ms(statement_timeout_s)}"
    arguments: dict[str, Any] = {"options": options}
    if connect_timeout_s is not None:
        arguments["connect_timeout"] = max(2, math.ceil(connect_timeout_s))  # libpq: 2 at least
    return sqlalchemy_engine(
        target, pool_pre_ping=True, pool_size=pool_size, connect_args=arguments
    )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def in_transaction(engine: Engine, work: Callable[..., T], *args: Any) -> T:
    """Run `work(session, *args)` in a worker thread, in one committed transaction."""
    return await asyncio.to_thread(transaction, engine, work, *args)


def transaction(engine: Engine, work: Callable[..., T], *args: Any) -> T:
    """`work(session, *args)` in one transaction, committed when it returns."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return work(session, *args)


def pairs_in(first: Any, second: Any, dialect: str, name: str = "pairs") -> Any:
    """A condition true for rows whose (first, second) is one of the pairs bound under `name`
    (`bound_pairs`), searched through the two columns' index. The pairs come from a subquery
    over parameters whose number does not change with the batch: SQLite scans the whole
    table for a row value IN a list (not for one IN a subquery), and the statement's text is
    the same for every batch, so the drivers keep it prepared (on SQLite one JSON parameter,
    on PostgreSQL two arrays). Made of bound parameters, so that a statement using it is
    built once and each batch only binds its pairs."""
    if dialect == "postgresql":
        query = f"SELECT * FROM unnest(CAST(:{name}_1 AS text[]), CAST(:{name}_2 AS text[]))"
    else:
        query = (
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
            f" FROM json_each(:{name})"
        )
    pairs = text(query).columns(column("first"), column("second"))
    return tuple_(first, second).in_(pairs)


def bound_pairs(
    pairs: Sequence[tuple[Any, Any]], dialect: str, name: str = "pairs"
) -> dict[str, Any]:
    """The parameters of a `pairs_in` condition for these pairs (of strings)."""
    if dialect == "postgresql":
        return {f"{name}_1": [a for a, _ in pairs], f"{name}_2": [b for _, b in pairs]}
    return {name: json.dumps(list(pairs))}


def with_binary_arrays(session: Session, statement: str, parameters: dict[str, Any]) -> Any:
    """Run PostgreSQL SQL written for the driver, whose arrays are bound as `%(name)b`: sent
    in binary, not written out value by value. As text, a batch's arrays cost more CPU than
    the statement's own work (100 message bodies: 5 ms to escape, 0.15 ms in binary; 800
    bands with 1,600 times: 3.1 ms more than in binary). Returns the cursor result."""
    return session.connection().exec_driver_sql(statement, parameters)


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert these rows, which all name the same columns, in the session's transaction.

    On PostgreSQL through COPY: SQLAlchemy's INSERT of many rows renders and binds every
    value in Python, which cost the dispatcher 11 ms of CPU for a batch's 800 incident bands
    against 1.6 ms for COPY. The values go as they are (what COPY is given is not passed
    through the columns' types: aware datetimes, str, int, bytes, bool, None), and columns not
    named get the table's server defaults. Errors are raised as SQLAlchemy's, as for a
    statement, so that a lost connection or a lock timeout is told from a poison message."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        _insert_sqlite(session, table, rows)
        return
    names = list(rows[0])
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[name] for name in names])
    except psycopg.Error as error:
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _insert_sqlite(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """On SQLite, executemany on the driver's cursor, each value passed through its column's
    bind processing as SQLAlchemy would, once per distinct value: a batch's incident bands
    share a few dozen times among about 900 rows, and converting each one through the
    column type and SQLite's DATETIME was most of what their INSERT cost."""
    names = tuple(rows[0])
    statement, processors = _sqlite_insert(table, names, session.get_bind().dialect)
    memos: list[dict[Any, Any]] = [{} for _ in names]

    def converted(index: int, value: Any) -> Any:
        process = processors[index]
        if process is None or value is None:
            return value
        memo = memos[index]
        try:
            found = memo.get(value, memo)
        except TypeError:  # unhashable (a JSON column's dict)
            return process(value)
        if found is memo:
            found = memo[value] = process(value)
        return found

    values = [
        tuple(converted(index, row[name]) for index, name in enumerate(names)) for row in rows
    ]
    driver = session.connection().connection.driver_connection
    assert driver is not None
    try:
        driver.executemany(statement, values)
    except sqlite3.Error as error:
        raise DBAPIError.instance(statement, values, error, sqlite3.Error) from error


@cache
def _sqlite_insert(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> tuple[str, list[Callable[[Any], Any] | None]]:
    """The INSERT statement for these columns, and each column's bind processor (the type's
    own, then the dialect's: what SQLAlchemy applies to a value before the driver sees it)."""
    columns = [table.c[name] for name in names]
    statement = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    )
    return statement, [c.type._cached_bind_processor(dialect) for c in columns]


def text_of(error: BaseException) -> str:
    """One line: the exception's type and message (a driver error without its SQL)."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"[:1000]


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
    head = _scripts().get_current_head()
    assert head is not None
    return head


@cache
def _scripts() -> ScriptDirectory:
    """The migrations this version ships, read once per process (reading them compiles every
    migration file)."""
    return ScriptDirectory.from_config(_config())


def current_revision(engine: Engine) -> str | None:
    """The migration the store is at (None when it was never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply the missing migrations; return (revision before, revision after).

    On PostgreSQL the whole upgrade holds an advisory lock, and the revision before is read
    under it: of several processes upgrading at once, one migrates, the others find it done.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")  # migrations take long
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_config(connection), "head")
    return before, head_revision()


def check_migrated(engine: Engine, url: str, auto_migrate: bool) -> None:
    """Raise StoreNotMigrated unless the store is at head (migrating first if allowed)."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {script.revision for script in _scripts().walk_revisions()}
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
    before, after = upgrade(engine)
    log.info("store migrated", store=shown_url(url), before=before, after=after)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "dispatcher:migrations")
    config.attributes["connection"] = connection
    return config


def _sqlite_connect(busy_timeout_ms: int, connection: Any, _record: Any) -> None:
    # Transactions are begun by hand (below), so that the driver never opens one itself.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Take the write lock at the start: a reader that later writes could otherwise fail
    # with "database is locked" instead of waiting its turn (SQLite's single writer).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
