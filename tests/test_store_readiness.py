"""The store side of /readyz on a real PostgreSQL: checked without traffic, within 5 s, whether
the database refuses connections, hangs, or has the dispatcher's tables locked; and the
dispatcher's statements and lock waits have timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from dispatcher.database import is_transient
from dispatcher.store import Store
from tests.conftest import bodies, collect
from tests.daemon import POSTGRES_MAINTENANCE
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.test_decide import message
from tests.test_dispatcher import publish

NOTICED_WITHIN_S = 5.0
FAST_CHECKS = {"INGEST_STORE__LOCK_TIMEOUT_S": "1", "INGEST_STORE__STATEMENT_TIMEOUT_S": "5"}


async def readiness(daemon: LocalDaemon) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        answer = await client.get("/readyz")
    return answer.status_code, answer.json()


async def until_status(daemon: LocalDaemon, status: int, within_s: float) -> dict[str, Any]:
    """Poll /readyz until it answers `status`; its body. Fails after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        code, body = await readiness(daemon)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/readyz still {code} after {within_s} s: {body}"
        await asyncio.sleep(0.1)


async def dispatcher(make_daemon: Callable[..., LocalDaemon], store_url: str) -> LocalDaemon:
    daemon = make_daemon(store_url=store_url)
    return await daemon.launch(role="dispatcher", env=FAST_CHECKS)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
async def postgres_proxy() -> AsyncIterator[TcpProxy]:
    """A TCP proxy to PostgreSQL, to freeze the daemon's connections as a hung server would."""
    started = TcpProxy(target_port=5432)
    await started.start()
    yield started
    started.thaw()
    await started.cut()


async def test_a_database_refusing_connections_shows_on_readyz_without_traffic(
    make_daemon: Callable[..., LocalDaemon], pg_url: str
) -> None:
    daemon = await dispatcher(make_daemon, pg_url)
    name = database_of(pg_url)
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_MAINTENANCE, autocommit=True
    ) as admin:
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            body = await until_status(daemon, 503, NOTICED_WITHIN_S)
            assert body["checks"]["store"].startswith("the store cannot be reached: "), body
            # The first check may meet a connection just closed; the next ones, the refusal.
            while "is not currently accepting connections" not in body["checks"]["store"]:
                body = await until_status(daemon, 503, NOTICED_WITHIN_S)
            assert await daemon.counted("ingest_store_check_failures_total", reason="unreachable")
            assert (await daemon.metrics())[("ingest_store_ready", ())] == 0.0
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    await until_status(daemon, 200, NOTICED_WITHIN_S)
    assert (await daemon.metrics())[("ingest_store_ready", ())] == 1.0


async def test_a_database_that_stops_answering_shows_on_readyz_without_traffic(
    make_daemon: Callable[..., LocalDaemon], pg_url: str, postgres_proxy: TcpProxy
) -> None:
    through_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{postgres_proxy.port}")
    daemon = await dispatcher(make_daemon, through_proxy)
    postgres_proxy.freeze()  # connections stay open, nothing comes back
    body = await until_status(daemon, 503, NOTICED_WITHIN_S)
    assert body["checks"]["store"] == "the store did not answer within 2 s", body
    assert await daemon.counted("ingest_store_check_failures_total", reason="timeout")

    postgres_proxy.thaw()
    await until_status(daemon, 200, NOTICED_WITHIN_S)


async def test_a_lock_held_longer_shows_on_readyz_and_stalls_nothing_for_good(
    make_daemon: Callable[..., LocalDaemon], pg_url: str, names: Any, amqp: AbstractChannel
) -> None:
    daemon = await dispatcher(make_daemon, pg_url)
    async with await psycopg.AsyncConnection.connect(pg_url) as locker:
        await locker.execute("LOCK TABLE messages IN SHARE MODE")  # reads pass, writes wait
        body = await until_status(daemon, 503, NOTICED_WITHIN_S)
        assert body["checks"]["store"] == (
            "the dispatcher's tables are locked (waited 2 s): "
            "OperationalError: canceling statement due to lock timeout"
        ), body
        assert await daemon.counted("ingest_store_check_failures_total", reason="lock")

        # A delivery meanwhile: its batch fails on the lock timeout and is retried.
        waiting = message(text="waiting for the lock")
        await publish(names, [waiting.to_json()])
        deadline = time.monotonic() + 10
        while "canceling statement due to lock timeout" not in daemon.log_text():
            assert time.monotonic() < deadline, "the batch never gave up waiting for the lock"
            await asyncio.sleep(0.1)
        assert await collect(amqp, names.default, 0, timeout_s=0) == []
        await locker.rollback()

    [forwarded] = bodies(await collect(amqp, names.default, 1))
    assert forwarded["id"] == waiting.id
    await until_status(daemon, 200, NOTICED_WITHIN_S)
    assert await daemon.consumed("case-open", "dead-lettered") == 0


async def test_a_statement_running_longer_than_its_timeout_fails_and_is_retried(
    pg_url: str,
) -> None:
    store = await Store.open(pg_url, auto_migrate=True, statement_timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            await store.run(lambda session: session.execute(text("SELECT pg_sleep(60)")))
        assert time.monotonic() - started < 20  # 0.5 s, with room for a loaded machine
        assert "statement timeout" in str(raised.value)
        assert is_transient(raised.value)  # the dispatcher keeps the batch and tries again
    finally:
        await store.close()
