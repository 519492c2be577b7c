"""The consumer runner keeps a delivery its handler puts off (`Later`) and hands it again.

On the real broker: the delivery stays unacknowledged while it is kept, comes first in the
next batch marked `held`, without waiting for new deliveries, and is acknowledged once done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel

from dispatcher.handling import Delivery, Done, Later, Verdict
from ingest.runner import Consuming, Runner
from ingest.topology import quorum_arguments
from tests.daemon import BROKER_URL, Names

WAIT_S = 30.0


class PutsOffTwo:
    """Puts off the delivery `2` once; everything else is done."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, bool]]] = []
        self.finished = asyncio.Event()

    async def handle(self, batch: Sequence[Delivery]) -> list[Verdict]:
        self.batches.append([(delivery.body, delivery.held) for delivery in batch])
        verdicts: list[Verdict] = []
        for delivery in batch:
            if delivery.body == b"2" and not delivery.held:
                verdicts.append(Later("not now"))
            else:
                verdicts.append(Done("done"))
        return verdicts

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        done = [b for batch in self.batches for b, _ in batch]
        if done.count(b"2") == 2 and b"1" in done and b"3" in done:
            self.finished.set()

    async def idle(self) -> None:
        return None


class Count:
    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}

    def settled(self, outcome: str, count: int) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count

    def dead_lettered(self, reason: str) -> None:
        raise AssertionError(f"nothing should be dead-lettered: {reason}")


async def test_a_delivery_put_off_is_handed_first_in_the_next_batch_then_acknowledged(
    amqp: AbstractChannel, names: Names
) -> None:
    arguments = quorum_arguments(names.case_open_dead, 10)
    await amqp.declare_queue(
        names.case_open_dead, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await amqp.declare_queue(names.case_open, durable=True, arguments=arguments)
    for body in (b"1", b"2", b"3"):
        await amqp.default_exchange.publish(aio_pika.Message(body), routing_key=names.case_open)

    handler, tally = PutsOffTwo(), Count()
    consuming = Consuming(
        name="test",
        queues=[names.case_open],
        dead_letters=names.case_open_dead,
        batch_size=10,
        batch_wait_s=0.2,
    )
    runner = Runner(handler, consuming, tally)
    connection = await aio_pika.connect(BROKER_URL)
    session = asyncio.create_task(runner.session(connection))
    try:
        await asyncio.wait_for(handler.finished.wait(), WAIT_S)
        runner.stop()
        await asyncio.wait_for(runner.idle.wait(), WAIT_S)
    finally:
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await session
        await connection.close()

    seen = [item for batch in handler.batches for item in batch]
    assert seen.count((b"2", False)) == 1 and seen.count((b"2", True)) == 1
    held_in = next(batch for batch in handler.batches if (b"2", True) in batch)
    assert held_in[0] == (b"2", True)  # first in its batch
    assert tally.outcomes == {"done": 3}
    # Every delivery was acknowledged: with the connection closed, nothing came back.
    queue = await amqp.declare_queue(names.case_open, passive=True)
    assert queue.declaration_result.message_count == 0
