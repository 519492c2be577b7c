"""Rate counts shared by the channels processes: fixed windows, summed in the store.

Each process counts in memory and adds what it counted every half second, in one statement
for every bucket (`add`); the statement returns the totals, so each process also learns what
the others counted. A bucket a process meets for the first time in a window is read at once
(`read`), so a client moving to another process starts from its true count.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatcher.access.tables import RateCount
from dispatcher.access.upsert import dialect_of, insert_for

Bucket = tuple[str, int]
"""A bucket name ("key:shop", "client:192.0.2.7") and the start of its window."""


def add(session: Session, counted: dict[Bucket, int]) -> dict[Bucket, int]:
    """Add the counts to the store's; return the totals after adding."""
    if not counted:
        return {}
    rows = session.execute(
        _adding(dialect_of(session)),
        [{"bucket": b, "window": w, "count": n} for (b, w), n in counted.items()],
    )
    return {(bucket, window): count for bucket, window, count in rows}


@functools.cache
def _adding(dialect: str) -> Any:
    table = RateCount.__table__
    insert = insert_for(dialect, table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.bucket, table.c.window],
        set_={"count": table.c.count + insert.excluded.count},
    ).returning(table.c.bucket, table.c.window, table.c.count)


def read(session: Session, bucket: Bucket) -> int:
    """The count of one bucket in one window (0 when nobody counted it yet)."""
    name, window = bucket
    found = session.scalar(
        select(RateCount.count).where(RateCount.bucket == name, RateCount.window == window)
    )
    return found or 0


def prune(session: Session, before: int) -> int:
    """Forget windows that started before `before` (Unix seconds)."""
    result = session.execute(delete(RateCount).where(RateCount.window < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
