"""case-open split by sender over partition queues, one active dispatcher each.

The channels publish a case-open through RabbitMQ's consistent-hash exchange keyed by the
sender's address, so that all of a customer's messages share a partition; each dispatcher
consumes its own partitions at once and stands by for the others (single active consumer).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from ingest.topology import declare_topology
from normalizer.model import CaseOpen
from tests.conftest import bodies, collect, forwarded_at_least
from tests.daemon import Daemon, Names, ingest_command
from tests.local import LocalDaemon
from tests.test_decide import message
from tests.test_dispatcher import message_count
from tests.test_web_api import MESSAGE, submit


def split(partitions: int, instance: int = 0, instances: int = 1, **more: str) -> dict[str, str]:
    """INGEST_ overrides: case-open in `partitions`, this dispatcher `instance` of `instances`."""
    return {
        "INGEST_QUEUES__CASE_OPEN_PARTITIONS": str(partitions),
        "INGEST_DISPATCHER__INSTANCE": str(instance),
        "INGEST_DISPATCHER__INSTANCES": str(instances),
        "INGEST_DISPATCHER__STANDBY_DELAY_S": "0.3",
        **more,
    }


async def publish(amqp: AbstractChannel, queue: str, cases: list[CaseOpen]) -> None:
    """Straight into a queue (the default exchange), as if the hash had put them there."""
    for case in cases:
        body = aio_pika.Message(case.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await amqp.default_exchange.publish(body, routing_key=queue)


async def consumed(amqp: AbstractChannel, name: str) -> list[dict[str, Any]]:
    """What a partition holds now, taken by a consumer (single active consumer queues serve
    no basic.get)."""
    expected = await message_count(amqp, name)
    taken: list[dict[str, Any]] = []
    if expected:
        queue = await amqp.get_queue(name)
        async with queue.iterator(no_ack=True) as deliveries:
            async for delivery in deliveries:
                taken.append(json.loads(delivery.body))
                if len(taken) == expected:
                    break
    return taken


async def test_a_customers_messages_share_a_partition(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    channels = await make_daemon().launch("channels", split(3))
    senders = [f"person{n}@customer.example" for n in range(12)]
    for round_ in range(2):
        for sender in senders:
            sent = MESSAGE | {"sender": {"email": sender}, "text": f"{sender} {round_}"}
            assert (await submit(channels, sent)).status_code == 202

    where: dict[str, set[str]] = defaultdict(set)
    for queue in names.partitions(3):
        for case in await consumed(amqp, queue):
            where[case["sender"]["address"]].add(queue)
    assert sorted(where) == sorted(senders), "every message is in a partition"
    assert all(len(queues) == 1 for queues in where.values()), where
    assert len({queue for queues in where.values() for queue in queues}) >= 2
    assert await message_count(amqp, names.case_open) == 0


async def test_two_identities_of_a_merged_customer_on_two_partitions_at_once(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel, pg_url: str
) -> None:
    """Each customer writes the same words from two addresses, one on each partition: the
    two dispatchers decide at once, and the store's lock on the customer makes one message
    the new case and the other its duplicate."""
    customers = 30
    rows = [
        f"C{n},Customer {n},,a{n}@one.example; b{n}@two.example,,gold,yes" for n in range(customers)
    ]
    first, second = (make_daemon(store_url=pg_url, settings_name=f"d{n}.toml") for n in range(2))
    directory = first.workdir / "directory.csv"
    directory.write_text("external_id,name,organisation,emails,phones,tier,is_customer\n")
    with directory.open("a") as file:
        file.write("\n".join(rows) + "\n")
    imported = await ingest_command(first.settings_path, "customers", "import", str(directory))
    assert imported.returncode == 0, imported.stderr.decode()
    await declare_topology(amqp, names.queue_settings(partitions=2))
    zero, one = names.partitions(2)
    now = datetime.now(UTC)  # within the retention: older messages are pruned at once
    for queue, address in ((zero, "a{n}@one.example"), (one, "b{n}@two.example")):
        cases = [message(address.format(n=n), f"Broken {n}", at=now) for n in range(customers)]
        await publish(amqp, queue, cases)

    # Each on its own partition only: standing by, the first to start could serve both.
    own_only = {"INGEST_DISPATCHER__STANDBY_DELAY_S": "600"}
    first.start("dispatcher", split(2, 0, 2, **own_only))
    second.start("dispatcher", split(2, 1, 2, **own_only))
    opened = bodies(await collect(amqp, names.default, customers))
    updated = bodies(await collect(amqp, names.case_update, customers))

    assert len(opened) == len(updated) == customers
    case_of = {case["customer"]["external_id"]: case["dedup"]["case_id"] for case in opened}
    assert len(set(case_of.values())) == customers, "one case per customer"
    for update in updated:
        assert update["dedup"]["verdict"] == "duplicate"
        assert update["dedup"]["case_id"] == case_of[update["customer"]["external_id"]]
    assert await first.consumed() > 0 and await second.consumed() > 0, "both decided"


@pytest.mark.slow
async def test_a_dispatcher_killed_while_holding_a_partition_is_taken_over(
    make_process: Callable[..., Daemon], names: Names, amqp: AbstractChannel
) -> None:
    total = 400
    slow = {"INGEST_DISPATCHER__BATCH_SIZE": "5", "INGEST_DISPATCHER__HANDBACK_S": "1"}
    # The owner of partition 0 never stands by for partition 1 (it would serve both if the
    # other dispatcher were slower to start): the standby's count below is then its own
    # partition plus what it took over.
    owner_only = slow | {"INGEST_DISPATCHER__STANDBY_DELAY_S": "600"}
    dispatchers = [make_process(settings_name=f"d{n}.toml") for n in range(2)]
    await declare_topology(amqp, names.queue_settings(partitions=2))
    now = datetime.now(UTC)
    cases = [message(f"sender{n}@stream.example", f"message {n}", at=now) for n in range(total)]
    exchange = await amqp.get_exchange(names.case_open)
    for case in cases:
        body = aio_pika.Message(case.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(body, routing_key=f"email:{case.sender.address}")
    zero, one = names.partitions(2)
    on_one = await message_count(amqp, one)
    assert await message_count(amqp, zero) > 50 and on_one > 50

    dispatchers[0].start("dispatcher", split(2, 0, 2, **owner_only))
    dispatchers[1].start("dispatcher", split(2, 1, 2, **slow))
    for dispatcher in dispatchers:
        await dispatcher.wait_ready()
    await forwarded_at_least(amqp, names.default, 20)
    # Frozen with partition 0 in hand, and more for it arriving: whatever the pace of this
    # machine, there is partition 0 work left when it dies.
    assert dispatchers[0].process is not None
    dispatchers[0].process.send_signal(signal.SIGSTOP)
    later = [message(f"late{n}@stream.example", f"late {n}", at=now) for n in range(20)]
    await publish(amqp, zero, later)
    cases += later
    total += len(later)
    dispatchers[0].kill()  # SIGKILL

    forwarded = bodies(await collect(amqp, names.default, total, timeout_s=120))
    took_over = await dispatchers[1].consumed() - on_one
    assert took_over >= len(later), "the standby took partition 0 over"

    # Back, the owner gets its partition again: the standby hands it back within handback_s
    # of serving it. Probes go to partition 0 until the owner is the one that takes them.
    await dispatchers[0].launch("dispatcher", split(2, 0, 2, **owner_only))
    for attempt in range(60):
        before = await settled_counts(dispatchers, 0)
        probe = [message(f"probe{attempt}@back.example", "probe", at=now)]
        await publish(amqp, zero, probe)
        forwarded += bodies(await collect(amqp, names.default, 1))
        cases += probe
        total += 1
        # The forward can arrive before its dispatcher counts it: wait for the count.
        after = await settled_counts(dispatchers, sum(before) + 1)
        if after[0] > before[0]:
            break
        handbacks = dispatchers[1].log_text().count("handed back")
        for _ in range(100):  # the standby served the probe: it hands back within handback_s
            if dispatchers[1].log_text().count("handed back") > handbacks:
                break
            await asyncio.sleep(0.05)
    assert await dispatchers[0].consumed() == 1, "the owner took its partition back"
    assert dispatchers[0].stop() == 0
    assert dispatchers[1].stop() == 0
    for queue in (zero, one, names.default, names.case_open_dead):
        assert await message_count(amqp, queue) == 0, queue
    ids = [case["id"] for case in forwarded]
    assert len(ids) == len(set(ids)) == total, "each forwarded exactly once"
    assert set(ids) == {case.id for case in cases}
    assert json.loads(dispatchers[1].log_text().count("standing by") and "1") == 1


async def settled_counts(dispatchers: list[Daemon], at_least: int) -> list[int]:
    """The case-opens each dispatcher settled, once they add up to `at_least`."""
    for _ in range(600):
        counts = [await dispatcher.consumed() for dispatcher in dispatchers]
        if sum(counts) >= at_least:
            return counts
        await asyncio.sleep(0.05)
    raise AssertionError(f"the dispatchers settled {counts}, not {at_least} in all")


async def test_a_partition_cannot_be_peeked_and_the_command_says_why(
    make_daemon: Callable[..., LocalDaemon], names: Names
) -> None:
    channels = await make_daemon().launch("channels", split(2))
    assert (await submit(channels, MESSAGE)).status_code == 202
    shown = await ingest_command(channels.settings_path, "queue", "peek", names.partitions(2)[0])
    assert shown.returncode == 1
    assert "single active consumer" in shown.stderr.decode()
