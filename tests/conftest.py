"""Fixtures: per-test queue names cleaned up afterwards, daemons, and a broker connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tests.daemon import BROKER_URL, Daemon, Names, delete_names, postgres_database
from tests.mail_relay import MailRelay
from tests.proxy import TcpProxy
from tests.telegram_api import BotApi


@pytest.fixture
async def amqp() -> AsyncIterator[AbstractChannel]:
    """A channel on the real broker, for the test to look at queues directly."""
    # Not a robust connection: that one answers passive declares from a cache.
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    """Fresh broker names; every queue and the exchange are deleted after the test."""
    names = Names()
    yield names
    await delete_names(names)


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    """A TCP proxy to RabbitMQ, started; the test cuts and restores it at will."""
    started = TcpProxy()
    await started.start()
    yield started
    await started.cut()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        ["openssl", *request, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApi]:
    """A stand-in Telegram Bot API on loopback, started."""
    server = BotApi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_daemon(tmp_path: Path, names: Names) -> Iterator[Callable[..., Daemon]]:
    """Build daemons sharing one working folder (so a restart finds the same spool and store)."""
    started: list[Daemon] = []

    def make(broker_url: str = BROKER_URL, extra: str = "", **options: Any) -> Daemon:
        daemon = Daemon(tmp_path, names, broker_url, extra, **options)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.kill()


@pytest.fixture
async def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    """One ready daemon running every role."""
    running = make_daemon().start()
    await running.wait_ready()
    return running


async def collect(
    channel: AbstractChannel,
    queue_name: str,
    expected: int,
    timeout_s: float = 30.0,
    quiet_s: float = 1.0,
) -> list[AbstractIncomingMessage]:
    """Take messages off a queue until `expected` arrived, then wait `quiet_s` for extras."""
    queue = await channel.get_queue(queue_name)
    taken: list[AbstractIncomingMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    quiet_until: float | None = None
    while True:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            taken.append(message)
            continue
        now = loop.time()
        if len(taken) >= expected:
            quiet_until = quiet_until or now + quiet_s
            if now >= quiet_until:
                return taken
        elif now >= deadline:
            return taken
        await asyncio.sleep(0.05)


def bodies(messages: list[AbstractIncomingMessage]) -> list[dict[str, Any]]:
    """The JSON bodies of messages."""
    return [json.loads(message.body) for message in messages]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards), as a plain URL."""
    async with postgres_database("t") as url:
        yield url


@pytest.fixture
async def relay() -> AsyncIterator[MailRelay]:
    """A stand-in outbound SMTP relay on loopback, started."""
    server = MailRelay()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: an SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/ingest.db"
    return request.getfixturevalue("pg_url")
