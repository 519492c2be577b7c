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
from dispatcher.tables import ContactCount, Message

COUNTED_DAYS = 90
"""The longest history window (`repeat_contact_days` is at most this too)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning removed."""

    messages: int
    fingerprints: int
    counters: int


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
    ) -> Store:
        """Connect and check the schema (raise StoreNotMigrated, or migrate if allowed)."""
        engine = create_engine(url, pool_size, lock_timeout_s)
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

    async def prune(self, retention: RetentionSettings, now: datetime | None = None) -> Pruned:
        """Forget messages older than the retention, and fingerprints older than theirs."""
        return await self.run(prune, retention, now or datetime.now(UTC))


def prune(session: Session, retention: RetentionSettings, now: datetime) -> Pruned:
    """Delete old dedup records; blank old fingerprints (level 2 no longer needs them);
    delete contact counters older than the longest history window."""
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
    return Pruned(
        messages.rowcount,  # type: ignore[attr-defined]
        fingerprints.rowcount,  # type: ignore[attr-defined]
        counters.rowcount,  # type: ignore[attr-defined]
    )
