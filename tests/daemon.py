"""Run the real daemon as a subprocess for a test, on its own ports, files and queue names."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

import aio_pika
import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.database import create_engine, upgrade
from ingest.settings import QueueSettings

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
API_KEY = "test-key-0123456789"
SUPPORT_ADDRESS = "support@example.com"
BILLING_ADDRESS = "billing@example.com"
READY_TIMEOUT_S = 60.0  # a bound, not a wait: generous for a loaded CI machine
HTTP_TIMEOUT_S = 30.0  # a loaded CI machine can take seconds to answer the first request
STOP_TIMEOUT_S = 15.0


MAX_PARTITIONS = 4
POSTGRES_MAINTENANCE = "postgresql://postgres@127.0.0.1:5432/postgres"


@asynccontextmanager
async def postgres_database(prefix: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database named `<prefix>_<random>`, dropped afterwards; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_MAINTENANCE, autocommit=True
    ) as maintenance:
        await maintenance.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            await maintenance.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def migrated_store(path: Path) -> None:
    """Put a migrated SQLite store at `path` unless one is there: a copy of one migrated once
    per test process. Migrating a fresh store (Alembic, every migration) costs a daemon's
    start more CPU than all the rest of it; the tests of migrations use stores of their own
    (`store_url`), which start empty."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(), path)


@functools.cache
def _migrated_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ingest-store-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "ingest.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


PORTS_PER_WORKER = 1500
_next_port = itertools.count()


def _port_range() -> range:
    """This test process's own ports, below the kernel's ephemeral range (32768 and up).

    Ports the kernel hands out for port 0 can be handed out again to a parallel test process
    before a daemon binds them; a range per pytest-xdist worker cannot. The start within the
    range is random, so that two test runs side by side rarely meet either.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = 20000 + (int(worker) % 8) * PORTS_PER_WORKER
    return range(first, first + PORTS_PER_WORKER)


_ports = _port_range()
_port_offset = int.from_bytes(os.urandom(2), "big")


def free_port() -> int:
    """A port of this test process's range that nothing listens on right now."""
    for _ in range(len(_ports)):
        port = _ports[(_port_offset + next(_next_port)) % len(_ports)]
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_ports}")


@dataclass(frozen=True)
class Names:
    """Queue and exchange names with a per-test prefix, so tests never share a queue."""

    prefix: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")

    @property
    def case_open(self) -> str:
        return f"{self.prefix}.case-open"

    @property
    def case_open_dead(self) -> str:
        return f"{self.prefix}.case-open.dead"

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.cases"

    @property
    def intake(self) -> str:
        return f"{self.prefix}.intake"

    @property
    def dispatch(self) -> str:
        return f"{self.prefix}.dispatch"

    @property
    def case_update(self) -> str:
        return f"{self.prefix}.case-update"

    @property
    def case_events(self) -> str:
        return f"{self.prefix}.case-events"

    @property
    def case_events_dead(self) -> str:
        return f"{self.prefix}.case-events.dead"

    @property
    def default(self) -> str:
        return f"{self.prefix}.support.general"

    @property
    def team_dead(self) -> str:
        return f"{self.prefix}.cases.dead"

    @property
    def acknowledgements(self) -> str:
        return f"{self.prefix}.acknowledgements"

    @property
    def acknowledgements_dead(self) -> str:
        return f"{self.prefix}.acknowledgements.dead"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}.incidents"

    @property
    def kb_events(self) -> str:
        return f"{self.prefix}.kb-events"

    @property
    def kb_events_dead(self) -> str:
        return f"{self.prefix}.kb-events.dead"

    def partitions(self, count: int = MAX_PARTITIONS) -> list[str]:
        """case-open's partition queues, when a test splits it in `count` (at most 4)."""
        return [f"{self.case_open}.{p}" for p in range(count)]

    def queues(self) -> list[str]:
        return [
            *self.partitions(),
            self.case_open,
            self.case_open_dead,
            self.acknowledgements,
            self.acknowledgements_dead,
            self.case_update,
            self.case_events,
            self.case_events_dead,
            self.default,
            self.team_dead,
            self.incidents,
            self.kb_events,
            self.kb_events_dead,
        ]

    def exchanges(self) -> list[str]:
        return [
            self.exchange,
            f"{self.exchange}.unroutable",
            self.case_open,
            self.intake,
            self.dispatch,
        ]

    def queue_settings(self, partitions: int = 1) -> QueueSettings:
        """The same names as the daemon's settings, for declaring the topology from a test."""
        return QueueSettings(
            case_open=self.case_open,
            case_open_partitions=partitions,
            case_open_dead=self.case_open_dead,
            intake_exchange=self.intake,
            cases_exchange=self.exchange,
            dispatch_exchange=self.dispatch,
            case_update=self.case_update,
            case_events=self.case_events,
            case_events_dead=self.case_events_dead,
            default=self.default,
            teams=[self.default],
            team_dead=self.team_dead,
            acknowledgements=self.acknowledgements,
            acknowledgements_dead=self.acknowledgements_dead,
            incidents=self.incidents,
            kb_events=self.kb_events,
            kb_events_dead=self.kb_events_dead,
        )


