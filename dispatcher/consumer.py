"""The dispatcher's consume loop: case-open in, decide in the store, forward, ack, in batches.

Forwards and acks of a batch go out in one AMQP transaction on the consuming channel. If the
process dies before `tx.commit`, the broker discards both and redelivers the input; the store
then shows the message as its key's owner with its forward not done, and it is forwarded
again. Once the commit is through, both happened. That is what keeps "every message forwarded
exactly once" true across a SIGKILL, where confirm-then-ack would leave a window for doubles.

A transient store error (connection lost, lock timeout, deadlock) is retried with the batch in
hand, unacknowledged, for as long as it lasts. Any other error is taken as a poison message:
the batch is retried one message at a time, and a message that fails `attempts` times goes to
the dead-letter queue with the error as its reason; the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
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
from sqlalchemy.exc import DBAPIError

from dispatcher.database import is_transient
from dispatcher.dead_letters import dead_letter, invalid
from dispatcher.decide import Decider, Incoming, Key, Outcome
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from normalizer.acks import ACK_SCHEMA, AckRequest
from normalizer.model import SCHEMA, CaseOpen

log = structlog.get_logger("dispatcher")

IDLE_POLL_S = 0.25

Tally = Callable[[str, int], None]
"""Counts settled deliveries by outcome (`tally("repeat", 3)`), after they are settled."""


def no_tally(outcome: str, count: int) -> None:
    """The tally of a consumer nobody counts."""


@dataclass(frozen=True, slots=True)
class Routes:
    """The broker names the dispatcher reads from and writes to."""

    inbound: str
    exchange: str
    dead_letters: str
    acknowledgements: str | None = None


@dataclass(frozen=True, slots=True)
class Verdicts:
    """What one batch came to: forwards, repeats dropped, and rejects with their reasons."""

    forward: list[Outcome]
    repeats: list[Outcome]
    rejects: list[tuple[AbstractIncomingMessage, str]]


class StoreUnavailable(Exception):
    """The store kept failing with transient errors until the dispatcher was told to stop."""


class Dispatcher:
    """Consumes case-open while a connection is up; `stop()` finishes the batch in hand."""

    def __init__(
        self,
        store: Store,
        decider: Decider,
        settings: DispatcherSettings,
        routes: Routes,
        tally: Tally = no_tally,
    ) -> None:
        self._store = store
        self._tally = tally
        self._decider = decider
        self._settings = settings
        self._routes = routes
        self._stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.store_error: str | None = None
        self._unmarked: list[Key] = []
        self._next_prune = 0.0

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
                await self._prune_when_due()
                batch = await self._collect(inbox)
                if batch:
                    await self._handle(batch, channel, transaction, exchange)
                elif self._unmarked:
                    await self._decide_in_store([])
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
        try:
            verdicts = await self._decide(batch)
        except StoreUnavailable:  # stopping: the deliveries go back when the channel closes
            return
        for outcome in verdicts.forward:
            assert outcome.forward is not None and outcome.routing_key is not None
            await exchange.publish(_forward(outcome), routing_key=outcome.routing_key)
            if outcome.ack is not None and self._routes.acknowledgements:
                await channel.default_exchange.publish(
                    _acknowledgement(outcome.ack), routing_key=self._routes.acknowledgements
                )
        for message, reason in verdicts.rejects:
            await channel.default_exchange.publish(
                dead_letter(message, reason, self._routes.inbound),
                routing_key=self._routes.dead_letters,
            )
        await batch[-1].ack(multiple=True)  # the batch is every delivery not yet settled
        await transaction.commit()
        self._after_commit(verdicts)

    def _after_commit(self, verdicts: Verdicts) -> None:
        settled: Counter[str] = Counter()
        for outcome in verdicts.forward:
            assert outcome.forward is not None and outcome.forward.dedup is not None
            settled[outcome.forward.dedup.verdict] += 1
            log.info(
                "forwarded",
                id=outcome.case.id,
                channel=outcome.case.channel,
                source_id=outcome.case.source_id,
                verdict=outcome.forward.dedup.verdict,
                case=outcome.forward.dedup.case_id,
                queue=outcome.routing_key,
            )
        for outcome in verdicts.repeats:
            log.info(
                "dropped repeat",
                id=outcome.case.id,
                channel=outcome.case.channel,
                source_id=outcome.case.source_id,
                first=outcome.repeat_of,
            )
        for message, reason in verdicts.rejects:
            log.warning("dead-lettered", message_id=message.message_id, reason=reason)
        settled.update({"repeat": len(verdicts.repeats), "dead-lettered": len(verdicts.rejects)})
        for outcome, count in settled.items():
            if count:
                self._tally(outcome, count)
        # Marked done with the next batch's store transaction (or when idle), saving a commit.
        self._unmarked.extend((o.case.channel, o.case.source_id) for o in verdicts.forward)

    async def _decide(self, batch: Sequence[AbstractIncomingMessage]) -> Verdicts:
        parsed: list[tuple[AbstractIncomingMessage, Incoming]] = []
        rejects: list[tuple[AbstractIncomingMessage, str]] = []
        for message in batch:
            try:
                case = CaseOpen.model_validate_json(message.body)
            except ValidationError as error:
                rejects.append((message, invalid(error, f"{SCHEMA} message")))
                continue
            parsed.append((message, Incoming(case, bool(message.redelivered))))
        incoming = [item for _, item in parsed]
        try:
            outcomes = await self._decide_in_store(incoming)
        except StoreUnavailable:
            raise
        except Exception as error:
            log.warning("batch failed, retrying one message at a time", error=_text(error))
            outcomes, poisoned = await self._one_by_one(parsed)
            rejects.extend(poisoned)
        forward = [o for o in outcomes if o.forward is not None]
        repeats = [o for o in outcomes if o.forward is None]
        return Verdicts(forward, repeats, rejects)

    async def _one_by_one(
        self, parsed: Sequence[tuple[AbstractIncomingMessage, Incoming]]
    ) -> tuple[list[Outcome], list[tuple[AbstractIncomingMessage, str]]]:
        """Find the poison: each message in its own transaction, `attempts` tries each."""
        outcomes: list[Outcome] = []
        poisoned: list[tuple[AbstractIncomingMessage, str]] = []
        for message, item in parsed:
            for attempt in range(1, self._settings.attempts + 1):
                try:
                    outcomes.extend(await self._decide_in_store([item]))
                    break
                except StoreUnavailable:
                    raise
                except Exception as error:
                    failure = _text(error)
                    log.warning(
                        "message failed",
                        id=item.case.id,
                        attempt=attempt,
                        error=failure,
                        exc_info=error,
                    )
            else:
                attempts = self._settings.attempts
                poisoned.append((message, f"failed {attempts} times in the dispatcher: {failure}"))
        return outcomes, poisoned

    async def _decide_in_store(self, incoming: Sequence[Incoming]) -> list[Outcome]:
        """Decide in one transaction; transient errors are retried until they pass or we stop."""
        attempt = 0
        while True:
            done = list(self._unmarked)
            try:
                outcomes = await self._decider.decided(self._store, incoming, done)
            except Exception as error:
                if not is_transient(error):
                    raise
                attempt += 1
                self.store_error = _text(error)
                log.warning("store error, retrying", attempt=attempt, error=self.store_error)
                if self._stopping.is_set():
                    raise StoreUnavailable(self.store_error) from error
                await asyncio.sleep(min(0.2 * attempt, 5.0))
                continue
            self.store_error = None
            del self._unmarked[: len(done)]
            return outcomes

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
            log.warning("pruning failed, next time then", error=_text(error))
            return
        if pruned.messages or pruned.fingerprints or pruned.counters:
            log.info(
                "pruned",
                messages=pruned.messages,
                fingerprints=pruned.fingerprints,
                counters=pruned.counters,
            )


def _forward(outcome: Outcome) -> aio_pika.Message:
    enriched = outcome.forward
    assert enriched is not None and enriched.dedup is not None and outcome.body is not None
    return aio_pika.Message(
        outcome.body,
        message_id=enriched.id,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT,
        headers={
            "x-schema": SCHEMA,
            "x-channel": enriched.channel,
            "x-dedup": enriched.dedup.verdict,
            "x-case": enriched.dedup.case_id or "",
        },
    )


def _acknowledgement(request: AckRequest) -> aio_pika.Message:
    return aio_pika.Message(
        request.to_json(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT,
        headers={"x-schema": ACK_SCHEMA, "x-case": request.case_id},
    )


def _text(error: BaseException) -> str:
    """One line: the exception's type and message (a driver error without its SQL)."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"[:1000]
