"""Case feedback: the helpdesk tells the dispatcher what became of a case (queue `case-events`).

One JSON object a message (the README shows it): `id` (the helpdesk's event id, which makes
a redelivered event harmless), `case` (C-12), `event` (assigned, responded, resolved, closed,
reopened, participant-added), `at`, and optionally `assignee`, `queue`, `priority`, `participant`
(an identity that may write into the case) and `note`. An event that is not valid, or names
no case we know, goes to the `case-events.dead` queue with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from dispatcher.database import is_transient, text_of
from dispatcher.handling import DeadLetter, Delivery, Done, Unavailable, Verdict, invalid
from dispatcher.identity import lock_identities, normalise, resolve_sender
from dispatcher.known import case_number
from dispatcher.store import Store
from dispatcher.tables import Case, CaseEvent, CaseParticipant
from normalizer.model import Identity

log = structlog.get_logger("dispatcher.feedback")


class CaseEventMessage(BaseModel):
    """One event from the helpdesk about a case."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="Unique per event.")
    case: str = Field(min_length=1, max_length=50, description="The case reference, e.g. C-12.")
    event: Literal["assigned", "responded", "resolved", "closed", "reopened", "participant-added"]
    at: AwareDatetime
    assignee: str | None = Field(default=None, max_length=200)
    queue: str | None = Field(default=None, min_length=1, max_length=200)
    priority: str | None = Field(default=None, max_length=20)
    participant: Identity | None = None
    note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _participant_given(self) -> CaseEventMessage:
        if self.event == "participant-added" and self.participant is None:
            raise ValueError("participant-added needs a participant")
        return self


class EventRejected(Exception):
    """The event can never be applied (no such case); the message says why."""


def apply_event(session: Session, event: CaseEventMessage, prefix: str) -> bool:
    """Apply one event to its case; False when this event id was applied before."""
    seen = session.scalars(select(CaseEvent.id).where(CaseEvent.external_id == event.id)).first()
    if seen is not None:
        return False
    number = case_number(event.case, prefix)
    # FOR NO KEY UPDATE: a dispatcher inserting a message of this case (its foreign key
    # check) goes on meanwhile.
    target = None if number is None else session.get(Case, number, with_for_update=NO_KEY)
    if target is None:
        raise EventRejected(f"no case {event.case}")
    _change(session, target, event)
    session.add(
        CaseEvent(
            case_id=target.id,
            kind=event.event,
            at=event.at,
            external_id=event.id,
            detail=(event.note or event.assignee or None),
        )
    )
    return True


RESPONSES = ("responded", "resolved", "closed")
"""Events that answer the customer: the first of them is the case's first response."""


def _change(session: Session, target: Case, event: CaseEventMessage) -> None:
    if event.event in RESPONSES and (
        target.first_response_at is None or event.at < target.first_response_at
    ):
        target.first_response_at = event.at
    if event.queue:
        target.queue = event.queue
    if event.priority:
        target.priority = event.priority
    if event.event == "assigned":
        target.assignee = event.assignee
        if target.status == "open":
            target.status = "assigned"
    elif event.event in ("resolved", "closed"):
        target.status, target.closed_at = event.event, event.at
    elif event.event == "reopened":
        target.status, target.closed_at = ("assigned" if target.assignee else "open"), None
    elif event.participant is not None:
        key = normalise(event.participant.kind, event.participant.address)
        lock_identities(session, [key])
        customer = resolve_sender(session, key, None, datetime.now(UTC))
        if session.get(CaseParticipant, (target.id, customer)) is None:
            session.add(CaseParticipant(case_id=target.id, customer_id=customer))


NO_KEY = {"key_share": True}
"""FOR NO KEY UPDATE on PostgreSQL: the case changes, not its id."""


def apply_events(
    session: Session, events: Sequence[CaseEventMessage], prefix: str
) -> list[bool | str]:
    """Apply events in order: True when applied, False when applied before, or the reason
    an event can never be applied (it changes nothing then).

    What the events change is locked first, in the order a dispatcher locks it (the
    participants' identities, then the cases by id): taken event by event, a batch of
    events and a dispatcher's batch that joins messages to the same cases could each hold
    one the other waits for."""
    lock_identities(
        session,
        [normalise(e.participant.kind, e.participant.address) for e in events if e.participant],
    )
    numbers = sorted({n for e in events if (n := case_number(e.case, prefix)) is not None})
    if numbers:
        session.execute(_LOCK_CASES, {"ids": numbers})
    results: list[bool | str] = []
    for event in events:
        try:
            results.append(apply_event(session, event, prefix))
        except EventRejected as error:
            results.append(str(error))
    return results


_LOCK_CASES = (
    select(Case.id)
    .where(Case.id.in_(bindparam("ids", expanding=True)))
    .order_by(Case.id)
    .with_for_update(**NO_KEY)
)


class CaseEvents:
    """The handler of `case-events`: a batch applied in one store transaction."""

    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    async def handle(self, batch: Sequence[Delivery]) -> list[Verdict]:
        verdicts: list[Verdict | CaseEventMessage] = []
        for delivery in batch:
            try:
                verdicts.append(CaseEventMessage.model_validate_json(delivery.body))
            except ValidationError as error:
                verdicts.append(DeadLetter(invalid(error, "case event")))
        events = [v for v in verdicts if isinstance(v, CaseEventMessage)]
        try:
            results = iter(await self._store.run(apply_events, events, self._prefix))
        except Exception as error:
            if is_transient(error):
                raise Unavailable(f"store: {text_of(error)}") from error
            raise
        return [
            _verdict(verdict, next(results)) if isinstance(verdict, CaseEventMessage) else verdict
            for verdict in verdicts
        ]

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        for verdict in verdicts:
            if isinstance(verdict, Done) and isinstance(verdict.note, CaseEventMessage):
                event = verdict.note
                new = verdict.outcome == "applied"
                log.info("case event", id=event.id, case=event.case, kind=event.event, new=new)

    async def idle(self) -> None:
        return None


def _verdict(event: CaseEventMessage, result: bool | str) -> Verdict:
    if isinstance(result, str):
        return DeadLetter(result)
    return Done("applied" if result else "repeat", note=event)
