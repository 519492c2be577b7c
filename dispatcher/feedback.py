"""Case feedback: the helpdesk tells the dispatcher what became of a case (queue `case-events`).

One JSON object a message (the README shows it): `id` (the helpdesk's event id, which makes
a redelivered event harmless), `case` (C-12), `event` (assigned, resolved, closed, reopened,
participant-added), `at`, and optionally `assignee`, `queue`, `priority`, `participant`
(an identity that may write into the case) and `note`. An event that is not valid, or names
no case we know, goes to the `case-events.dead` queue with the reason.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

import structlog
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.consumer import Tally, no_tally
from dispatcher.database import is_transient
from dispatcher.dead_letters import dead_letter, invalid
from dispatcher.identity import lock_identities, normalise, resolve_sender
from dispatcher.store import Store
from dispatcher.tables import Case, CaseEvent, CaseParticipant
from normalizer.model import Identity

log = structlog.get_logger("dispatcher.feedback")

PREFETCH = 50
ATTEMPTS = 3


class CaseEventMessage(BaseModel):
    """One event from the helpdesk about a case."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="Unique per event.")
    case: str = Field(min_length=1, max_length=50, description="The case reference, e.g. C-12.")
    event: Literal["assigned", "resolved", "closed", "reopened", "participant-added"]
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
    number = event.case[len(prefix) :] if event.case.upper().startswith(prefix.upper()) else ""
    target = session.get(Case, int(number), with_for_update=True) if number.isdigit() else None
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


def _change(session: Session, target: Case, event: CaseEventMessage) -> None:
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


class CaseEvents:
    """Consumes `case-events` while a connection is up; each event in its own transaction."""

    def __init__(
        self, store: Store, prefix: str, queues: tuple[str, str], tally: Tally = no_tally
    ) -> None:
        self._store = store
        self._tally = tally
        self._prefix = prefix
        self._queue, self._dead = queues

    async def session(self, connection: AbstractConnection) -> None:
        """Consume until the connection ends; settle each event after its commit."""
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        transaction = channel.transaction()
        await transaction.select()
        queue = await channel.get_queue(self._queue, ensure=False)
        async with queue.iterator() as deliveries:
            async for message in deliveries:
                outcome, reason = await self._apply(message)
                if reason is not None:
                    await channel.default_exchange.publish(
                        dead_letter(message, reason, self._queue), routing_key=self._dead
                    )
                    log.warning("case event dead-lettered", reason=reason)
                await message.ack()
                await transaction.commit()
                self._tally(outcome, 1)

    async def _apply(self, message: AbstractIncomingMessage) -> tuple[str, str | None]:
        """The outcome (applied, repeat, dead-lettered) and the reason it never will be."""
        try:
            event = CaseEventMessage.model_validate_json(message.body)
        except ValidationError as error:
            return "dead-lettered", invalid(error, "case event")
        failures = 0
        while True:
            try:
                applied = await self._store.run(apply_event, event, self._prefix)
            except EventRejected as error:
                return "dead-lettered", str(error)
            except Exception as error:
                failures += 0 if is_transient(error) else 1
                if failures >= ATTEMPTS:
                    reason = f"failed {ATTEMPTS} times: {type(error).__name__}: {error}"
                    return "dead-lettered", reason[:1000]
                log.warning("case event failed, retrying", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(0.5)
                continue
            log.info("case event", id=event.id, case=event.case, kind=event.event, new=applied)
            return ("applied" if applied else "repeat"), None
