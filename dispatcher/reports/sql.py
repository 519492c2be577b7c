"""What SQLite and PostgreSQL spell differently, as SQLAlchemy constructs compiled per
dialect, and the read-only snapshot every report runs in.

The report's statements are one SQLAlchemy text for both databases; only these few
expressions (hours, days and durations of stored UTC timestamps) differ underneath.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    event,
    func,
    literal,
    true,
)
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from dispatcher.database import check_migrated, create_engine, driver_url
from dispatcher.reports.model import Scope, Window
from dispatcher.tables import (
    Case,
    CaseEvent,
    Customer,
    Deflection,
    Identity,
    Incident,
    IncidentMessage,
    KbCount,
    Message,
)

CASES = Case.__table__
MESSAGES = Message.__table__
EVENTS = CaseEvent.__table__
CUSTOMERS = Customer.__table__
IDENTITIES = Identity.__table__
INCIDENTS = Incident.__table__
INCIDENT_MESSAGES = IncidentMessage.__table__
KB_COUNTS = KbCount.__table__
DEFLECTIONS = Deflection.__table__
OPEN_STATES = ("open", "assigned")


class utc_hour(FunctionElement[str]):
    """The UTC hour a timestamp falls in, as text `YYYY-MM-DD HH`."""

    type = String()
    inherit_cache = True


class day_number(FunctionElement[int]):
    """A `utc_date` as a whole number (days run on by one)."""

    type = Integer()
    inherit_cache = True


class seconds_between(FunctionElement[float]):
    """Seconds from the second timestamp to the first."""

    type = Float()
    inherit_cache = True


class whole_minutes(FunctionElement[int]):
    """Whole minutes in a number of seconds (rounded down; NULL stays NULL)."""

    type = Integer()
    inherit_cache = True


class utc_date(FunctionElement[str]):
    """The UTC day of a timestamp (text `YYYY-MM-DD` on SQLite, a date on PostgreSQL)."""

    type = String()
    inherit_cache = True


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


@compiles(utc_hour, "sqlite")
def _utc_hour_sqlite(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff': the hour is its first 13 characters.
    return f"substr({_args(element, compiler, **kw)[0]}, 1, 13)"


@compiles(utc_hour, "postgresql")
def _utc_hour_postgresql(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({_args(element, compiler, **kw)[0]} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"


@compiles(utc_date, "sqlite")
def _date_sqlite(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({_args(element, compiler, **kw)[0]}, 1, 10)"


@compiles(utc_date, "postgresql")
def _date_postgresql(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({_args(element, compiler, **kw)[0]}) AT TIME ZONE 'UTC')::date"


@compiles(day_number, "sqlite")
def _day_sqlite(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(julianday({_args(element, compiler, **kw)[0]}) AS INTEGER)"


@compiles(day_number, "postgresql")
def _day_postgresql(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({_args(element, compiler, **kw)[0]}) - DATE '1970-01-01')"


@compiles(whole_minutes, "sqlite")
def _minutes_sqlite(element: whole_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({_args(element, compiler, **kw)[0]}) / 60 AS INTEGER)"


@compiles(whole_minutes, "postgresql")
def _minutes_postgresql(element: whole_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor(({_args(element, compiler, **kw)[0]}) / 60) AS INTEGER)"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _args(element, compiler, **kw)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _args(element, compiler, **kw)
    return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"


def ref(prefix: str, case_id: Any) -> Any:
    """The case reference (C-12) as SQL text."""
    return literal(prefix, String) + cast(case_id, String)


def reading_engine(url: str, auto_migrate: bool = False) -> Engine:
    """An engine for reading a migrated store: every transaction a consistent snapshot that
    takes no write lock (SQLite: a deferred transaction on WAL; PostgreSQL: repeatable read,
    read only), so a report never holds up the dispatchers."""
    writable = create_engine(url)
    try:
        check_migrated(writable, url, auto_migrate)
    finally:
        writable.dispose()
    target = driver_url(url)
    if target.get_backend_name() == "sqlite":
        engine = sqlalchemy_engine(target)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    else:
        engine = sqlalchemy_engine(target).execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    return engine


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction: every figure of a report sees the same store."""
    with engine.connect() as connection, connection.begin():
        yield connection


def _sqlite_connect(connection: Any, _record: Any) -> None:
    connection.isolation_level = None  # transactions begun by hand (above)
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")
    # The report passes over the same cases several times and sorts groups: a larger page
    # cache than SQLite's 2 MB, and sorting in memory.
    cursor.execute("PRAGMA cache_size=-262144")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def in_scope(scope: Scope) -> Any:
    """The condition on `cases` that keeps the scope's cases (true for all cases)."""
    if scope.by is None:
        return true()
    column = CASES.c[scope.by]
    return column.is_(None) if scope.value is None else column == scope.value


def during(column: Any, window: Window) -> Any:
    """The timestamp column falls in the window."""
    return and_(column >= window.since, column < window.until)


def change(current: int, previous: int) -> float | None:
    """Percent change against the previous period; None when there was nothing before."""
    return None if previous == 0 else round(100.0 * (current - previous) / previous, 1)


def case_count(condition: Any) -> Any:
    """How many rows of a group meet the condition (0 for none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
