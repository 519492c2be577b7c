"""Dead letters with their reason: what every consumer publishes for a message it gives up on.

The original body, id and type are kept; headers say why (`x-ingest-reason`) and where it came
from (`x-ingest-origin`), so an operator can fix the cause and put it back.
"""

from __future__ import annotations

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

REASON_HEADER = "x-ingest-reason"
ORIGIN_HEADER = "x-ingest-origin"
MAX_REASON = 1000


def dead_letter(
    message: AbstractIncomingMessage, reason: str, origin: str, **headers: object
) -> aio_pika.Message:
    """The message as it came, with the reason and its queue of origin (and `headers`)."""
    kept = dict(message.headers or {})
    kept |= {REASON_HEADER: reason[:MAX_REASON], ORIGIN_HEADER: origin, **headers}
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        delivery_mode=DeliveryMode.PERSISTENT,
        headers=kept,  # type: ignore[arg-type]
    )


def invalid(error: ValidationError, what: str) -> str:
    """A validation error as a dead letter's reason: the first few fields and why."""
    problems = [
        f"{'.'.join(str(p) for p in item['loc']) or '(body)'}: {item['msg']}"
        for item in error.errors(include_url=False)[:5]
    ]
    return f"not a valid {what}: " + "; ".join(problems)
