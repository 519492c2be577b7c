"""The dispatcher's SQL store: the (channel, source id) pairs seen, enforced by the database.

The same code runs on SQLite (the embedded default, in WAL mode) and PostgreSQL; a plain URL
such as `sqlite:///var/ingest.db` or `postgresql://user@host/db` gets its async driver here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Update

metadata = MetaData()

seen_messages = Table(
    "seen_messages",
    metadata,
    Column("channel", String(16), nullable=False),
    Column("source_id", String(998), nullable=False),
    Column("case_open_id", String(26), nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("forwarded", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("channel", "source_id", name="pk_seen_messages"),
)

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> URL:
    """Pick the async driver for a plain database URL."""
    parsed = make_url(url)
    return parsed.set(drivername=ASYNC_DRIVERS[parsed.get_backend_name()])


Key = tuple[str, str]
"""(channel, source_id): the idempotency key of a message."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A case-open as the store sees it: its idempotency key and its own id."""

    channel: str
    source_id: str
    case_open_id: str


@dataclass(frozen=True, slots=True)
class Owner:
    """The first message seen with a key, and whether its forward is confirmed."""

    case_open_id: str
    forwarded: bool


class Store:
    """Records arrivals; the primary key on (channel, source_id) is what makes repeats repeats."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and create the tables that are missing."""
        target = async_url(url)
        if target.get_backend_name() == "sqlite" and target.database not in (None, ":memory:"):
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, pool_pre_ping=True)
        if target.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()

    async def record(
        self, arrivals: Sequence[Arrival], forwarded: Sequence[Key] = ()
    ) -> dict[Key, Owner]:
        """Record the arrivals that are new; return, for every key, the message that owns it.

        An arrival must be forwarded when it owns its key and the forward is not yet done: it
        is new, or a redelivery of a message whose forward never completed. Else it is a repeat.
        `forwarded` marks earlier forwards done in the same transaction (saving a commit).
        """
        if not arrivals:
            await self.mark_forwarded(forwarded)
            return {}
        now = datetime.now(UTC)
        rows = [
            {
                "channel": a.channel,
                "source_id": a.source_id,
                "case_open_id": a.case_open_id,
                "first_seen_at": now,
                "forwarded": False,
            }
            for a in arrivals
        ]
        keys = list(dict.fromkeys((a.channel, a.source_id) for a in arrivals))
        async with self._engine.begin() as connection:
            if forwarded:
                await connection.execute(_mark_done(forwarded))
            insert = _insert_ignoring_conflicts(self._engine.dialect.name)
            await connection.execute(insert, rows)
            owners = await connection.execute(
                seen_messages.select()
                .with_only_columns(
                    seen_messages.c.channel,
                    seen_messages.c.source_id,
                    seen_messages.c.case_open_id,
                    seen_messages.c.forwarded,
                )
                .where(tuple_(seen_messages.c.channel, seen_messages.c.source_id).in_(keys))
            )
            return {
                (row.channel, row.source_id): Owner(row.case_open_id, row.forwarded)
                for row in owners
            }

    async def mark_forwarded(self, keys: Sequence[Key]) -> None:
        """Note that these keys' forwards are confirmed, so a later copy is only a repeat."""
        if keys:
            async with self._engine.begin() as connection:
                await connection.execute(_mark_done(keys))

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")


def _mark_done(keys: Sequence[Key]) -> Update:
    return (
        update(seen_messages)
        .where(tuple_(seen_messages.c.channel, seen_messages.c.source_id).in_(list(keys)))
        .values(forwarded=True)
    )


def _insert_ignoring_conflicts(dialect: str):
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(seen_messages).on_conflict_do_nothing(
        index_elements=["channel", "source_id"]
    )


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