async def delete_names(names: Names, *extra_queues: str) -> None:
    """Delete every queue and exchange a daemon with these names declared."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        for queue in [*names.queues(), *extra_queues]:
            await channel.queue_delete(queue)
        for exchange in names.exchanges():
            await channel.exchange_delete(exchange)


def settings_text(
    workdir: Path,
    names: Names,
    http_port: int,
    broker_url: str = BROKER_URL,
    extra: str = "",
    *,
    log_level: str = "info",
    smtp_port: int = 0,
    store_url: str | None = None,
    publish_timeout_s: float = 5.0,
) -> str:
    """A complete settings file for one test daemon (smtp_port 0: a free port is picked)."""
    return f"""
[broker]
url = "{broker_url}"
heartbeat_s = 5
reconnect_max_s = 1.0
publish_timeout_s = {publish_timeout_s}

[store]
url = "{store_url or f"sqlite:///{workdir}/ingest.db"}"
auto_migrate = true

[paths]
data_dir = "{workdir}/var"

[http]
host = "127.0.0.1"
port = {http_port}
max_body_bytes = 65536
shutdown_grace_s = 3.0

[channels.web]
api_keys = ["{API_KEY}"]
max_body_bytes = 4096
rate_limit_per_key = 1000000
rate_limit_per_client = 1000000

[channels.smtp]
port = {smtp_port or free_port()}
addresses = ["{SUPPORT_ADDRESS}", "{BILLING_ADDRESS}"]
domains = ["help.example"]
max_message_bytes = 65536

[queues]
case_open = "{names.case_open}"
case_open_dead = "{names.case_open_dead}"
intake_exchange = "{names.intake}"
cases_exchange = "{names.exchange}"
dispatch_exchange = "{names.dispatch}"
case_update = "{names.case_update}"
case_events = "{names.case_events}"
case_events_dead = "{names.case_events_dead}"
default = "{names.default}"
teams = ["{names.default}"]
team_dead = "{names.team_dead}"
delivery_limit = 5
acknowledgements = "{names.acknowledgements}"
acknowledgements_dead = "{names.acknowledgements_dead}"
incidents = "{names.incidents}"
kb_events = "{names.kb_events}"
kb_events_dead = "{names.kb_events_dead}"

[workers]
processes = 1

[log]
level = "{log_level}"
{extra}
"""


def clean_environment() -> dict[str, str]:
    """The test's environment without INGEST_ overrides from the person running it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}


