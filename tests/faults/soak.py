"""A fault soak anyone can rerun: `python -m tests.faults.soak --minutes N`.

It runs the daemon with split roles on PostgreSQL (two channels processes, two dispatchers)
against a RabbitMQ node it starts on its own ports, reached through a TCP proxy; sends a
steady stream through the JSON API, SMTP and IMAP (Dovecot), each client retrying with the
same idempotency key (Idempotency-Key, Message-ID) until its message is accepted; and at
random moments SIGKILLs a channels process or a dispatcher (restarted a moment later, as
systemd would), stops the broker, cuts the broker connection at the proxy, and has
PostgreSQL refuse connections. Then it lets everything settle and reads the team queue.

It prints, per channel: sent, accepted, delivered exactly once, lost (accepted, never
delivered), doubled (delivered more than once), and the faults with their times. The exit
status is 0 only with nothing lost and nothing doubled. Run it from the repository root with
RabbitMQ's and Dovecot's programs installed and PostgreSQL on 127.0.0.1:5432 (as for the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import psycopg
from imapclient.exceptions import IMAPClientError

from dispatcher.case_opens import RESENT_HEADER
from tests.daemon import (
    API_KEY,
    POSTGRES_MAINTENANCE,
    SUPPORT_ADDRESS,
    Daemon,
    Names,
    free_port,
    postgres_database,
)
from tests.imap_server import PASSWORD, USER, Dovecot
from tests.proxy import TcpProxy

CHANNELS = ("api", "smtp", "imap")
FAULTS = ("kill-channels", "kill-dispatcher", "stop-broker", "cut-broker", "refuse-database")
RABBITMQ = Path("/usr/lib/rabbitmq/bin")
RETRY_S = 0.5
SETTLE_TIMEOUT_S = 300.0
T = TypeVar("T")


IMAP_SESSIONS = 4
"""APPENDs at once (the adapter and the settle check need sessions of their own too)."""
CLIENT_THREADS = 64
"""SMTP sessions and APPENDs block: the default executor gets this many threads."""
_control = ThreadPoolExecutor(4, thread_name_prefix="soak-control")


async def control(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking step of the soak's own (the broker, Dovecot) on threads of its own,
    never queued behind the clients' sessions."""
    return await asyncio.get_running_loop().run_in_executor(_control, function, *args)


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


@dataclass
class Sent:
    """One message of the stream: its key (also its subject) and whether it was accepted."""

    key: str
    channel: str
    accepted: bool = False
    attempts: int = 0
    refused: str | None = None


@dataclass
class Fault:
    at_s: float
    kind: str
    target: str
    lasted_s: float = 0.0


@dataclass
class Report:
    minutes: float
    rate: float
    channels: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    doubles: dict[str, list[str]] = field(default_factory=dict)
    """Some keys forwarded more than once, with each forward's case-open id and verdict."""
    losses: dict[str, str] = field(default_factory=dict)
    """Some keys accepted and never forwarded, with what the store and case-open's
    dead-letter queue know of them (where the trail ends)."""

    @property
    def lost(self) -> int:
        return sum(row["lost"] for row in self.channels.values())

    @property
    def doubled(self) -> int:
        return sum(row["doubled"] for row in self.channels.values())


class RabbitNode:
    """A RabbitMQ node of the soak's own: its own name, ports and folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.name = f"soak{self.port}@localhost"
        self._process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "enabled_plugins").write_text("[].\n")
        (root / "env.conf").write_text("")
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        self._env = os.environ | {
            "HOME": str(root),
            "RABBITMQ_CONF_ENV_FILE": str(root / "env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._process = await control(self._spawn)
        deadline = time.monotonic() + 120
        while True:
            try:
                connection = await aio_pika.connect(self.url, timeout=2)
                await connection.close()
                return
            except Exception:  # booting: refused, reset, or not accepting yet
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no RabbitMQ: see {self.root}/server.log") from None
                await asyncio.sleep(0.5)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self.root / "server.log").open("ab") as output:
            return subprocess.Popen(
                [str(RABBITMQ / "rabbitmq-server")],
                env=self._env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            await control(self._process.wait, 60)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            await control(self._process.wait, 10)


def imap_section(dovecot: Dovecot) -> str:
    return f"""
