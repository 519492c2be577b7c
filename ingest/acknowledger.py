"""The sender of acknowledgements: consumes the acknowledgements queue in the channels role.

Each request is sent through the replier for its channel and acknowledged on the broker only
after the send succeeded. A transient failure waits (doubling, up to `retry_max_s`) and goes
back to the queue; the queue's delivery limit bounds the tries, and the last one is
dead-lettered with the reason. A permanent failure, an invalid request or a channel without
a replier is dead-lettered at once, with the reason in `x-ingest-reason`. Delivery is at least
once: a process that dies between a send and its ack sends that reply again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import ValidationError

from channels.replies import Permanent, Repliers, SendFailed, Transient, Unconfigured
from channels.settings import OutboundSettings
from dispatcher.consumer import Tally, no_tally
from dispatcher.dead_letters import dead_letter, invalid
from normalizer.acks import ACK_SCHEMA, AckRequest

log = structlog.get_logger("ingest.acknowledger")

IDLE_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class AckRoutes:
    """The queue requests come from, its dead letters, and its delivery limit."""

    inbound: str
    dead_letters: str
    delivery_limit: int


class Acknowledger:
    """A broker session that sends acknowledgements; `stop()` lets the sends in hand finish."""

    def __init__(
        self,
        repliers: Repliers,
        settings: OutboundSettings,
        routes: AckRoutes,
        tally: Tally = no_tally,
    ) -> None:
        self._repliers = repliers
        self._tally = tally
        self._settings = settings
        self._routes = routes
        self._stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self._unconfigured_seen: set[str] = set()

    def stop(self) -> None:
        """Take no new request; waits for a retry end at once (the request goes back)."""
        self._stopping.set()

    async def session(self, connection: AbstractConnection) -> None:
        """Consume until stopped or until the connection fails."""
        self.idle.clear()
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=self._settings.concurrency)
            queue = await channel.get_queue(self._routes.inbound, ensure=False)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            tag = await queue.consume(inbox.put, no_ack=False)
            log.info("sending acknowledgements", queue=self._routes.inbound)
            async with asyncio.TaskGroup() as sends:
                while not self._stopping.is_set():
                    try:
                        message = await asyncio.wait_for(inbox.get(), IDLE_POLL_S)
                    except TimeoutError:
                        continue
                    if self._stopping.is_set():
                        break  # left unacked: it goes back to the queue with the channel
                    sends.create_task(self._handle(message, channel))
                await queue.cancel(tag)
        finally:
            self.idle.set()
        log.info("stopped sending acknowledgements")
        await asyncio.Event().wait()  # parked: unacked deliveries return when the channel closes

    async def _handle(self, message: AbstractIncomingMessage, channel: AbstractChannel) -> None:
        attempt = _delivery_count(message) + 1
        try:
            ack = AckRequest.model_validate_json(message.body)
        except ValidationError as error:
            await self._dead_letter(
                message, channel, invalid(error, f"{ACK_SCHEMA} request"), attempt
            )
            return
        try:
            replier = self._repliers.for_request(ack)
            receipt = await replier.send(ack)
        except Unconfigured as failure:
            quiet = ack.channel in self._unconfigured_seen
            self._unconfigured_seen.add(ack.channel)
            await self._dead_letter(message, channel, str(failure), attempt, ack, quiet=quiet)
        except Permanent as failure:
            await self._dead_letter(message, channel, str(failure), attempt, ack)
        except Transient as failure:
            await self._retry(message, channel, failure, attempt, ack)
        except Exception as error:  # a replier's bug: retried, then kept in the dead letters
            log.exception("replier failed unexpectedly", case_id=ack.case_id)
            failure = Transient(f"unexpected {type(error).__name__}: {error}")
            await self._retry(message, channel, failure, attempt, ack)
        else:
            await message.ack()
            self._tally("sent", 1)
            log.info(
                "acknowledgement sent",
                case_id=ack.case_id,
                channel=ack.channel,
                replier=replier.name,
                sent_id=receipt,
                attempt=attempt,
            )

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        channel: AbstractChannel,
        failure: SendFailed,
        attempt: int,
        ack: AckRequest,
    ) -> None:
        # The broker delivers a message delivery_limit + 1 times before it dead-letters it
        # itself, without a reason; the last try is dead-lettered here, with the reason.
        if attempt > self._routes.delivery_limit:
            reason = f"gave up after {attempt} attempts: {failure}"
            await self._dead_letter(message, channel, reason, attempt, ack)
            return
        wait_s = self._wait_s(attempt, failure)
        log.warning(
            "acknowledgement not sent, will retry",
            case_id=ack.case_id,
            channel=ack.channel,
            reason=str(failure),
            attempt=attempt,
            retry_in_s=wait_s,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), wait_s)
        await message.nack(requeue=True)
        self._tally("retried", 1)

    def _wait_s(self, attempt: int, failure: SendFailed) -> float:
        backoff = self._settings.retry_first_s * 2 ** (attempt - 1)
        hint = failure.retry_after_s if isinstance(failure, Transient) else None
        return min(max(backoff, hint or 0.0), self._settings.retry_max_s)

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        channel: AbstractChannel,
        reason: str,
        attempt: int,
        ack: AckRequest | None = None,
        *,
        quiet: bool = False,
    ) -> None:
        """Keep the request with the reason, confirmed, before it leaves the queue; `quiet`
        logs at info level (a channel without a replier, already warned about once)."""
        await channel.default_exchange.publish(
            dead_letter(message, reason, self._routes.inbound, **{"x-ingest-attempts": attempt}),
            routing_key=self._routes.dead_letters,
            mandatory=True,
        )
        await message.ack()
        self._tally("dead-lettered", 1)
        report = log.info if quiet else log.warning
        report(
            "acknowledgement dead-lettered",
            case_id=ack.case_id if ack else None,
            channel=ack.channel if ack else None,
            message_id=message.message_id,
            reason=reason,
            attempt=attempt,
        )


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """How often the broker delivered this before (quorum queues count it in a header)."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0
