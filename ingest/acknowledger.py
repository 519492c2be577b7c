"""The sender of acknowledgements: the handler of the acknowledgements queue (channels role).

Each request is sent through the replier for its channel and acknowledged on the broker only
after the send succeeded. A transient failure is a `Retry`: the runner puts it back after a
backoff (doubling, up to `retry_max_s`, at least what the service asked for), and
dead-letters the last try the queue allows with the reason. A permanent failure, an invalid
request or a channel without a replier is dead-lettered at once, with the reason in
`x-ingest-reason`. Delivery is at least once: a process that dies between a send and its ack
sends that reply again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from pydantic import ValidationError

from channels.replies import Permanent, Repliers, Transient, Unconfigured
from dispatcher.handling import DeadLetter, Delivery, Done, Retry, Verdict, invalid
from normalizer.acks import ACK_SCHEMA, AckRequest

log = structlog.get_logger("ingest.acknowledger")


class Acknowledger:
    """The handler of the acknowledgements queue: a batch of requests sent at once."""

    def __init__(self, repliers: Repliers) -> None:
        self._repliers = repliers
        self._unconfigured_seen: set[str] = set()

    async def handle(self, batch: Sequence[Delivery]) -> list[Verdict]:
        async with asyncio.TaskGroup() as sends:
            tasks = [sends.create_task(self._send(delivery)) for delivery in batch]
        return [task.result() for task in tasks]

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        return None

    async def idle(self) -> None:
        return None

    async def _send(self, delivery: Delivery) -> Verdict:
        try:
            ack = AckRequest.model_validate_json(delivery.body)
        except ValidationError as error:
            return _dead(delivery, invalid(error, f"{ACK_SCHEMA} request"))
        try:
            replier = self._repliers.for_request(ack)
            receipt = await replier.send(ack)
        except Unconfigured as failure:
            quiet = ack.channel in self._unconfigured_seen
            self._unconfigured_seen.add(ack.channel)
            return _dead(delivery, str(failure), ack, quiet=quiet)
        except Permanent as failure:
            return _dead(delivery, str(failure), ack)
        except Transient as failure:
            return Retry(str(failure), failure.retry_after_s)
        except Exception as error:  # a replier's bug: retried, then kept in the dead letters
            log.exception("replier failed unexpectedly", case_id=ack.case_id)
            return Retry(f"unexpected {type(error).__name__}: {error}")
        log.info(
            "acknowledgement sent",
            case_id=ack.case_id,
            channel=ack.channel,
            replier=replier.name,
            sent_id=receipt,
            attempt=delivery.attempt,
        )
        return Done("sent")


def _dead(
    delivery: Delivery, reason: str, ack: AckRequest | None = None, *, quiet: bool = False
) -> DeadLetter:
    """Kept with the reason; `quiet` logs at info level (a channel without a replier,
    already warned about once)."""
    report = log.info if quiet else log.warning
    report(
        "acknowledgement dead-lettered",
        case_id=ack.case_id if ack else None,
        channel=ack.channel if ack else None,
        message_id=delivery.message_id,
        reason=reason,
        attempt=delivery.attempt,
    )
    return DeadLetter(reason)
