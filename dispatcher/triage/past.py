"""The messages the store holds, as `rules replay` reads them: oldest first, since a moment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.tables import Message
from normalizer.model import CaseOpen

BATCH = 500


def past_messages(session: Session, since: datetime) -> list[tuple[CaseOpen, bool]]:
    """(message as forwarded, is a follow-up or duplicate) for every kept message since then."""
    return list(_read(session, since))


def _read(session: Session, since: datetime) -> Iterator[tuple[CaseOpen, bool]]:
    rows = session.execute(
        select(Message.body, Message.verdict)
        .where(Message.received_at >= since, Message.body.is_not(None))
        .order_by(Message.received_at, Message.id)
        .execution_options(yield_per=BATCH)
    )
    for body, verdict in rows:
        try:
            yield CaseOpen.model_validate_json(body), verdict != "new"
        except ValidationError:
            continue  # written by an older schema: nothing to compare against
