"""Idempotency records: the first request with a key claims it; a repeat finds its answer.

One statement decides, whichever process asks first: an INSERT that does nothing when the key
is held (or takes it over when the record has expired), returning the keys it took; the
records of the others are read in a second. Claims that arrive together are made together
(`claim_many`): one transaction, two statements, for a whole batch of requests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatcher.access.tables import IdempotencyRecord
from dispatcher.access.upsert import dialect_of, insert_for

ACCEPTED = 202


@dataclass(frozen=True, slots=True)
class Claimed:
    """The record in force for a key: ours if `first`, else the earlier request's."""

    case_id: str
    digest: str
    status: int
    created_at: datetime
    first: bool


@dataclass(frozen=True, slots=True)
class Wanted:
    """A request's claim on a key: its digest and the case-open id it would be answered with."""

    key: str
    digest: str
    case_id: str


def claim(
    session: Session, key: str, digest: str, case_id: str, now: datetime, ttl: timedelta
) -> Claimed:
    """Claim `key` for a request with `digest` (answered with `case_id`), or return the
    record an earlier request left, unless that one has expired."""
    return claim_many(session, [Wanted(key, digest, case_id)], now, ttl)[key]


def claim_many(
    session: Session, wanted: list[Wanted], now: datetime, ttl: timedelta
) -> dict[str, Claimed]:
    """Claim every key at once: one INSERT for all (taking over expired records), one SELECT
    for the keys held. The first claim of a key repeated in `wanted` counts."""
    firsts = {want.key: want for want in reversed(wanted)}
    rows = [
        {
            "key": want.key,
            "digest": want.digest,
            "case_id": want.case_id,
            "status": ACCEPTED,
            "created_at": now,
            "expires_at": now + ttl,
        }
        for want in firsts.values()
    ]
    ours = set(session.scalars(_claiming(dialect_of(session)), rows))
    found = {
        key: Claimed(firsts[key].case_id, firsts[key].digest, ACCEPTED, now, first=True)
        for key in ours
    }
    held = [key for key in firsts if key not in ours]
    if held:
        records = session.execute(
            select(
                IdempotencyRecord.key,
                IdempotencyRecord.case_id,
                IdempotencyRecord.digest,
                IdempotencyRecord.status,
                IdempotencyRecord.created_at,
            ).where(IdempotencyRecord.key.in_(held))
        )
        for key, case_id, digest, status, created_at in records:
            found[key] = Claimed(case_id, digest, status, created_at, first=False)
    return found


@functools.cache
def _claiming(dialect: str) -> Any:
    """INSERT the records, taking over expired ones (older than the row's own `created_at`,
    the time of the claim), returning the keys taken."""
    table = IdempotencyRecord.__table__
    insert = insert_for(dialect, table)
    fields = ("digest", "case_id", "status", "created_at", "expires_at")
    return insert.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={name: insert.excluded[name] for name in fields},
        where=table.c.expires_at <= insert.excluded.created_at,
    ).returning(table.c.key)


def prune(session: Session, now: datetime) -> int:
    """Forget expired records."""
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]
