"""The dispatcher's handler of case-open: decide a batch in the store, say what to forward.

The runner publishes a batch's forwards and acknowledgement requests and acknowledges its
deliveries in one AMQP transaction. If the process dies before that commit, the broker
discards both and redelivers the input; the store then shows the message as its key's owner
with its forward not done, and it is forwarded again. Once the commit is through, both
happened. That is what keeps "every message forwarded exactly once" true across a SIGKILL,
where confirm-then-ack would leave a window for doubles. The forwards of a batch are marked
done in the store with the next batch's transaction (or when idle), saving a commit.

A transient store error (connection lost, lock timeout, deadlock) makes the batch
`Unavailable`: the runner keeps it in hand and tries again for as long as it lasts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from dispatcher.database import is_transient, text_of
from dispatcher.decide import Decider, Incoming, Key, Outcome
from dispatcher.handling import (
    DeadLetter,
    Delivery,
    Done,
    Later,
    Publish,
    Unavailable,
    Verdict,
    invalid,
)
from dispatcher.incidents import NOTICE_SCHEMA
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from normalizer.acks import ACK_SCHEMA
from normalizer.model import PUBLISH_ID, SCHEMA, CaseOpen

log = structlog.get_logger("dispatcher")

RESENT_HEADER = "x-possible-duplicate"
"""On a forward sent again after its first one may have gone out (see `Outcome.resent`)."""


@dataclass(frozen=True, slots=True)
class Routes:
    """Where forwards go: the cases exchange, the queue of acknowledgement requests, and
    the queue of incident notices (those two through `requests`, an exchange that routes by
    queue name)."""

    exchange: str
    acknowledgements: str | None = None
    incidents: str | None = None
    requests: str = ""


class CaseOpens:
    """Decides case-opens in batches; see the module docstring for the guarantee."""

    def __init__(
        self, store: Store, decider: Decider, settings: DispatcherSettings, routes: Routes
    ) -> None:
        self._store = store
        self._decider = decider
        self._settings = settings
        self._routes = routes
        self._unmarked: list[Key] = []
        self._next_prune = 0.0

    async def handle(self, batch: Sequence[Delivery]) -> list[Verdict]:
        verdicts: list[Verdict | None] = []
        incoming: list[Incoming] = []
        for delivery in batch:
            try:
                case = CaseOpen.model_validate_json(delivery.body)
            except ValidationError as error:
                verdicts.append(DeadLetter(invalid(error, f"{SCHEMA} message")))
                continue
            verdicts.append(None)
            publish_id = delivery.headers.get(PUBLISH_ID)
            incoming.append(
                Incoming(
                    case,
                    delivery.redelivered,
                    str(publish_id) if publish_id else None,
                    held=delivery.held,
                )
            )
        outcomes = iter(await self._decide(incoming))
        decided = [verdict or self._verdict(next(outcomes)) for verdict in verdicts]
        return decided

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        for verdict in verdicts:
            if isinstance(verdict, Done) and isinstance(verdict.note, Outcome):
                _log(verdict.note)
                if verdict.note.forward is not None:
                    self._unmarked.append((verdict.note.case.channel, verdict.note.case.source_id))
        await self._prune_when_due()

    async def idle(self) -> None:
        if self._unmarked:
            await self._decide([])
        await self._prune_when_due()

    async def _decide(self, incoming: Sequence[Incoming]) -> list[Outcome]:
        done = list(self._unmarked)
        try:
            outcomes = await self._decider.decided(self._store, incoming, done)
        except Exception as error:
            if is_transient(error):
                raise Unavailable(f"store: {text_of(error)}") from error
            raise
        del self._unmarked[: len(done)]
        return outcomes

    def _verdict(self, outcome: Outcome) -> Verdict:
        if outcome.later:
            return Later("its customer is being decided by another dispatcher")
        forward = outcome.forward
        if forward is None or forward.dedup is None:
            return Done("repeat", note=outcome)
        assert outcome.body is not None and outcome.routing_key is not None
        publish = [
            Publish(
                outcome.routing_key,
                outcome.body,
                exchange=self._routes.exchange,
                message_id=forward.id,
                headers={
                    "x-schema": SCHEMA,
                    "x-channel": forward.channel,
                    "x-dedup": forward.dedup.verdict,
                    "x-case": forward.dedup.case_id or "",
                    **({RESENT_HEADER: True} if outcome.resent else {}),
                },
            )
        ]
        if outcome.ack is not None and self._routes.acknowledgements:
            publish.append(
                Publish(
                    self._routes.acknowledgements,
                    outcome.ack.to_json(),
                    exchange=self._routes.requests,
                    headers={"x-schema": ACK_SCHEMA, "x-case": outcome.ack.case_id},
                )
            )
        if self._routes.incidents:
            publish.extend(
                Publish(
                    self._routes.incidents,
                    notice,
                    exchange=self._routes.requests,
                    headers={"x-schema": NOTICE_SCHEMA},
                )
                for notice in outcome.notices
            )
        return Done(forward.dedup.verdict, publish, note=outcome)

    async def _prune_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_prune:
            return
        retention = self._settings.retention
        self._next_prune = loop.time() + retention.prune_interval_s
        try:
            pruned = await self._store.prune(retention)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("pruning failed, next time then", error=text_of(error))
            return
        if pruned.messages or pruned.fingerprints or pruned.counters:
            log.info(
                "pruned",
                messages=pruned.messages,
                fingerprints=pruned.fingerprints,
                counters=pruned.counters,
            )


def _log(outcome: Outcome) -> None:
    forward = outcome.forward
    if forward is None or forward.dedup is None:
        log.info(
            "dropped repeat",
            id=outcome.case.id,
            channel=outcome.case.channel,
            source_id=outcome.case.source_id,
            first=outcome.repeat_of,
        )
        return
    log.info(
        "forwarded",
        id=forward.id,
        channel=forward.channel,
        source_id=forward.source_id,
        verdict=forward.dedup.verdict,
        case=forward.dedup.case_id,
        queue=outcome.routing_key,
    )
