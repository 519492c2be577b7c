"""What a queue's handler gets and gives back; the consumer runner (`ingest.runner`) does the rest.

A handler is plain: a batch of deliveries in, one verdict per delivery out, in order. It never
sees the broker. The runner publishes what a `Done` asks for, dead-letters with the reason,
puts a `Retry` back after a backoff (and dead-letters it once the attempts are used up), and
acknowledges; with a transaction, a batch's publishes and acknowledgements commit together.

    Done(outcome, publish)   handled; publish these, then acknowledge (outcome is counted)
    DeadLetter(reason)       can never be handled: kept in the dead letters with the reason
    Retry(reason, after_s)   not now (a relay is down): back on the queue after a backoff
    Later(reason)            not in this batch: kept in hand, first in the next batch

A handler raises `Unavailable` when nothing of the batch can be handled now (the store is
unreachable): the runner waits and hands the same batch again. Any other exception is taken
for a poison message: the runner hands the deliveries one at a time to find it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as delivered: its body, its properties, and how often it came before."""

    body: bytes
    message_id: str | None = None
    headers: Mapping[str, object] = field(default_factory=dict)
    redelivered: bool = False
    attempt: int = 1
    """1 for the first delivery; quorum queues count the earlier ones (x-delivery-count)."""
    held: bool = False
    """Handed before and kept back (`Later`): the handler should not put it off again."""


@dataclass(frozen=True, slots=True)
class Publish:
    """A message to publish before the delivery is acknowledged (persistent, JSON)."""

    routing_key: str
    body: bytes
    exchange: str = ""
    message_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    """Handled: publish these, then acknowledge; `outcome` names it for the metrics, `note`
    is the handler's own, given back to it with `committed`."""

    outcome: str
    publish: Sequence[Publish] = ()
    note: object = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Never to be handled: dead-lettered with the reason, then acknowledged."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Not now: requeued after a backoff (at least `after_s` when given)."""

    reason: str
    after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Later:
    """Not in this batch: kept in hand, unacknowledged, and handed first in the next batch
    (with `Delivery.held`), in the order it came."""

    reason: str


Verdict = Done | DeadLetter | Retry | Later


class Unavailable(Exception):
    """Nothing of the batch can be handled now (the store is unreachable); the message says
    why. The same batch is handed again after a backoff, for as long as it lasts."""


class Handler(Protocol):
    """What the runner feeds: `handle` a batch; `committed` with the verdicts once they are
    carried out (published and acknowledged); `idle` when nothing arrived for a while."""

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Verdict]: ...

    async def committed(self, verdicts: Sequence[Verdict]) -> None: ...

    async def idle(self) -> None: ...


def invalid(error: ValidationError, what: str) -> str:
    """A validation error as a dead letter's reason: the first few fields and why."""
    problems = [
        f"{'.'.join(str(p) for p in item['loc']) or '(body)'}: {item['msg']}"
        for item in error.errors(include_url=False)[:5]
    ]
    return f"not a valid {what}: " + "; ".join(problems)
