"""Publishing with confirms, falling back to the spool; the spool drains when the broker is back.

A message counts as safe once the broker has confirmed it or once it is fsynced in the spool.
While anything waits in the spool, new messages join the end of it, so order is kept.

Push back, never hang: while the broker blocks publishing (a memory or disk alarm, see
`ingest.flow`) nothing is sent to it; a message goes to the spool if the spool has room
(`[spool] max_mb`), else it is refused with `NotSafe` at once, and the channel answers "try
again later" in its own terms. The spool does not drain while the broker blocks.

Never twice: a publish whose confirm has not come when the broker blocks (or when
`publish_timeout_s` runs out) may still reach the queue, so it is not sent again. The message
is spooled (past the size limit if need be: the broker may hold it already) and its confirm
is kept waiting; when the spool drains, a message confirmed meanwhile is only removed, and
only one whose publish failed is sent again.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from pathlib import Path

import structlog
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError
from pamqp.commands import Basic

from channels.base import CannotKeep, NotSafe
from ingest.broker import Broker
from ingest.spool import Outgoing, Spool, SpoolFull
from normalizer.model import PUBLISH_ID, new_publish_id

log = structlog.get_logger("ingest.publisher")

DRAIN_BATCH = 100
DRAIN_POLL_S = 1.0
PERSISTENT = int(DeliveryMode.PERSISTENT)


class Sent(Enum):
    """How a publish ended within the wait: confirmed, refused, or not known yet."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    IN_DOUBT = "in doubt"


