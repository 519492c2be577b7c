"""The one consumer runner: every queue consumer of the daemon is a handler fed by it.

A broker session per connection: a channel (in transaction mode when the consumer needs its
publishes and acknowledgements to commit together), the prefetch, one consumer per queue.
Deliveries are handed to the handler in batches: one waits, then whatever piled up meanwhile,
so batches grow with the load. The verdicts are carried out in order: publishes, dead letters
with the reason (`x-ingest-reason`), acknowledgements, then the commit.

- The handler raises `Unavailable` (the store is down): the batch stays in hand,
  unacknowledged, and is handed again after a backoff for as long as it lasts; /readyz says
  why meanwhile. When told to stop, the batch is left to go back to the queue.
- Any other exception is a poison message: the batch is handed one delivery at a time, each
  `attempts` times at most, and one that keeps failing is dead-lettered with the error.
- `Retry` puts a delivery back on the queue after a backoff (at least the handler's hint);
  the last attempt the queue allows is dead-lettered here with the reason, never by the
  broker without one.
- `Later` keeps a delivery in hand, unacknowledged, and hands it first in the next batch.

`stop()` takes no new batch and lets the one in hand finish; waits for a retry end at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aio_pika
import aiormq
import structlog
from aio_pika import DeliveryMode
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from pamqp.commands import Basic

from dispatcher.handling import (
    DeadLetter,
    Delivery,
    Done,
    Handler,
    Later,
    Publish,
    Retry,
    Unavailable,
    Verdict,
)

log = structlog.get_logger("ingest.runner")

PERSISTENT = DeliveryMode.PERSISTENT.value

IDLE_POLL_S = 0.25
REASON_HEADER = "x-ingest-reason"
ORIGIN_HEADER = "x-ingest-origin"
ATTEMPTS_HEADER = "x-ingest-attempts"
MAX_REASON = 1000


class Tally(Protocol):
    """Counts what a consumer settled, once it is committed."""

    def settled(self, outcome: str, count: int) -> None: ...

    def dead_lettered(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Consuming:
    """How one consumer takes its queue(s): names, batches, retries and dead letters."""

    name: str
    queues: Sequence[str]
    dead_letters: str
    dead_letter_exchange: str = ""
    """Where dead letters are published, routed by the `dead_letters` queue's name."""
    prefetch: int = 100
    batch_size: int = 100
    batch_wait_s: float = 0.0
    transactional: bool = True
    attempts: int = 3
    """Tries of a delivery that raises, before it is taken for a poison message."""
    retry_first_s: float = 0.2
    retry_max_s: float = 5.0
    delivery_limit: int = 10
    """Deliveries the queue allows (its x-delivery-limit): the last one is dead-lettered here."""
    standby: Sequence[str] = ()
    """Queues of single active consumer that others own: consumed only after
    `standby_delay_s` (so that their owners, starting at once, come first), and handed back
    every `handback_s` while served here, so that a returning owner takes its queue again."""
    standby_delay_s: float = 2.0
    handback_s: float = 30.0


