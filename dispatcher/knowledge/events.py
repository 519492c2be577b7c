"""The handler of `kb-events`: articles the contact form showed, and contacts it deflected.

A batch is applied in one transaction: the deflections inserted (one statement; an event id
seen before is skipped, so a redelivered deflection counts once), then the counters added
(one statement). "shown" counts are at least once: a crash between the commit and the
broker's acknowledgement counts that batch's showings again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.database import is_transient, text_of
from dispatcher.handling import DeadLetter, Delivery, Done, Unavailable, Verdict, invalid
from dispatcher.knowledge.stats import add_counts, utc_day
from dispatcher.store import Store
from dispatcher.tables import Deflection
from normalizer.kb_event import KB_EVENT_SCHEMA, KbEvent


class KbEvents:
    """Applies kb-event/1 messages to the knowledge-base counters and deflections."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def handle(self, batch: Sequence[Delivery]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        events: list[KbEvent] = []
        for delivery in batch:
            try:
                event = KbEvent.model_validate_json(delivery.body)
            except ValidationError as error:
                verdicts.append(DeadLetter(invalid(error, f"{KB_EVENT_SCHEMA} message")))
                continue
            events.append(event)
            verdicts.append(Done("applied"))
        if events:
            try:
                await self._store.run(apply_events, events)
            except Exception as error:
                if is_transient(error):
                    raise Unavailable(f"store: {text_of(error)}") from error
                raise
        return verdicts

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        return None

    async def idle(self) -> None:
        return None


def apply_events(session: Session, events: Sequence[KbEvent]) -> None:
    """Insert the deflections not seen before, then add every count."""
    accepted = [event for event in events if event.event == "accepted"]
    inserted: set[str] = set()
    if accepted:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        table = Deflection.__table__
        statement: Any = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(table.c.event_id)
        )
        rows = [
            {
                "event_id": event.id,
                "at": event.at,
                "article_id": event.articles[0],
                "language": event.language,
                "touchpoint": event.touchpoint,
                "answer": event.answer,
            }
            for event in accepted
        ]
        inserted = {row[0] for row in session.execute(statement, rows)}
    counts: Counter[tuple[str, str, date]] = Counter()
    for event in events:
        if event.event == "accepted" and event.id not in inserted:
            continue
        for article in event.articles:
            counts[(article, event.event, utc_day(event.at))] += 1
    add_counts(session, counts)