class Publisher:
    """Makes messages safe: broker confirm first, the spool when the broker cannot."""

    def __init__(
        self,
        broker: Broker,
        spool: Spool,
        timeout_s: float,
        spool_max_bytes: int | None = None,
        intake_exchange: str = "",
    ) -> None:
        self._broker = broker
        # Spool files from before the intake exchange address the default exchange, which the
        # channels' broker user may not write to; the intake exchange routes the same queue
        # names (`ingest.topology.intake_queues`), so they go there.
        self._intake_exchange = intake_exchange
        self._spool = spool
        self._timeout_s = timeout_s
        self._spool_max_bytes = spool_max_bytes
        self._wake = asyncio.Event()
        # Publishes sent but not confirmed in time, by message id; their messages are spooled.
        self._in_doubt: dict[str, asyncio.Future[None]] = {}
        self._refusing = False  # the last message offered to the spool did not fit

    def readiness(self) -> str | None:
        """None while the spool has room, else why messages are refused (for /readyz)."""
        limit, used = self._spool_max_bytes, self._spool.size_bytes
        if limit is None or (used < limit and not self._refusing):
            return None
        return (
            f"full: the spool holds {used / 2**20:.1f} MB of its {limit / 2**20:.1f} MB"
            " ([spool] max_mb); new messages are refused with a retry-later answer until the"
            " broker takes the spooled ones"
        )

    async def publish(self, message: Outgoing) -> str:
        """Return "broker" or "spool", whichever made the message safe; raise NotSafe if neither."""
        channel = self._broker.publish_channel
        if channel is not None and not self._broker.flow.blocked and len(self._spool) == 0:
            sending = self._send(channel, message)
            sent = await self._settled([sending])
            if sent[0] is Sent.CONFIRMED:
                return "broker"
            if sent[0] is Sent.IN_DOUBT:
                # Registered before the spool file appears, so that a drain never resends it.
                self._in_doubt[message.message_id] = sending
                try:
                    await self._spool_put(message, limit=False)
                except NotSafe:
                    self._in_doubt.pop(message.message_id, None)
                    raise
                return "spool"
            log.warning(
                "publish failed, spooling", message_id=message.message_id, error=_error(sending)
            )
        await self._spool_put(message, limit=True)
        self._refusing = False
        return "spool"

    async def drain_forever(self) -> None:
        """Move spooled messages to the broker, oldest first, whenever it takes them."""
        while True:
            try:
                async with asyncio.timeout(DRAIN_POLL_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            channel = self._broker.publish_channel
            if channel is None or self._broker.flow.blocked or len(self._spool) == 0:
                continue
            try:
                await self._drain(channel)
            except (AMQPError, OSError, TimeoutError, RuntimeError, _Paused) as error:
                log.warning("spool drain interrupted", error=repr(error), pending=len(self._spool))

    async def _spool_put(self, message: Outgoing, *, limit: bool) -> None:
        max_bytes = self._spool_max_bytes if limit else None
        try:
            await asyncio.to_thread(self._spool.put, message, max_bytes)
        except SpoolFull as full:
            self._refusing = True
            raise CannotKeep(f"{self._why_not_broker()} and {full}") from None
        except OSError as error:
            log.error("spool write failed", message_id=message.message_id, error=repr(error))
            raise CannotKeep(
                f"{self._why_not_broker()} and the local spool cannot be written"
            ) from error
        self._wake.set()

    def _why_not_broker(self) -> str:
        if self._broker.publish_channel is None:
            return "the broker is unreachable"
        if (reason := self._broker.flow.reason) is not None:
            return f"the broker refuses messages for now ({reason})"
        return "earlier messages are still waiting for the broker"

    async def _drain(self, channel: AbstractChannel) -> None:
        drained = 0
        while pending := self._spool.pending()[:DRAIN_BATCH]:
            messages = [Spool.load(path) for path in pending]
            # Sent in order on one channel; the broker keeps that order in the queue. A message
            # whose earlier publish is still in doubt is not sent again: its confirm decides.
            sending = [
                self._in_doubt.pop(m.message_id, None) or self._send(channel, m) for m in messages
            ]
            sent = await self._settled(sending)
            for path, message, future, outcome in zip(
                pending, messages, sending, sent, strict=True
            ):
                if outcome is Sent.CONFIRMED:
                    await asyncio.to_thread(self._spool.remove, path)
                    self._refusing = False
                    drained += 1
                elif outcome is Sent.IN_DOUBT:
                    self._in_doubt[message.message_id] = future
            if Sent.FAILED in sent:
                failed = next(f for f in sending if _outcome(f) is Sent.FAILED)
                raise _Paused(f"a publish failed: {_error(failed)}")
            if Sent.IN_DOUBT in sent:
                raise _Paused("the broker blocked publishing or did not confirm in time")
        log.info("spool drained", messages=drained)

    def _send(self, channel: AbstractChannel, message: Outgoing) -> asyncio.Future[None]:
        """Start a confirmed publish; the future ends with the broker's confirm."""
        future = asyncio.ensure_future(self._confirmed(channel, message))
        future.add_done_callback(_retrieve)
        return future

    async def _settled(self, sending: list[asyncio.Future[None]]) -> list[Sent]:
        """Wait for these confirms, but no longer than the publish timeout, and not past the
        moment the broker blocks publishing. (Callbacks on one waiter rather than
        `asyncio.wait`: this is every message's path, and costs a third less CPU so.)"""
        waiting = [future for future in sending if not future.done()]
        if waiting:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            left = len(waiting)

            def release(_: object = None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            def one_done(_: object) -> None:
                nonlocal left
                left -= 1
                if left == 0:
                    release()

            signal = self._broker.flow.signal
            timer = loop.call_later(self._timeout_s, release)
            signal.add_done_callback(release)
            for future in waiting:
                future.add_done_callback(one_done)
            try:
                await waiter
            finally:
                timer.cancel()
                signal.remove_done_callback(release)
                for future in waiting:
                    future.remove_done_callback(one_done)
        return [_outcome(future) for future in sending]

    async def _confirmed(self, channel: AbstractChannel, message: Outgoing) -> None:
        # Straight to aio-pika's underlying aiormq channel, as its `Exchange.publish` does,
        # without building an aio-pika Message and Exchange for each message on the way.
        properties = Basic.Properties(
            message_id=message.message_id,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            headers={**message.headers, PUBLISH_ID: new_publish_id()},
        )
        underlay = await channel.get_underlay_channel()
        await underlay.basic_publish(
            message.body,
            exchange=message.exchange or self._intake_exchange,
            routing_key=message.routing_key,
            properties=properties,
            mandatory=True,
        )


class _Paused(Exception):
    """The drain stopped because confirms are outstanding; it resumes on the next round."""


def _outcome(future: asyncio.Future[None]) -> Sent:
    if not future.done():
        return Sent.IN_DOUBT
    if future.cancelled() or future.exception() is not None:
        return Sent.FAILED
    return Sent.CONFIRMED


def _error(future: asyncio.Future[None]) -> str:
    return "cancelled" if future.cancelled() else repr(future.exception())


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failed publish's exception as seen (the outcome is read from the future)."""
    if not future.cancelled():
        future.exception()


def spool_directory(data_dir: Path) -> Path:
    """Where the spool lives under the data folder."""
    return data_dir / "spool"
