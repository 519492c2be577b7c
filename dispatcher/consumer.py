"""The dispatcher's consume loop: case-open in, dedup in the store, forward, ack, in batches.

Forwards and acks of a batch go out in one AMQP transaction on the consuming channel. If the
process dies before `tx.commit`, the broker discards both and redelivers the input; the store
then shows the message as its key's owner with its forward not done, and it is forwarded
again. Once the commit is through, both happened. That is what keeps "every message forwarded
exactly once" true across a SIGKILL, where confirm-then-ack would leave a window for doubles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
import structlog
from aio_pika import DeliveryMode
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractTransaction,
)
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.settings import DispatcherSettings
from dispatcher.store import Arrival, Key, Owner, Store
from normalizer.model import SCHEMA, CaseOpen, Dedup, Triage

log = structlog.get_logger("dispatcher")

REASON_HEADER = "x-ingest-reason"
IDLE_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Routes:
    """The broker names the dispatcher reads from and writes to."""

    inbound: str
    exchange: str
    default_queue: str
    dead_letters: str


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What one batch came to: forwards, repeats dropped, and rejects with their reasons."""

    forward: list[CaseOpen]
    repeats: list[tuple[CaseOpen, str]]
    rejects: list[tuple[AbstractIncomingMessage, str]]


class Dispatcher:
    """Consumes case-open while a connection is up; `stop()` finishes the batch in hand."""

    def __init__(self, store: Store, settings: DispatcherSettings, routes: Routes) -> None:
        self._store = store
        self._settings = settings
        self._routes = routes
        self._stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.store_error: str | None = None
        self._unmarked: list[Key] = []

    def readiness(self) -> str | None:
        """None when the store answers, else the last store error (for /readyz)."""
        return self.store_error

    def stop(self) -> None:
        """Take no new batch; the one in hand is finished first."""
        self._stopping.set()

    async def session(self, connection: AbstractConnection) -> None:
        """Consume until stopped or until the connection fails."""
        self.idle.clear()
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        transaction = channel.transaction()
        await transaction.select()
        queue = await channel.get_queue(self._routes.inbound, ensure=False)
        exchange = await channel.get_exchange(self._routes.exchange, ensure=False)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False)
        log.info("dispatcher consuming", queue=self._routes.inbound)
        try:
            while not self._stopping.is_set():
                batch = await self._collect(inbox)
                if batch:
                    await self._handle(batch, channel, transaction, exchange)
                elif self._unmarked:
                    await self._record([])
            await queue.cancel(tag)
        finally:
            self.idle.set()
        log.info("dispatcher stopped consuming")
        await asyncio.Event().wait()  # parked: unacked deliveries return when the channel closes

    async def _collect(
        self, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> list[AbstractIncomingMessage]:
        """Wait for one delivery, then take what has piled up meanwhile (up to a batch).

        Under load the next batch fills while this one is handled, so batches grow with the
        load without waiting; `batch_wait_ms` can add a wait for fuller batches.
        """
        try:
            batch = [await asyncio.wait_for(inbox.get(), IDLE_POLL_S)]
        except TimeoutError:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.batch_wait_ms / 1000
        while len(batch) < self._settings.batch_size:
            if not inbox.empty():
                batch.append(inbox.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _handle(
        self,
        batch: Sequence[AbstractIncomingMessage],
        channel: AbstractChannel,
        transaction: AbstractTransaction,
        exchange: AbstractExchange,
    ) -> None:
        verdicts = await self._decide(batch)
        if verdicts is None:  # the store kept failing: hand the batch back, counted by the broker
            await batch[-1].nack(multiple=True, requeue=True)
            await transaction.commit()
            return
        for case in verdicts.forward:
            await exchange.publish(
                _forward(case, self._routes), routing_key=self._routes.default_queue
            )
        for message, reason in verdicts.rejects:
            await channel.default_exchange.publish(
                _dead_letter(message, reason, self._routes.inbound),
                routing_key=self._routes.dead_letters,
            )
        await batch[-1].ack(multiple=True)  # the batch is every delivery not yet settled
        await transaction.commit()
        self._after_commit(verdicts)

    def _after_commit(self, verdicts: Verdicts) -> None:
        for case in verdicts.forward:
            log.info(
                "forwarded",
                id=case.id,
                channel=case.channel,
                source_id=case.source_id,
                queue=self._routes.default_queue,
            )
        for case, owner in verdicts.repeats:
            log.info(
                "dropped repeat",
                id=case.id,
                channel=case.channel,
                source_id=case.source_id,
                first=owner,
            )
        for message, reason in verdicts.rejects:
            log.warning("dead-lettered", message_id=message.message_id, reason=reason)
        # Marked done with the next batch's store transaction (or when idle), saving a commit.
        self._unmarked.extend((case.channel, case.source_id) for case in verdicts.forward)

    async def _decide(self, batch: Sequence[AbstractIncomingMessage]) -> Verdicts | None:
        cases: list[CaseOpen] = []
        rejects: list[tuple[AbstractIncomingMessage, str]] = []
        for message in batch:
            try:
                cases.append(CaseOpen.model_validate_json(message.body))
            except ValidationError as error:
                rejects.append((message, _describe(error)))
        owners = await self._record(cases)
        if owners is None:
            return None
        forward: dict[str, CaseOpen] = {}
        repeats: list[tuple[CaseOpen, str]] = []
        for case in cases:
            owner = owners[(case.channel, case.source_id)]
            if owner.case_open_id == case.id and not owner.forwarded and case.id not in forward:
                forward[case.id] = case
            else:
                repeats.append((case, owner.case_open_id))
        return Verdicts(list(forward.values()), repeats, rejects)

    async def _record(self, cases: Sequence[CaseOpen]) -> dict[Key, Owner] | None:
        arrivals = [Arrival(c.channel, c.source_id, c.id) for c in cases]
        for attempt in range(1, self._settings.attempts + 1):
            try:
                owners = await self._store.record(arrivals, self._unmarked)
            except SQLAlchemyError as error:
                self.store_error = f"{type(error).__name__}: {error}"
                log.warning("store error, retrying", attempt=attempt, error=self.store_error)
                await asyncio.sleep(0.5 * attempt)
                continue
            self.store_error = None
            self._unmarked.clear()
            return owners
        return None


def _forward(case: CaseOpen, routes: Routes) -> aio_pika.Message:
    enriched = case.model_copy(
        update={
            "dedup": Dedup(verdict="new", reason="first message with this channel and source id"),
            "triage": Triage(
                queue=routes.default_queue, reason="no triage rules yet: the default queue"
            ),
        }
    )
    return aio_pika.Message(
        enriched.to_json(),
        message_id=case.id,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT,
        headers={"x-schema": SCHEMA, "x-channel": case.channel},
    )


def _dead_letter(message: AbstractIncomingMessage, reason: str, origin: str) -> aio_pika.Message:
    headers = dict(message.headers or {})
    headers[REASON_HEADER] = reason[:1000]
    headers["x-ingest-origin"] = origin
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        headers=headers,
    )


def _describe(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in item['loc']) or '(body)'}: {item['msg']}"
        for item in error.errors(include_url=False)[:5]
    ]
    return f"not a valid {SCHEMA} message: " + "; ".join(problems)
