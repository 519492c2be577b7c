"""The broker topology: declared twice without error, and poison messages dead-lettered."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel

from ingest.topology import declare_topology
from tests.conftest import collect
from tests.daemon import Names


async def test_declaring_twice_is_a_no_op_and_routes_by_team_name(
    amqp: AbstractChannel, names: Names
) -> None:
    await declare_topology(amqp, names.queue_settings())
    await declare_topology(amqp, names.queue_settings())
    exchange = await amqp.get_exchange(names.exchange)
    await exchange.publish(aio_pika.Message(b"to the team"), routing_key=names.default)
    await exchange.publish(aio_pika.Message(b"an update"), routing_key=names.case_update)
    assert [m.body for m in await collect(amqp, names.default, 1)] == [b"to the team"]
    assert [m.body for m in await collect(amqp, names.case_update, 1)] == [b"an update"]


async def test_a_message_over_the_delivery_limit_is_dead_lettered_not_lost(
    amqp: AbstractChannel, names: Names
) -> None:
    settings = names.queue_settings().model_copy(update={"delivery_limit": 2})
    await declare_topology(amqp, settings)
    await amqp.default_exchange.publish(
        aio_pika.Message(b"poison", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=names.case_open,
    )
    queue = await amqp.get_queue(names.case_open)
    rejected = 0
    while (message := await queue.get(fail=False, timeout=5)) is not None:
        await message.reject(requeue=True)
        rejected += 1
        assert rejected < 10, "the delivery limit did not apply"

    [dead] = await collect(amqp, names.case_open_dead, 1)
    assert dead.body == b"poison"
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == names.case_open