def run_ingest(
    settings_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run one `ingest` command (not the daemon in the background) to completion; in an async
    test, `await ingest_command(...)` instead."""
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--settings", str(settings_path)],
        capture_output=True,
        timeout=60,
        env=clean_environment() | (env or {}),
    )


async def ingest_command(
    settings_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`run_ingest` for async tests: in a thread, so the event loop goes on meanwhile.

    A daemon in the test's process (`LocalDaemon`) runs on that loop; a command takes seconds,
    tens of them on a loaded machine, and a loop blocked that long misses the broker's
    heartbeats (5 s): the broker drops the daemon's connection for reasons of the test's own.
    """
    return await asyncio.to_thread(run_ingest, settings_path, *args, env=env)


AnyDaemon = TypeVar("AnyDaemon", bound="DaemonBase")
"""A daemon in a process of its own or in the test's, for helpers that start either."""


class DaemonBase:
    """What a test sees of one daemon, in a process of its own or in the test's: its settings
    file, folders, ports and queue names, and its HTTP side (readiness, metrics), its log."""

    def __init__(
        self,
        workdir: Path,
        names: Names,
        broker_url: str = BROKER_URL,
        extra: str = "",
        *,
        log_level: str = "info",
        store_url: str | None = None,
        settings_name: str = "settings.toml",
        http_port: int | None = None,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.workdir = workdir
        self.names = names
        self.port = http_port or free_port()
        self.settings_path = workdir / settings_name
        self.smtp_port = free_port()
        text = settings_text(
            workdir,
            names,
            self.port,
            broker_url,
            extra,
            log_level=log_level,
            smtp_port=self.smtp_port,
            store_url=store_url,
            publish_timeout_s=publish_timeout_s,
        )
        self.settings_path.write_text(text)
        if store_url is None:
            migrated_store(workdir / "ingest.db")
        stem = self.settings_path.stem
        self.log_path = workdir / ("daemon.log" if stem == "settings" else f"{stem}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """The daemon runs (it was started and has not exited)."""
        raise NotImplementedError

    async def launch(self, role: str = "all", env: dict[str, str] | None = None) -> Self:
        """Start it with `env` (INGEST_ overrides) and wait until it is ready."""
        raise NotImplementedError

    def _check_alive(self) -> None:
        assert self.alive(), f"the daemon is not running:\n{self.log_text()}"

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait for /readyz to answer 200."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(verify=_tls_context()) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"daemon not ready in {timeout_s} s:\n{self.log_text()}")

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for this daemon, patient enough for a loaded machine. They share
        one TLS context: httpx makes a new one per client otherwise, loading the CA bundle
        (tens of milliseconds of CPU, asked for on every poll for readiness)."""
        return httpx.AsyncClient(base_url=self.url, timeout=HTTP_TIMEOUT_S, verify=_tls_context())

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample on /metrics, keyed by name and sorted labels."""
        async with self.client() as client:
            response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    async def counted(self, name: str, **labels: str) -> int:
        """The sum of a counter's samples (`ingest_..._total`) that carry these labels."""
        wanted = set(labels.items())
        samples = await self.metrics()
        return int(
            sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))
        )

    async def wait_counted(
        self, count: int, name: str, timeout_s: float = 30.0, **labels: str
    ) -> None:
        """Wait until a counter with these labels reached `count`."""
        deadline = time.monotonic() + timeout_s
        while (seen := await self.counted(name, **labels)) < count:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} {labels} at {seen}, not {count}, in {timeout_s} s")
            await asyncio.sleep(0.05)

    async def consumed(self, queue: str = "case-open", *outcomes: str) -> int:
        """Deliveries of a queue this daemon settled, of the outcomes given (or all)."""
        if not outcomes:
            return await self.counted("ingest_consumed_total", queue=queue)
        counts = [
            await self.counted("ingest_consumed_total", queue=queue, outcome=o) for o in outcomes
        ]
        return sum(counts)

    async def settled(
        self, count: int, queue: str = "case-open", *outcomes: str, timeout_s: float = 30.0
    ) -> None:
        """Wait until this daemon settled `count` deliveries of a queue (of the outcomes given).

        Settled means forwarded and committed, dropped as a repeat or dead-lettered: once the
        dispatcher has settled every case-open a test caused, whatever it forwards is on its
        queue, so the test can tell that nothing more will come without waiting for quiet.
        """
        deadline = time.monotonic() + timeout_s
        while (seen := await self.consumed(queue, *outcomes)) < count:
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{seen} of {count} {queue} deliveries settled in time")
            await asyncio.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Daemon(DaemonBase):
    """One `ingest run` process: for what needs a process (signals, crashes, restarts, the
    command line beside it); start(), wait_ready(), stop() or kill(), log_text()."""

    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def launch(self, role: str = "all", env: dict[str, str] | None = None) -> Self:
        self.start(role, env)
        await self.wait_ready()
        return self

    def start(self, role: str = "all", env: dict[str, str] | None = None) -> Daemon:
        """Start `ingest run`; `env` adds INGEST_ overrides for this process."""
        command = [sys.executable, "-m", "ingest", "run", "--settings", str(self.settings_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--role", role],
                stdout=log,
                stderr=subprocess.STDOUT,
                # A daemon that does not stop when told shows where it hangs (`wait_exit`).
                env=clean_environment() | {"PYTHONFAULTHANDLER": "1"} | (env or {}),
            )
        return self

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout_s: float) -> int:
        """Wait for the process to exit; return its exit code."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.send_signal(signal.SIGABRT)  # faulthandler prints every thread
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(self.process.wait, 5)
                tail = "\n".join(self.log_text().splitlines()[-80:])
                raise AssertionError(f"daemon still running after {timeout_s} s:\n{tail}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then kill after `timeout_s`; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
