"""The dispatcher's SQL store: opened only when migrated, then one transaction per unit of work.

What the tables mean is in `dispatcher.tables`; what a batch does in its transaction is in
`dispatcher.decide`. This module opens and checks the database, runs work in transactions
and prunes what retention lets go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, text, update
from sqlalchemy.orm import Session

from dispatcher.database import check_migrated, create_engine, in_transaction
from dispatcher.settings import RetentionSettings
from dispatcher.tables import (
    Case,
    ContactCount,
    Customer,
    Identity,
    IncidentBand,
    IncidentMessage,
    Message,
)

COUNTED_DAYS = 90
"""The longest history window (`repeat_contact_days` is at most this too)."""
BANDS_DAYS = 7
"""Incident bands only find neighbours within the window (at most 7 days): older ones go.
The incidents and their messages stay for `ingest incidents`, as long as messages do."""

WRITTEN_EVERY_BATCH = (Message, Customer, Identity, Case, ContactCount)
"""The tables a batch of case-opens writes: a lock on one of them stalls the dispatcher."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning removed."""

    messages: int
    fingerprints: int
    counters: int
    incident_bands: int = 0


class Store:
    """The open database; `run(work, ...)` runs synchronous ORM work in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    async def open(
        cls,
        url: str,
        auto_migrate: bool = False,
        pool_size: int = 5,
        lock_timeout_s: float = 10.0,
        statement_timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
    ) -> Store:
        """Connect and check the schema (raise StoreNotMigrated, or migrate if allowed)."""
        engine = create_engine(
            url, pool_size, lock_timeout_s, statement_timeout_s, connect_timeout_s
        )
        try:
            await asyncio.to_thread(check_migrated, engine, url, auto_migrate)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Release every connection."""
        await asyncio.to_thread(self.engine.dispose)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(session, *args)` in one transaction, committed when it returns."""
        return await in_transaction(self.engine, work, *args)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        await self.run(lambda session: session.execute(text("SELECT 1")))

    def check(self, timeout_s: float) -> None:
        """Raise unless the store answers and the dispatcher could write its tables now: on
        PostgreSQL, take (and give back at once) the lock a batch's writes take on them,
        waiting at most `timeout_s` for a lock held elsewhere. On SQLite, read the file
        without a transaction: the single writer's lock is the dispatcher's own whenever it
        is busy, and waiting for it would report a busy store as not ready.
        Blocking: run it in a thread."""
        if self.engine.dialect.name != "postgresql":
            connection = self.engine.raw_connection()
            try:
                connection.cursor().execute("SELECT count(*) FROM sqlite_master").fetchall()
            finally:
                connection.close()
            return
        with self.engine.connect() as connection, connection.begin() as transaction:
            limit = max(1, round(timeout_s * 1000))
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {limit}")
            # Later than the lock's, so that a lock is reported as one.
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {limit + 500}")
            tables = ", ".join(table.__tablename__ for table in WRITTEN_EVERY_BATCH)
            connection.exec_driver_sql(f"LOCK TABLE {tables} IN ROW EXCLUSIVE MODE")
            transaction.rollback()

    async def prune(self, retention: RetentionSettings, now: datetime | None = None) -> Pruned:
        """Forget messages older than the retention, and fingerprints older than theirs."""
        return await self.run(prune, retention, now or datetime.now(UTC))


def prune(session: Session, retention: RetentionSettings, now: datetime) -> Pruned:
    """Delete old dedup records; blank old fingerprints (level 2 no longer needs them);
    delete contact counters older than the longest history window, incident bands older
    than the longest incident window, and incident messages as old as dedup records."""
    messages = session.execute(
        delete(Message).where(Message.received_at < now - timedelta(days=retention.message_days))
    )
    fingerprints = session.execute(
        update(Message)
        .where(
            Message.fingerprint.is_not(None),
            Message.received_at < now - timedelta(hours=retention.fingerprint_h),
        )
        .values(fingerprint=None)
    )
    oldest_day = now.astimezone(UTC).date() - timedelta(days=COUNTED_DAYS)
    counters = session.execute(delete(ContactCount).where(ContactCount.day < oldest_day))
    bands = session.execute(
        delete(IncidentBand).where(IncidentBand.received_at < now - timedelta(days=BANDS_DAYS))
    )
    session.execute(
        delete(IncidentMessage).where(
            IncidentMessage.received_at < now - timedelta(days=retention.message_days)
        )
    )
    return Pruned(
        messages.rowcount,  # type: ignore[attr-defined]
        fingerprints.rowcount,  # type: ignore[attr-defined]
        counters.rowcount,  # type: ignore[attr-defined]
        bands.rowcount,  # type: ignore[attr-defined]
    )
