"""Fixtures: per-test queue names cleaned up afterwards, daemons, and a broker connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from alembic import command
from sqlalchemy import Engine
from ulid import ULID

from dispatcher.database import _config
from normalizer.model import CaseOpen, Sender, Touchpoint
from tests.daemon import BROKER_URL, Daemon, Names, delete_names, postgres_database
from tests.local import LocalDaemon, route_logs_to_daemons
from tests.mail_relay import MailRelay
from tests.oauth_provider import OAuthProvider
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
def make_process(tmp_path: Path, names: Names) -> Iterator[Callable[..., Daemon]]:
    """Build `ingest run` processes sharing one working folder (so a restart finds the same
    spool and store), for tests that need a process: signals, SIGKILL, restarts."""
    started: list[Daemon] = []

    def make(broker_url: str = BROKER_URL, extra: str = "", **options: Any) -> Daemon:
        daemon = Daemon(tmp_path, names, broker_url, extra, **options)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.kill()


@pytest.fixture
async def make_daemon(tmp_path: Path, names: Names) -> AsyncIterator[Callable[..., LocalDaemon]]:
    """Build daemons that run in the test's process, sharing one working folder; each is
    shut down afterwards. `start()` and `wait_ready()` as for a process."""
    made: list[LocalDaemon] = []

    def make(broker_url: str = BROKER_URL, extra: str = "", **options: Any) -> LocalDaemon:
        daemon = LocalDaemon(tmp_path, names, broker_url, extra, **options)
        made.append(daemon)
        return daemon

    yield make
    for daemon in reversed(made):
        await daemon.close()


@pytest.fixture
async def daemon(make_daemon: Callable[..., LocalDaemon]) -> LocalDaemon:
    """One ready daemon running every role, in the test's process."""
    return await make_daemon().launch()


def pytest_configure(config: pytest.Config) -> None:
    route_logs_to_daemons()


async def collect(
    channel: AbstractChannel, queue_name: str, expected: int, timeout_s: float = 30.0
) -> list[AbstractIncomingMessage]:
    """Take messages off a queue until `expected` arrived (or the time is up), then whatever
    else is on it at that moment.

    It does not wait for quiet: a test that must show that nothing more arrives first waits
    for the fact that every input was handled (`Daemon.settled`, a marker behind them).
    """
    queue = await channel.get_queue(queue_name)
    taken: list[AbstractIncomingMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            taken.append(message)
        elif len(taken) >= expected or loop.time() >= deadline:
            return taken
        else:
            await asyncio.sleep(0.02)


async def collect_through(
    channel: AbstractChannel, queue_name: str, marker_id: str, timeout_s: float = 60.0
) -> list[AbstractIncomingMessage]:
    """Take messages off a queue up to a marker (by message id), which is not returned.

    A marker sent behind the inputs proves, when it comes out, that every input ahead of it
    was handled: whatever they caused is in the list.
    """
    queue = await channel.get_queue(queue_name)
    taken: list[AbstractIncomingMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None and message.message_id == marker_id:
            return taken
        if message is not None:
            taken.append(message)
            continue
        assert loop.time() < deadline, f"marker not through in {timeout_s} s ({len(taken)} taken)"
        await asyncio.sleep(0.02)


async def forwarded_behind(
    amqp: AbstractChannel, names: Names, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """What the dispatcher forwards to the default team queue from now until a marker,
    published to case-open behind everything there, comes out: with no triage rules that
    send it elsewhere, an empty list proves that nothing more arrives."""
    marker = CaseOpen(
        id=str(ULID()),
        received_at=datetime.now(UTC),
        channel="web",
        adapter="web-api",
        source_id=f"marker-{ULID()}",
        touchpoints=[Touchpoint(kind="api", address="api")],
        sender=Sender(kind="email", address=f"marker-{ULID()}@tests.example"),
        text="A marker: everything before it was handled.",
    )
    message = aio_pika.Message(
        marker.to_json(), message_id=marker.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )
    await amqp.default_exchange.publish(message, routing_key=names.case_open)
    return bodies(await collect_through(amqp, names.default, marker.id, timeout_s))


async def forwarded_at_least(
    amqp: AbstractChannel, queue: str, count: int, timeout_s: float = 900.0
) -> None:
    """Wait until a queue holds at least `count` messages."""
    for _ in range(int(timeout_s * 100)):
        declared = await amqp.declare_queue(queue, passive=True)
        if (declared.declaration_result.message_count or 0) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} on {queue} in {timeout_s} s")


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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: an SQLite file, or a PostgreSQL database of its own.

    The PostgreSQL variant is in the slow set: the quick loop runs the same code on the
    embedded store, and the whole suite (CI) on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store/ingest.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's headless Chromium through Playwright (never a browser Playwright downloads)."""
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    """A stand-in OAuth2 provider (token, device, authorize, introspection) on loopback."""
    server = OAuthProvider().start()
    yield server
    server.stop()


def migrate(engine: Engine, revision: str, down: bool = False) -> None:
    """Bring the store to `revision`, up or down: the tests of one migration."""
    with engine.begin() as connection:
        (command.downgrade if down else command.upgrade)(_config(connection), revision)