[channels.imap]
enabled = true

[[channels.imap.accounts]]
name = "support"
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
user = "{USER}"
password_env = "SOAK_IMAP_PASSWORD"
reconnect_max_s = 1.0
timeout_s = 10.0
"""


class Soak:
    """The processes, the stream, the faults, and the count at the end."""

    def __init__(self, root: Path, minutes: float, rate: float, seed: int) -> None:
        self.root = root
        self.minutes = minutes
        self.rate = rate
        self.rng = random.Random(seed)
        self.names = Names(prefix="soak")
        self.sent: dict[str, Sent] = {}
        self.report = Report(minutes, rate)
        self.started = time.monotonic()
        self.broker = RabbitNode(root / "rabbitmq")
        self.proxy: TcpProxy | None = None
        self.dovecot = Dovecot()
        self.database_url = ""
        self.channels: list[Daemon] = []
        self.dispatchers: list[Daemon] = []
        self._down: set[Daemon] = set()  # killed on purpose, being restarted
        self._roles: dict[Daemon, str] = {}
        self._streaming = True
        self._inflight: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10)
        self._appending = asyncio.Semaphore(IMAP_SESSIONS)

    def now(self) -> float:
        return time.monotonic() - self.started

    # -- set-up -------------------------------------------------------------------------

    @property
    def database(self) -> str:
        """The soak's PostgreSQL database, by name."""
        return self.database_url.rsplit("/", 1)[1]

    async def run(self) -> Report:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CLIENT_THREADS))
        async with postgres_database("soak") as database_url:
            self.database_url = database_url
            log(f"soak in {self.root}: {self.minutes} min at {self.rate}/s")
            try:
                await self.broker.start()
                self.proxy = TcpProxy(target_port=self.broker.port)
                await self.proxy.start()
                await control(self.dovecot.start)
                await self._start_processes(database_url)
                self.started = time.monotonic()
                await self._soak()
                await self._settle()
                await self._count()
            finally:
                await self._tear_down()
        return self.report

    async def _start_processes(self, database_url: str) -> None:
        assert self.proxy is not None
        quiet = "\n[outbound]\nenabled = false\n"
        for n, extra in enumerate([imap_section(self.dovecot), ""]):
            workdir = self.root / f"channels-{n}"
            workdir.mkdir()
            daemon = Daemon(workdir, self.names, self.proxy.amqp_url, extra + quiet)
            self.channels.append(daemon)
            self._roles[daemon] = "channels"
        for n in range(2):
            workdir = self.root / f"dispatcher-{n}"
            workdir.mkdir()
            daemon = Daemon(workdir, self.names, self.proxy.amqp_url, quiet, store_url=database_url)
            self.dispatchers.append(daemon)
            self._roles[daemon] = "dispatcher"
        await self.dispatchers[0].launch("dispatcher", env=self._env())  # migrates the store
        for daemon in [*self.dispatchers[1:], *self.channels]:
            await daemon.launch(self._roles[daemon], env=self._env())
        log("processes ready: 2 channels, 2 dispatchers")

    @staticmethod
    def _env() -> dict[str, str]:
        return {"SOAK_IMAP_PASSWORD": PASSWORD}

    async def _tear_down(self) -> None:
        for daemon in [*self.channels, *self.dispatchers]:
            daemon.kill()
        if self.proxy is not None:
            await self.proxy.cut()
        await self.broker.stop()
        await control(self.dovecot.remove)
        await self._http.aclose()
        with contextlib.suppress(psycopg.Error):
            await self._allow_connections(True)

    # -- the stream ---------------------------------------------------------------------

    async def _soak(self) -> None:
        end = self.minutes * 60
        stream = asyncio.create_task(self._stream(end))
        supervise = asyncio.create_task(self._supervise())
        try:
            await self._faults(end)
            await stream
        finally:
            supervise.cancel()
        self._streaming = False
        log(f"stream over: {len(self.sent)} sent; waiting for clients still retrying")
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _stream(self, end_s: float) -> None:
        number = 0
        while self.now() < end_s:
            channel = CHANNELS[number % len(CHANNELS)]
            key = f"soak-{channel}-{number:06d}"
            self.sent[key] = Sent(key, channel)
            task = asyncio.create_task(self._deliver(self.sent[key]))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            number += 1
            await asyncio.sleep(max(0.0, number / self.rate - self.now()))

    async def _deliver(self, message: Sent) -> None:
        """Send until accepted (same key every time), refused for good, or given up on."""
        deadline = time.monotonic() + self.minutes * 60 + 120
        send = {"api": self._api, "smtp": self._smtp, "imap": self._imap}[message.channel]
        while time.monotonic() < deadline:
            message.attempts += 1
            try:
                verdict = await send(message)
            except (OSError, httpx.HTTPError, smtplib.SMTPException, IMAPClientError):
                verdict = None
            if verdict is True:
                message.accepted = True
                return
            if isinstance(verdict, str):
                message.refused = verdict
                return
            await asyncio.sleep(RETRY_S)

    def _pick(self, message: Sent) -> Daemon:
        """A channels process for this attempt: alternate, so that a killed one is skipped."""
        return self.channels[(hash(message.key) + message.attempts) % len(self.channels)]

    async def _api(self, message: Sent) -> bool | str | None:
        daemon = self._pick(message)
        answer = await self._http.post(
            f"{daemon.url}/api/v1/messages",
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": message.key},
            json={
                "sender": {"email": f"{message.key}@soak.example"},
                "subject": message.key,
                "text": f"Soak message {message.key}: please help.",
            },
        )
        if answer.status_code in (200, 202):
            return True
        if answer.status_code in (429, 503) or answer.status_code >= 500:
            return None
        return f"{answer.status_code} {answer.text[:200]}"

    async def _smtp(self, message: Sent) -> bool | str | None:
        daemon = self._pick(message)
        return await asyncio.to_thread(_send_mail, daemon.smtp_port, _mail(message.key))

    async def _imap(self, message: Sent) -> bool | str | None:
        async with self._appending:  # Dovecot allows ten sessions per user and address
            await asyncio.to_thread(self.dovecot.append, _mail(message.key).as_bytes())
        return True

    # -- faults -------------------------------------------------------------------------

    async def _faults(self, end_s: float) -> None:
        """One fault at a time, at random moments; every kind once before any twice."""
        kinds: list[str] = []
        gap_s = (2.0, 6.0) if end_s <= 300 else (3.0, 12.0)
        await asyncio.sleep(min(10.0, end_s / 10))
        # Every kind once, even when that takes past the end; then until 20 s before it.
        while len(self.report.faults) < len(FAULTS) or self.now() < end_s - 20:
            await asyncio.sleep(self.rng.uniform(*gap_s))
            if not kinds:
                kinds = list(FAULTS)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            fault = Fault(round(self.now(), 1), kind, "")
            self.report.faults.append(fault)
            await getattr(self, "_" + kind.replace("-", "_"))(fault)
            fault.lasted_s = round(self.now() - fault.at_s, 1)
            log(f"fault {fault.kind} {fault.target} at {fault.at_s} s, {fault.lasted_s} s")

    async def _kill(self, fault: Fault, daemons: list[Daemon]) -> None:
        daemon = self.rng.choice(daemons)
        fault.target = daemon.workdir.name
        self._down.add(daemon)
        daemon.kill()  # SIGKILL
        await asyncio.sleep(self.rng.uniform(1, 4))
        try:
            await daemon.launch(self._roles[daemon], env=self._env())
        except AssertionError:
            self.report.crashes.append(f"{fault.target} not ready after its restart")
        self._down.discard(daemon)

    async def _kill_channels(self, fault: Fault) -> None:
        await self._kill(fault, self.channels)

    async def _kill_dispatcher(self, fault: Fault) -> None:
        await self._kill(fault, self.dispatchers)

    async def _stop_broker(self, fault: Fault) -> None:
        fault.target = self.broker.name
        await self.broker.stop()
        await asyncio.sleep(20)
        await self.broker.start()

    async def _cut_broker(self, fault: Fault) -> None:
        assert self.proxy is not None
        fault.target = f"proxy :{self.proxy.port}"
        await self.proxy.cut()
        await asyncio.sleep(self.rng.uniform(5, 15))
        await self.proxy.start()

    async def _refuse_database(self, fault: Fault) -> None:
        fault.target = self.database
        await self._allow_connections(False)
        await asyncio.sleep(self.rng.uniform(10, 30))
        await self._allow_connections(True)

    async def _allow_connections(self, allow: bool) -> None:
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_MAINTENANCE, autocommit=True
        ) as admin:
            await admin.execute(
                f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS {str(allow).lower()}'
            )
            if not allow:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self.database,),
                )

    async def _supervise(self) -> None:
        """Restart a process that died without being killed here (and say so)."""
        while True:
            await asyncio.sleep(1)
            for daemon in [*self.channels, *self.dispatchers]:
                if daemon not in self._down and not daemon.alive():
                    crash = f"{daemon.workdir.name} exited by itself at {self.now():.1f} s"
                    self.report.crashes.append(crash)
                    log(crash)
                    self._down.add(daemon)
                    with contextlib.suppress(AssertionError):
                        await daemon.launch(self._roles[daemon], env=self._env())
                    self._down.discard(daemon)

    # -- the count ----------------------------------------------------------------------

    async def _settle(self) -> None:
        """Until every accepted message is through: case-open empty, spools empty, every
        mail seen, and the team queue no longer growing."""
        log("settling")
        connection = await aio_pika.connect(self.broker.url)
        async with connection:
            channel = await connection.channel()
            # Give up only after SETTLE_TIMEOUT_S without progress: a backlog (an IMAP
            # folder still being taken after the outages) is work, not loss.
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            last, steady = -1, 0
            while time.monotonic() < deadline:
                case_open = await channel.declare_queue(self.names.case_open, passive=True)
                team = await channel.declare_queue(self.names.default, passive=True)
                waiting = case_open.declaration_result.message_count or 0
                spooled = sum([await self._spooled(daemon) for daemon in self.channels])
                unseen = await control(self.dovecot.uids, "INBOX", "UNSEEN")
                count = team.declaration_result.message_count or 0
                steady = steady + 1 if count == last and not waiting else 0
                if not waiting and not spooled and not unseen and steady >= 5:
                    return
                if count != last:
                    deadline = time.monotonic() + SETTLE_TIMEOUT_S
                last = count
                await asyncio.sleep(1)
        log("did not settle in time: counting anyway")

    async def _spooled(self, daemon: Daemon) -> int:
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            return int((await daemon.metrics())[("ingest_spool_pending", ())])
        return 1  # not answering: not settled

    async def _count(self) -> None:
        delivered: Counter[str] = Counter()
        forwards: dict[str, list[str]] = {}  # key: "case-open id, dedup verdict" per forward
        connection = await aio_pika.connect(self.broker.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.names.default, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                body = json.loads(message.body)
                key = body.get("subject") or ""
                delivered[key] += 1
                seen = f"{body.get('id')} {body.get('dedup', {}).get('verdict')}"
                if (message.headers or {}).get(RESENT_HEADER):
                    seen += " (resent: the input was redelivered unmarked)"
                forwards.setdefault(key, []).append(seen)
        for name in CHANNELS:
            mine = [m for m in self.sent.values() if m.channel == name]
            accepted = [m for m in mine if m.accepted]
            self.report.channels[name] = {
                "sent": len(mine),
                "accepted": len(accepted),
                "refused": sum(1 for m in mine if m.refused),
                "delivered_once": sum(1 for m in accepted if delivered[m.key] == 1),
                "lost": sum(1 for m in accepted if delivered[m.key] == 0),
                "doubled": sum(1 for m in mine if delivered[m.key] > 1),
                "delivered_unconfirmed": sum(
                    1 for m in mine if not m.accepted and delivered[m.key]
                ),
                "retried": sum(1 for m in mine if m.attempts > 1),
            }
        doubled = sorted(key for key, count in delivered.items() if count > 1)
        self.report.doubles = {key: forwards[key] for key in doubled[:50]}
        lost = sorted(m.key for m in self.sent.values() if m.accepted and not delivered[m.key])
        if lost:
            self.report.losses = await self._trail(lost[:50])
        strangers = [key for key in delivered if key not in self.sent]
        if strangers:
            self.report.crashes.append(f"{len(strangers)} unknown messages on the team queue")

    async def _trail(self, keys: list[str]) -> dict[str, str]:
        """Where each lost key's trail ends: its row in the store, or the dead letters."""
        dead: dict[str, str] = {}
        connection = await aio_pika.connect(self.broker.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.names.case_open_dead, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                subject = str(json.loads(message.body).get("subject") or "")
                dead[subject] = str((message.headers or {}).get("x-ingest-reason"))
        found = {key: "not in the store, not dead-lettered" for key in keys}
        found |= {key: f"dead-lettered: {dead[key]}" for key in keys if key in dead}
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as store:
            for key in keys:
                rows = await store.execute(
                    "SELECT case_open_id, verdict, forwarded, target_queue, repeats, publish_id"
                    " FROM messages WHERE body LIKE %s",
                    (f'%"subject":"{key}"%',),
                )
                for row in await rows.fetchall():
                    found[key] = "in the store: " + ", ".join(map(str, row))
        return found


def _mail(key: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{key}@soak.example"
    message["To"] = SUPPORT_ADDRESS
    message["Subject"] = key
    message["Message-ID"] = f"<{key}@soak.example>"
    message.set_content(f"Soak message {key}: please help.\n")
    return message


def _send_mail(port: int, message: EmailMessage) -> bool | str | None:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        client.ehlo("soak.example")
        client.mail(str(message["From"]))
        client.rcpt(SUPPORT_ADDRESS)
        code, answer = client.data(message.as_bytes())
    if code == 250:
        return True
    if 400 <= code < 500:
        return None
    return f"{code} {answer.decode(errors='replace')}"


def print_report(report: Report) -> None:
    print(f"\nfault soak: {report.minutes} min at {report.rate} messages/s")
    columns = ["sent", "accepted", "delivered_once", "lost", "doubled", "refused", "retried"]
    print(f"{'channel':8}" + "".join(f"{c:>16}" for c in columns))
    for name, row in report.channels.items():
        print(f"{name:8}" + "".join(f"{row[c]:>16}" for c in columns))
    print(f"\nfaults ({len(report.faults)}):")
    for fault in report.faults:
        print(f"  {fault.at_s:8.1f} s  {fault.kind:16} {fault.target:28} {fault.lasted_s:6.1f} s")
    for crash in report.crashes:
        print(f"  unplanned: {crash}")
    for key, seen in report.doubles.items():
        print(f"  doubled: {key}: {'; '.join(seen)}")
    for key, trail in report.losses.items():
        print(f"  lost: {key}: {trail}")
    print(f"\nlost {report.lost}, doubled {report.doubled}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0, help="messages per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    for noisy in ("aio_pika", "aiormq"):  # every failed reconnect, while the broker is down
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    root = Path(tempfile.mkdtemp(prefix="ingest-soak-"))
    print(f"seed {seed}", flush=True)
    try:
        report = asyncio.run(Soak(root, options.minutes, options.rate, seed).run())
    finally:
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_report(report)
    if options.json:
        options.json.write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.lost == 0 and report.doubled == 0 and report.channels else 1


if __name__ == "__main__":
    sys.exit(main())
