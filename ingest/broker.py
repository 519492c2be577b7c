"""One supervised connection to RabbitMQ: connect, declare, run sessions, reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import AMQPError

from ingest.flow import Flow
from ingest.redact import url_without_password
from ingest.settings import BrokerSettings, QueueSettings
from ingest.topology import declare_topology

log = structlog.get_logger("ingest.broker")

Session = Callable[[AbstractConnection], Awaitable[None]]
"""Runs while a connection is up (e.g. a consumer); returning or raising ends the connection."""

FIRST_BACKOFF_S = 0.25


class Broker:
    """Keeps a connection and a confirming publish channel; reconnects with backoff."""

    def __init__(
        self, settings: BrokerSettings, names: QueueSettings, sessions: Sequence[Session] = ()
    ) -> None:
        self._settings = settings
        self._names = names
        self._sessions = list(sessions)
        self._publish_channel: AbstractChannel | None = None
        self.connected = asyncio.Event()
        self.last_error: str | None = "not connected yet"
        self.flow = Flow()

    @property
    def publish_channel(self) -> AbstractChannel | None:
        """The confirming channel while connected, else None."""
        channel = self._publish_channel
        return channel if channel is not None and not channel.is_closed else None

    def readiness(self) -> str | None:
        """None when connected and free to publish, else why not (for /readyz)."""
        if self.publish_channel is None:
            return self.last_error or "disconnected"
        if self.flow.reason is not None:
            return (
                f"blocked: the broker refuses to take messages ({self.flow.reason}: a memory or"
                " disk alarm); new messages go to the spool while it has room, else are refused"
                " with a retry-later answer"
            )
        return None

    async def run(self) -> None:
        """Connect and reconnect until cancelled."""
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                # Our own deadline too: a broker that accepts the connection but never
                # finishes the handshake (stopping, or starting) must not stall us for good.
                async with asyncio.timeout(self._settings.connect_timeout_s + 1):
                    connection = await aio_pika.connect(
                        self._settings.url,
                        timeout=self._settings.connect_timeout_s,
                        heartbeat=self._settings.heartbeat_s,
                        client_properties={"connection_name": "ingest"},
                    )
            except (OSError, AMQPError, TimeoutError) as error:
                self._note_down(error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.reconnect_max_s)
                continue
            backoff = FIRST_BACKOFF_S
            try:
                await self._serve(connection)
            except Exception as error:
                # A session or declaration failed: log it and start over on a new connection,
                # so that one bad moment never takes the daemon down.
                self._note_down(error, backoff)
                await asyncio.sleep(backoff)
            finally:
                self._publish_channel = None
                self.connected.clear()
                self.flow.reset()
                if not connection.is_closed:
                    await asyncio.shield(connection.close())

    async def _serve(self, connection: AbstractConnection) -> None:
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        self.flow.watch(connection)
        # A mandatory publish the broker cannot route comes back and is then confirmed; with
        # aio-pika's default its confirm would end well, and the message would count as safe
        # while the broker dropped it. Raising, it is kept in the spool until it can be routed.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if self._settings.declare_topology:
            await declare_topology(channel, self._names)
        self._publish_channel = channel
        self.last_error = None
        self.connected.set()
        log.info("broker connected", url=url_without_password(self._settings.url))
        tasks = [asyncio.create_task(session(connection)) for session in self._sessions]
        waiter = asyncio.create_task(closed.wait())
        try:
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [waiter, *tasks]:
                task.cancel()
            results = await asyncio.gather(waiter, *tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        if closed.is_set():
            raise ConnectionError("connection to the broker closed")

    def _note_down(self, error: Exception, retry_in_s: float) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        expected = isinstance(error, OSError | AMQPError | TimeoutError)
        log.warning(
            "broker unavailable",
            error=self.last_error,
            retry_in_s=retry_in_s,
            exc_info=None if expected else error,
        )