class Runner:
    """Feeds one handler from its queue(s) while a connection is up."""

    def __init__(self, handler: Handler, consuming: Consuming, tally: Tally) -> None:
        self._handler = handler
        self._c = consuming
        self._tally = tally
        self._stopping = asyncio.Event()
        self._retries: set[asyncio.Task[None]] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.unavailable: str | None = None
        self.queue_of: dict[str, str] = {}
        """The queue each consumer tag reads, to name a dead letter's origin."""
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}
        self._served: dict[str, int] = {}

    def readiness(self) -> str | None:
        """None while the handler can work, else why not (for /readyz)."""
        return self.unavailable

    def stop(self) -> None:
        """Take no new batch; the one in hand is finished first, retry waits end now."""
        self._stopping.set()

    async def session(self, connection: AbstractConnection) -> None:
        """Consume until stopped or until the connection fails."""
        self.idle.clear()
        try:
            channel = await connection.channel(publisher_confirms=not self._c.transactional)
            if self._c.transactional:
                await channel.transaction().select()
            await channel.set_qos(prefetch_count=self._c.prefetch)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            for name in self._c.queues:
                await self._consume(channel, inbox, name)
            log.info("consuming", consumer=self._c.name, queues=list(self._c.queues))
            async with asyncio.TaskGroup() as tasks:
                standby = tasks.create_task(self._stand_by(channel, inbox))
                await self._loop(channel, inbox)
                standby.cancel()
            for queue, tag in self._consumers.values():
                await queue.cancel(tag)
            await self._end_retries()
        finally:
            self._consumers.clear()
            self.idle.set()
        log.info("stopped consuming", consumer=self._c.name)
        await asyncio.Event().wait()  # parked: unacked deliveries return when the channel closes

    async def _loop(
        self, channel: AbstractChannel, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> None:
        batches = _Batches(self, channel)
        held: list[AbstractIncomingMessage] = []
        while not self._stopping.is_set():
            fresh = await self._collect(inbox, self._c.batch_size - len(held), wait=not held)
            for message in fresh:
                queue = self.queue_of.get(message.consumer_tag or "", "")
                self._served[queue] = self._served.get(queue, 0) + 1
            if held or fresh:
                held = await batches.handle(held + fresh, len(held))
            else:
                await self._handler.idle()

    async def _consume(
        self, channel: AbstractChannel, inbox: asyncio.Queue[AbstractIncomingMessage], name: str
    ) -> None:
        queue = await channel.get_queue(name, ensure=False)
        tag = await queue.consume(inbox.put, no_ack=False)
        self.queue_of[tag] = name
        self._consumers[name] = (queue, tag)

    async def _stand_by(
        self, channel: AbstractChannel, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> None:
        """Consume the others' queues after a delay; hand back those served here."""
        if not self._c.standby:
            return
        await asyncio.sleep(self._c.standby_delay_s)
        for name in self._c.standby:
            await self._consume(channel, inbox, name)
        log.info("standing by", consumer=self._c.name, queues=list(self._c.standby))
        while True:
            await asyncio.sleep(self._c.handback_s)
            for name in self._c.standby:
                if self._served.pop(name, 0):
                    # To the back of the line: the owner, when there, is active again.
                    queue, tag = self._consumers[name]
                    await queue.cancel(tag)
                    await self._consume(channel, inbox, name)
                    log.info("handed back", consumer=self._c.name, queue=name)

    async def _collect(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], room: int, wait: bool = True
    ) -> list[AbstractIncomingMessage]:
        """Wait for one delivery (unless not to `wait`), then take what piled up meanwhile,
        `room` at most."""
        batch: list[AbstractIncomingMessage] = []
        if wait:
            try:
                batch.append(await asyncio.wait_for(inbox.get(), IDLE_POLL_S))
            except TimeoutError:
                return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._c.batch_wait_s
        while len(batch) < room:
            if not inbox.empty():
                batch.append(inbox.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or not batch:
                break
            try:
                batch.append(await asyncio.wait_for(inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _end_retries(self) -> None:
        for task in self._retries:
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    def backoff_s(self, attempt: int, hint: float | None = None) -> float:
        """The wait before try `attempt + 1`: doubling from the first, at most the maximum."""
        doubled = self._c.retry_first_s * 2 ** max(0, attempt - 1)
        return min(max(doubled, hint or 0.0), self._c.retry_max_s)


class _Batches:
    """One session's handling of batches on its channel."""

    def __init__(self, runner: Runner, channel: AbstractChannel) -> None:
        self._r = runner
        self._c = runner._c
        self._channel = channel
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()  # a batch's publishes, acks and commit go out together

    async def handle(
        self, messages: list[AbstractIncomingMessage], held: int = 0
    ) -> list[AbstractIncomingMessage]:
        """Handle a batch whose first `held` deliveries were kept back before; the ones kept
        back now (`Later`), in order."""
        deliveries = [_delivery(message, held=n < held) for n, message in enumerate(messages)]
        try:
            verdicts = await self._verdicts(deliveries)
        except Unavailable:  # stopping: the deliveries go back when the channel closes
            return []
        async with self._lock:
            settled, dead, kept = await self._carry_out(messages, deliveries, verdicts)
            if self._c.transactional:
                await self._channel.transaction().commit()
        await self._r._handler.committed(verdicts)
        for outcome, count in settled.items():
            self._r._tally.settled(outcome, count)
        for reason in dead:
            self._r._tally.dead_lettered(reason)
        return kept

    async def _verdicts(self, batch: Sequence[Delivery]) -> list[Verdict]:
        try:
            verdicts = list(await self._waiting_out(batch))
        except Unavailable:
            raise
        except Exception as error:
            log.warning(
                "batch failed, handing it one delivery at a time",
                consumer=self._c.name,
                error=_text(error),
            )
            verdicts = [await self._alone(delivery) for delivery in batch]
        assert len(verdicts) == len(batch), "a handler gives one verdict per delivery"
        return verdicts

    async def _waiting_out(self, batch: Sequence[Delivery]) -> Sequence[Verdict]:
        """`handle`, again after a backoff while it is `Unavailable` (until told to stop)."""
        attempt = 0
        while True:
            try:
                verdicts = await self._r._handler.handle(batch)
            except Unavailable as error:
                attempt += 1
                self._r.unavailable = str(error)
                log.warning(
                    "cannot handle now, retrying",
                    consumer=self._c.name,
                    attempt=attempt,
                    error=str(error),
                )
                if self._r._stopping.is_set():
                    raise
                await asyncio.sleep(self._r.backoff_s(attempt))
                continue
            self._r.unavailable = None
            return verdicts

    async def _alone(self, delivery: Delivery) -> Verdict:
        """A delivery on its own, `attempts` times at most: the poison is dead-lettered."""
        failure = ""
        for attempt in range(1, self._c.attempts + 1):
            try:
                [verdict] = await self._waiting_out([delivery])
                return verdict
            except Unavailable:
                raise
            except Exception as error:
                failure = _text(error)
                log.warning(
                    "delivery failed",
                    consumer=self._c.name,
                    attempt=attempt,
                    message_id=delivery.message_id,
                    error=failure,
                    exc_info=error,
                )
        reason = f"failed {self._c.attempts} times in the {self._c.name}: {failure}"
        log.warning(
            "poison message dead-lettered",
            consumer=self._c.name,
            message_id=delivery.message_id,
            reason=reason,
        )
        return DeadLetter(reason)

    async def _carry_out(
        self,
        messages: Sequence[AbstractIncomingMessage],
        deliveries: Sequence[Delivery],
        verdicts: Sequence[Verdict],
    ) -> tuple[dict[str, int], list[str], list[AbstractIncomingMessage]]:
        """Publish, dead-letter, requeue or keep each; what was settled, the dead letters'
        reasons and the deliveries kept in hand."""
        settled: dict[str, int] = {}
        dead: list[str] = []
        acked: list[AbstractIncomingMessage] = []
        kept: list[AbstractIncomingMessage] = []
        for message, delivery, verdict in zip(messages, deliveries, verdicts, strict=True):
            if isinstance(verdict, Retry) and delivery.attempt > self._c.delivery_limit:
                # The broker dead-letters past its limit itself, without a reason: not here.
                reason = f"gave up after {delivery.attempt} attempts: {verdict.reason}"
                log.warning(
                    "giving up", consumer=self._c.name, message_id=message.message_id, reason=reason
                )
                verdict = DeadLetter(reason)
            if isinstance(verdict, Later):
                kept.append(message)
                continue
            if isinstance(verdict, Done):
                for publish in verdict.publish:
                    await self._publish(publish)
                outcome = verdict.outcome
            elif isinstance(verdict, DeadLetter):
                await self._dead_letter(message, delivery, verdict.reason)
                dead.append(verdict.reason)
                outcome = "dead-lettered"
            else:
                self._retry_later(message, delivery, verdict)
                settled["retried"] = settled.get("retried", 0) + 1
                continue
            acked.append(message)
            settled[outcome] = settled.get(outcome, 0) + 1
        everything = len(acked) == len(messages) and not self._r._retries
        await _acknowledge(acked, everything)
        return settled, dead, kept

    async def _publish(self, publish: Publish) -> None:
        # Straight to the AMQP channel: aio-pika's Message and Exchange wrappers cost a
        # quarter of a publish's CPU (73 against 55 us), and a batch publishes one or two
        # messages per delivery.
        if self._underlay is None:
            self._underlay = await self._channel.get_underlay_channel()
        properties = Basic.Properties(
            message_id=publish.message_id,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            headers=dict(publish.headers),
        )
        await self._underlay.basic_publish(
            publish.body,
            exchange=publish.exchange,
            routing_key=publish.routing_key,
            properties=properties,
        )

    async def _dead_letter(
        self, message: AbstractIncomingMessage, delivery: Delivery, reason: str
    ) -> None:
        """The message as it came, with the reason, its queue of origin and its attempts."""
        headers = dict(message.headers or {})
        headers |= {
            REASON_HEADER: reason[:MAX_REASON],
            ORIGIN_HEADER: self._r.queue_of.get(message.consumer_tag or "", ""),
            ATTEMPTS_HEADER: delivery.attempt,
        }
        kept = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
            headers=headers,  # type: ignore[arg-type]
        )
        exchange = self._c.dead_letter_exchange
        target = (
            await self._channel.get_exchange(exchange, ensure=False)
            if exchange
            else self._channel.default_exchange
        )
        await target.publish(kept, routing_key=self._c.dead_letters)

    def _retry_later(
        self, message: AbstractIncomingMessage, delivery: Delivery, verdict: Retry
    ) -> None:
        wait_s = self._r.backoff_s(delivery.attempt, verdict.after_s)
        log.warning(
            "will retry",
            consumer=self._c.name,
            message_id=message.message_id,
            reason=verdict.reason,
            attempt=delivery.attempt,
            retry_in_s=wait_s,
        )
        task = asyncio.create_task(self._requeue(message, wait_s))
        self._r._retries.add(task)
        task.add_done_callback(self._r._retries.discard)

    async def _requeue(self, message: AbstractIncomingMessage, wait_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._r._stopping.wait(), wait_s)
        async with self._lock:
            await message.nack(requeue=True)
            if self._c.transactional:
                await self._channel.transaction().commit()


async def _acknowledge(messages: Sequence[AbstractIncomingMessage], everything: bool) -> None:
    """Acknowledge these; with `multiple` when they are every delivery not yet settled."""
    if not messages:
        return
    if everything:
        await messages[-1].ack(multiple=True)
        return
    for message in messages:
        await message.ack()


def _delivery(message: AbstractIncomingMessage, held: bool = False) -> Delivery:
    headers = message.headers or {}
    count = headers.get("x-delivery-count", 0)
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        headers=headers,
        redelivered=bool(message.redelivered),
        attempt=(count if isinstance(count, int) else 0) + 1,
        held=held,
    )


def _text(error: BaseException) -> str:
    """One line: the exception's type and message (a driver error without its SQL)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"[:MAX_REASON]
