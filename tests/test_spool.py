"""The spool: durable files in order, and the daemon riding out a broker outage with it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from ingest.publisher import spool_directory
from ingest.spool import Outgoing, Spool
from ingest.topology import declare_topology
from normalizer.model import PUBLISH_ID
from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import API_KEY, Daemon, DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.waiting import until


def outgoing(number: int) -> Outgoing:
    return Outgoing(
        body=f'{{"n": {number}}}'.encode(),
        message_id=f"m{number}",
        routing_key="case-open",
        headers={"x-schema": "case-open/1"},
    )


def test_spooled_messages_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for number in range(5):
        spool.put(outgoing(number))
    (tmp_path / "incoming" / "00000000000000000001.json").write_bytes(b"half a wri")

    reopened = Spool(tmp_path)
    assert len(reopened) == 5
    assert [Spool.load(p) for p in reopened.pending()] == [outgoing(n) for n in range(5)]
    assert not list((tmp_path / "incoming").iterdir()), "an unfinished write never counted"

    reopened.remove(reopened.pending()[0])
    reopened.put(outgoing(5))
    assert [Spool.load(p).message_id for p in reopened.pending()] == ["m1", "m2", "m3", "m4", "m5"]


async def submit_many(daemon: DaemonBase, keys: list[str]) -> list[int]:
    async with daemon.client() as client:
        answers = [
            await client.post(
                "/api/v1/messages",
                json={"sender": {"email": "ann@example.com"}, "text": f"message {key}"},
                headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
            )
            for key in keys
        ]
    return [answer.status_code for answer in answers]


async def test_a_message_the_broker_cannot_route_is_kept_until_it_can_be(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    """The broker returns a mandatory publish that no queue takes, then confirms it: that is
    not a safe message, so it goes to the spool and out again once the queue is back."""
    daemon = await make_daemon().launch("channels")
    await amqp.queue_delete(daemon.names.case_open)  # its binding goes with it

    assert await submit_many(daemon, ["unroutable-1"]) == [202]
    spooled = spool_directory(daemon.workdir / "var")
    assert len(list(spooled.glob("*.json"))) == 1, "kept, not taken as delivered"

    await declare_topology(amqp, daemon.names.queue_settings())
    [message] = await collect(amqp, daemon.names.case_open, 1)
    [case] = bodies([message])
    assert case["source_id"] == "unroutable-1"
    # Every publish of a case-open names itself, so that two copies can be told apart.
    assert len(str(message.headers[PUBLISH_ID])) == 16
    await until(lambda: not list(spooled.glob("*.json")), "the spool emptied")


async def wait_not_ready(daemon: DaemonBase) -> dict[str, object]:
    async with daemon.client() as client:
        for _ in range(100):
            ready = await client.get("/readyz")
            if ready.status_code == 503:
                return ready.json()
            await asyncio.sleep(0.1)
    raise AssertionError("the daemon never noticed the broker was gone")


@pytest.mark.slow
async def test_broker_outage_spools_then_delivers_each_message_once_in_order(
    make_daemon: Callable[..., LocalDaemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(proxy.amqp_url).start()
    await daemon.wait_ready()
    await proxy.cut()
    readiness = await wait_not_ready(daemon)
    assert "broker" in readiness["checks"]  # type: ignore[operator]

    keys = [f"outage-{n:03d}" for n in range(40)]
    assert await submit_many(daemon, keys) == [202] * len(keys)
    assert len(list(spool_directory(daemon.workdir / "var").glob("*.json"))) == len(keys)

    await proxy.start()
    forwarded = bodies(await collect(amqp, daemon.names.default, len(keys)))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert [case["source_id"] for case in forwarded] == keys
    spooled = spool_directory(daemon.workdir / "var")
    # A file goes once the broker confirmed its message, which may be just after it arrived.
    await until(lambda: not list(spooled.glob("*.json")), "the spool emptied")
    # The line comes once the drain finds nothing left, just after the last file went.
    await until(lambda: "spool drained" in daemon.log_text(), "the drain to end")


@pytest.mark.slow
async def test_a_restart_with_a_full_spool_loses_nothing(
    make_process: Callable[..., Daemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    first = make_process(proxy.amqp_url).start()
    await first.wait_ready()
    await proxy.cut()
    await wait_not_ready(first)
    keys = [f"restart-{n:03d}" for n in range(25)]
    assert await submit_many(first, keys) == [202] * len(keys)
    first.signal(signal.SIGTERM)
    assert await first.wait_exit(60) == 0

    second = make_process().start()  # same folder, broker reachable again
    await second.wait_ready()
    forwarded = bodies(await collect(amqp, second.names.default, len(keys)))
    forwarded += await forwarded_behind(amqp, second.names)
    assert [case["source_id"] for case in forwarded] == keys
    assert "spool holds messages from before" in second.log_text()
