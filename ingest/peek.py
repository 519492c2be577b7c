"""Read messages off a queue and put them back, for people looking at what arrived."""

from __future__ import annotations

import json

import aio_pika
from aiormq.exceptions import ChannelLockedResource


class PeekRefused(Exception):
    """The broker does not let this queue be looked at; the message says why."""


async def peek(url: str, queue_name: str, count: int) -> list[str]:
    """Up to `count` messages as pretty JSON (or their raw text), left on the queue."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=True)
        shown: list[str] = []
        for _ in range(count):
            try:
                message = await queue.get(no_ack=False, fail=False)
            except ChannelLockedResource:
                raise PeekRefused(
                    f"{queue_name} has a single active consumer (a partition of case-open): "
                    "RabbitMQ serves no basic.get on it; see its depth in the management UI"
                ) from None
            if message is None:
                break
            shown.append(_render(message.body))
        # Closing the channel returns every unacknowledged message to the queue.
    return shown


def _render(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace")
