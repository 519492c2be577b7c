"""A batch's decisions, written with one statement per kind of row.

Cases first (messages and events name them), then the messages under their keys, events,
contact counters, acknowledgements sent, and the cases that changed. A message is inserted
under its key only here, with its decision: if another dispatcher recorded one of the keys
since the batch looked, nothing of the batch stays (`KeyTaken` rolls the transaction back)
and the batch is decided again, when that key is a repeat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import String, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import bindparam
from sqlalchemy.types import TypeEngine

from dispatcher.database import insert_rows, with_binary_arrays
from dispatcher.known import CASES, MESSAGES, CaseState
from dispatcher.tables import Acknowledgement, CaseEvent, ContactCount

Row = dict[str, Any]
NO_FACTS: Row = dict.fromkeys(
    ("bucket", "category", "product", "topic", "response_due", "resolution_due")
)


class KeyTaken(Exception):
    """Another dispatcher recorded one of the batch's keys meanwhile: decide the batch again."""


_HIGHEST_CASE = select(func.max(CASES.c.id))


class CaseIds:
    """Numbers for the cases a batch opens, taken as it decides, so that every message of the
    batch can name them (C-12) before they are inserted.

    SQLite: the batch's transaction holds the only write lock, so numbers follow the highest
    case (one query a batch, no gaps). PostgreSQL: from the table's sequence, a block at a
    time, the first `BLOCK` and each after as many as the batch took so far, never more than
    the messages still to decide could use: a batch of 300 that opens 180 cases takes five
    round trips (it took twelve with blocks of 16). Numbers a batch took but did not use are
    gaps, as a rollback leaves them too.
    """

    BLOCK = 16

    def __init__(self, session: Session) -> None:
        self._session = session
        self._postgresql = session.get_bind().dialect.name == "postgresql"
        self._free: list[int] = []
        self._next: int | None = None
        self._taken = 0

    def take(self, could_use: int) -> int:
        """The next number; `could_use` is how many more this batch might open (>= 1)."""
        if not self._postgresql:
            if self._next is None:
                highest = self._session.scalar(_HIGHEST_CASE)
                self._next = (highest or 0) + 1
            self._next += 1
            return self._next - 1
        if not self._free:
            rows = self._session.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence('cases', 'id')) "
                    "FROM generate_series(1, :count)"
                ),
                {"count": max(1, min(could_use, max(self.BLOCK, self._taken)))},
            )
            self._free = sorted(row[0] for row in rows)
            self._taken += len(self._free)
        return self._free.pop(0)


@dataclass
class Writes:
    """The rows a batch adds and the changes it makes, flushed together."""

    messages: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    contacts: Counter[tuple[int, str, date]] = field(default_factory=Counter)
    acknowledgements: list[Row] = field(default_factory=list)

    def event(self, case_id: int, kind: str, at: datetime, case_open_id: str, detail: str) -> None:
        self.events.append(
            {
                "case_id": case_id,
                "kind": kind,
                "at": at,
                "external_id": None,
                "case_open_id": case_open_id,
                "detail": detail[:1000],
            }
        )

    def flush(self, session: Session, cases: list[CaseState]) -> None:
        """Insert and update everything, one statement per kind; raise KeyTaken on a lost key."""
        insert_rows(session, CASES, [_case_row(c) for c in cases if c.new])
        self._insert_messages(session)
        changed = sorted((c for c in cases if c.changed and not c.new), key=lambda c: c.id)
        if changed:
            session.execute(_case_update(), [_case_change(c) for c in changed])
        insert_rows(session, CaseEvent.__table__, self.events)
        if self.contacts:
            _count_contacts(session, self.contacts)
        insert_rows(session, Acknowledgement.__table__, self.acknowledgements)

    def _insert_messages(self, session: Session) -> None:
        if not self.messages:
            return
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            names = tuple(self.messages[0])
            columns = {name: [row[name] for row in self.messages] for name in names}
            inserted = with_binary_arrays(session, _message_unnest(names), columns).all()
        else:
            inserted = session.execute(_message_insert(dialect), self.messages).all()
        if len(inserted) != len(self.messages):
            raise KeyTaken(f"{len(self.messages) - len(inserted)} message key(s) taken meanwhile")


def _dialect(name: str) -> Any:
    return postgresql if name == "postgresql" else sqlite


# The statements are built once per dialect: building them (an upsert's `excluded` alias
# above all) cost more than executing them.


@cache
def _message_insert(dialect: str) -> Any:
    """Messages under their keys; a key another dispatcher took meanwhile inserts nothing."""
    return (
        _dialect(dialect)
        .insert(MESSAGES)
        .on_conflict_do_nothing(index_elements=["channel", "source_id"])
        .returning(MESSAGES.c.id)
    )


@cache
def _message_unnest(names: tuple[str, ...]) -> str:
    """`_message_insert` on PostgreSQL, from one binary array per column: SQLAlchemy renders
    and binds each value of a many-row INSERT in Python (6.4 ms of CPU for a batch of 100
    messages, 0.9 ms so). Text goes as text[]: a cast to varchar(n)[] would cut a value too
    long for its column, where the insert refuses it."""
    types = {name: _array_type(MESSAGES.c[name].type) for name in names}
    arrays = ", ".join(f"CAST(%({name})b AS {types[name]}[])" for name in names)
    return (
        f"INSERT INTO messages ({', '.join(names)}) SELECT * FROM unnest({arrays})"
        " ON CONFLICT (channel, source_id) DO NOTHING RETURNING id"
    )


def _array_type(column_type: TypeEngine[Any]) -> str:
    if isinstance(column_type, String):
        return "TEXT"
    return column_type.compile(dialect=postgresql.dialect())


def _case_row(case: CaseState) -> Row:
    return {
        "id": case.id,
        "customer_id": case.customer_id,
        "status": case.status,
        "queue": case.queue,
        "priority": case.priority,
        "channel": case.channel,
        "subject": case.subject,
        "assignee": None,
        "opened_at": case.opened_at,
        "last_message_at": case.last_message_at,
        "closed_at": case.closed_at,
        "linked_case_id": case.linked_case_id,
        **(case.facts or NO_FACTS),
    }


@cache
def _case_update() -> Any:
    """A case joined by a message: its last message moves on (never back, whoever else
    updated it meanwhile), and a reopened one is open again."""
    columns = CASES.c
    return (
        update(CASES)
        .where(columns.id == bindparam("b_id"))
        .values(
            last_message_at=case(
                (columns.last_message_at < bindparam("b_last"), bindparam("b_last")),
                else_=columns.last_message_at,
            ),
            status=case((bindparam("b_reopen"), "open"), else_=columns.status),
            closed_at=case((bindparam("b_reopen"), None), else_=columns.closed_at),
        )
    )


def _case_change(case_: CaseState) -> Row:
    return {"b_id": case_.id, "b_last": case_.last_message_at, "b_reopen": case_.reopened}


@cache
def _counter_upsert(dialect: str) -> Any:
    """Add to a customer's count of a channel on a day, creating the counter at need."""
    table = ContactCount.__table__
    statement = _dialect(dialect).insert(table)
    return statement.on_conflict_do_update(
        index_elements=["customer_id", "channel", "day"],
        set_={"count": table.c.count + statement.excluded.count},
    )


def _count_contacts(session: Session, counts: Counter[tuple[int, str, date]]) -> None:
    statement = _counter_upsert(session.get_bind().dialect.name)
    rows = [
        {"customer_id": customer, "channel": channel, "day": day, "count": count}
        for (customer, channel, day), count in sorted(counts.items())
    ]
    session.execute(statement, rows)
