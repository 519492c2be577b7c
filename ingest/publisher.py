"""Publishing with confirms, falling back to the spool; the spool drains when the broker is back.

A message counts as safe once the broker has confirmed it or once it is fsynced in the spool.
While anything waits in the spool, new messages join the end of it, so order is kept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import structlog
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError

from channels.base import NotSafe
from ingest.broker import Broker
from ingest.spool import Outgoing, Spool

log = structlog.get_logger("ingest.publisher")

DRAIN_BATCH = 100
DRAIN_POLL_S = 1.0


class Publisher:
    """Makes messages safe: broker confirm first, the spool when the broker cannot."""

    def __init__(self, broker: Broker, spool: Spool, timeout_s: float) -> None:
        self._broker = broker
        self._spool = spool
        self._timeout_s = timeout_s
        self._wake = asyncio.Event()

    async def publish(self, message: Outgoing) -> str:
        """Return "broker" or "spool", whichever made the message safe; raise NotSafe if neither."""
        channel = self._broker.publish_channel
        if channel is not None and len(self._spool) == 0:
            try:
                await self._confirmed(channel, message)
                return "broker"
            except (AMQPError, OSError, TimeoutError, RuntimeError) as error:
                log.warning(
                    "publish failed, spooling", message_id=message.message_id, error=repr(error)
                )
        try:
            await asyncio.to_thread(self._spool.put, message)
        except OSError as error:
            log.error("spool write failed", message_id=message.message_id, error=repr(error))
            raise NotSafe(
                "the broker is unreachable and the local spool cannot be written"
            ) from error
        self._wake.set()
        return "spool"

    async def drain_forever(self) -> None:
        """Move spooled messages to the broker, oldest first, whenever it is connected."""
        while True:
            try:
                async with asyncio.timeout(DRAIN_POLL_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            channel = self._broker.publish_channel
            if channel is None or len(self._spool) == 0:
                continue
            try:
                await self._drain(channel)
            except (AMQPError, OSError, TimeoutError, RuntimeError) as error:
                log.warning("spool drain interrupted", error=repr(error), pending=len(self._spool))

    async def _drain(self, channel: AbstractChannel) -> None:
        drained = 0
        while pending := self._spool.pending()[:DRAIN_BATCH]:
            messages = [Spool.load(path) for path in pending]
            # Sent in order on one channel; the broker keeps that order in the queue.
            confirmed = await asyncio.gather(
                *(self._confirmed(channel, message) for message in messages),
                return_exceptions=True,
            )
            failure = next((r for r in confirmed if isinstance(r, BaseException)), None)
            for path, result in zip(pending, confirmed, strict=True):
                if not isinstance(result, BaseException):
                    await asyncio.to_thread(self._spool.remove, path)
                    drained += 1
            if failure is not None:
                raise failure
        log.info("spool drained", messages=drained)

    async def _confirmed(self, channel: AbstractChannel, message: Outgoing) -> None:
        amqp_message = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=DeliveryMode.PERSISTENT,
            headers=dict(message.headers),
        )
        exchange = (
            channel.default_exchange
            if not message.exchange
            else await channel.get_exchange(message.exchange, ensure=False)
        )
        async with asyncio.timeout(self._timeout_s):
            await exchange.publish(amqp_message, routing_key=message.routing_key, mandatory=True)


def spool_directory(data_dir: Path) -> Path:
    """Where the spool lives under the data folder."""
    return data_dir / "spool"
