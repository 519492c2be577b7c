"""The dispatcher on the real broker: exactly-once forwarding across SIGKILL, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from ulid import ULID

from ingest.topology import case_open_route, declare_topology
from normalizer.model import CaseOpen, Sender, Touchpoint
from tests.conftest import bodies, collect, collect_through
from tests.daemon import BROKER_URL, Daemon, Names
from tests.local import LocalDaemon

SLOW_BATCHES = "[dispatcher]\nbatch_size = 5\nbatch_wait_ms = 0\n"


def case_open(number: int) -> CaseOpen:
    return CaseOpen(
        id=str(ULID()),
        received_at=datetime.now(UTC),
        channel="web",
        adapter="web-api",
        source_id=f"stream-{number:04d}",
        touchpoints=[Touchpoint(kind="api", address="api")],
        sender=Sender(kind="email", address=f"c{number}@example.com"),
        text=f"message {number}",
    )


async def publish(names: Names, bodies_: list[bytes]) -> None:
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, names.queue_settings())
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=names.case_open,
                )
                for body in bodies_
            )
        )


async def publish_routed(names: Names, cases: list[CaseOpen], partitions: int) -> None:
    """As the channels publish: with partitions, by sender through the hash exchange."""
    settings = names.queue_settings(partitions)
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, settings)
        sends = []
        for case in cases:
            exchange, routing_key = case_open_route(settings, case)
            target = await channel.get_exchange(exchange, ensure=False) if exchange else None
            message = aio_pika.Message(
                case.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            sends.append(
                (target or channel.default_exchange).publish(message, routing_key=routing_key)
            )
        await asyncio.gather(*sends)


async def message_count(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


@pytest.mark.slow
async def test_sigkill_mid_stream_forwards_every_message_exactly_once(
    make_process: Callable[..., Daemon], names: Names, amqp: AbstractChannel
) -> None:
    cases = [case_open(n) for n in range(1000)]
    marker = case_open(1000)
    await publish(names, [case.to_json() for case in [*cases, marker]])

    first = make_process(extra=SLOW_BATCHES).start(role="dispatcher")
    await first.wait_ready()
    forwarded_before_kill = 0
    while forwarded_before_kill < 150:
        forwarded_before_kill = await message_count(amqp, names.default)
        await asyncio.sleep(0.005)
    first.kill()
    forwarded_at_kill = await message_count(amqp, names.default)
    assert forwarded_at_kill < 1000, "the stream ended before the kill; make batches slower"

    second = make_process(extra=SLOW_BATCHES).start(role="dispatcher")
    await second.wait_ready()
    forwarded = bodies(await collect_through(amqp, names.default, marker.id))
    ids = [case["id"] for case in forwarded]
    assert len(ids) == 1000
    assert set(ids) == {case.id for case in cases}
    assert await message_count(amqp, names.case_open) == 0


async def test_invalid_messages_go_to_the_dead_letter_queue_with_a_reason(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    good = case_open(1)
    wrong_schema = json.loads(good.to_json()) | {"schema": "case-open/9", "id": str(ULID())}
    await publish(
        names,
        [b"not json at all", json.dumps(wrong_schema).encode(), good.to_json()],
    )
    daemon = make_daemon().start(role="dispatcher")
    await daemon.wait_ready()

    forwarded = bodies(await collect(amqp, names.default, 1))
    assert [case["id"] for case in forwarded] == [good.id]
    dead = await collect(amqp, names.case_open_dead, 2)
    reasons = [message.headers["x-ingest-reason"] for message in dead]
    assert dead[0].body == b"not json at all"
    assert "not a valid case-open/1 message: (body): Invalid JSON" in str(reasons[0])
    assert "schema: Input should be 'case-open/1'" in str(reasons[1])
    await daemon.settled(3)
    dead_letters = await daemon.counted(
        "ingest_dead_letters_total", queue="case-open", reason="not a valid case-open/1 message"
    )
    assert dead_letters == 2
    assert daemon.alive()


async def test_repeats_of_a_source_id_are_dropped_even_from_separate_batches(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    first = case_open(7)
    later = first.model_copy(update={"id": str(ULID()), "text": "sent again"})
    await publish(names, [first.to_json(), first.to_json(), later.to_json()])
    daemon = make_daemon(extra=SLOW_BATCHES.replace("5", "1")).start(role="dispatcher")
    await daemon.wait_ready()
    await daemon.settled(3)
    forwarded = bodies(await collect(amqp, names.default, 1))
    assert [case["id"] for case in forwarded] == [first.id]
    assert await daemon.consumed("case-open", "repeat") == 2


async def test_a_forward_with_no_queue_to_go_to_is_kept_in_dead_letters(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    daemon = make_daemon().start(role="dispatcher")
    await daemon.wait_ready()
    await amqp.queue_delete(names.default)  # an operator removed the team queue
    stray = case_open(3)
    await amqp.default_exchange.publish(
        aio_pika.Message(stray.to_json()), routing_key=names.case_open
    )

    [kept] = await collect(amqp, names.team_dead, 1)
    assert json.loads(kept.body)["id"] == stray.id
    assert kept.routing_key == names.default
