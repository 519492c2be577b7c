"""Benchmark of the dispatcher alone, next to a bare RabbitMQ dispatcher from the same run.

For each configuration (store SQLite or PostgreSQL; one or three `ingest run --role
dispatcher` processes, case-open split in as many partitions) it starts the dispatchers
through `tests.daemon` on fresh queue names and a fresh store (a new PostgreSQL database,
dropped afterwards), imports a directory of `--customers` customers, and:

1. warm-up (not measured): a stream of `--warmup` messages from those customers, so that
   they have history: open cases, earlier contacts, messages a duplicate can match;
2. measured, with case-open filled before the dispatchers start: `-n` messages in the mix
   of `tests.scenario`: 60% new requests (a fifth from senders the directory does not know),
   repeats (same source id: 16% + 4%), cross-channel duplicates of warm-up requests (an SMS
   with the same words, 10%) and follow-ups to warm-up cases (by case reference and by mail
   thread, 10%); every feature on: identity, history, dedup levels 1 to 3, triage with the
   shipped rules (settings.toml and rules.d/), acknowledgement requests.

It prints messages per second (handled / time from the first forward to the last) and the
CPU each dispatcher process used per message (from /proc); then, over the same window, the CPU
per message of the PostgreSQL server (when it is the store) and of the RabbitMQ node on this
machine, and how busy the whole machine was, which says whether more dispatchers could carry
more here; and the baseline: a bare
dispatcher in this process that takes the same bodies off a quorum queue and forwards each
to a topic exchange with batched acknowledgements in one AMQP transaction per batch, as the
dispatcher does, without a store.

    .venv/bin/python -m tests.benchmarks.dispatcher [-n 10000] [--warmup 10000]
        [--customers 3000] [--only sqlite-1,postgresql-1,postgresql-3]

Run it from the repository root, with RabbitMQ and PostgreSQL on 127.0.0.1. It is not a
test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ingest.topology import case_open_route, declare_topology, quorum_arguments
from normalizer.model import CaseOpen
from tests.daemon import BROKER_URL, Daemon, Names, delete_names, postgres_database, run_ingest
from tests.scenario import build

CONFIGURATIONS = ("sqlite-1", "postgresql-1", "postgresql-3")
TIMEOUT_S = 900.0
IN_FLIGHT = 500
REPOSITORY = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
TEAMS = ("support.general", "billing", "network", "sales", "noise")
SERVERS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}
"""Process names (/proc/PID/comm) of the servers whose CPU is shown, with their names."""


@dataclass
class Arrivals:
    """Forwards as they arrive on the team and case-update queues, and a count to wait for."""

    arrived: list[float] = field(default_factory=list)
    case_of: dict[str, str] = field(default_factory=dict)  # source id -> case reference
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, count: int) -> None:
        self.arrived.clear()
        self.expected = count
        self.done.clear()

    async def take(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        self.arrived.append(time.perf_counter())
        self.case_of[body["source_id"]] = body["dedup"]["case_id"]
        await message.ack()
        if len(self.arrived) >= self.expected:
            self.done.set()


@dataclass(frozen=True)
class Result:
    name: str
    messages: int
    seconds: float
    cpu_s: list[float]
    around: Around
    baseline_rate: float
    baseline_cpu_ms: float

    def lines(self) -> list[str]:
        rate = self.messages / self.seconds
        cpu = ", ".join(f"{c / self.messages * 1000:.3f}" for c in self.cpu_s)
        total_cpu_ms = sum(self.cpu_s) / self.messages * 1000
        return [
            f"{self.name:14} pipeline {rate:8.0f} msg/s  ({self.messages} in {self.seconds:.1f} s)"
            f"  CPU per message: {total_cpu_ms:.3f} ms (per process: {cpu} ms)",
            f"{'':14} around   {self.around.describe(self.messages)}",
            f"{'':14} baseline {self.baseline_rate:8.0f} msg/s  CPU per message: "
            f"{self.baseline_cpu_ms:.3f} ms   ratio {rate / self.baseline_rate:.2f}x",
        ]


@dataclass(frozen=True)
class Machine:
    """What the machine's CPUs and its database and broker servers had used at one moment."""

    busy_s: float
    total_s: float
    servers_s: dict[str, float]

    @classmethod
    def now(cls) -> Machine:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
        busy = user + nice + system + irq + softirq + steal
        return cls(busy / TICKS, (busy + idle + iowait) / TICKS, server_cpu_seconds())


@dataclass(frozen=True)
class Around:
    """The servers' CPU and the machine's load over the measured window."""

    store: str
    servers_s: dict[str, float]
    busy: float
    """Share of all CPUs busy (1.0: every core, all the time)."""

    @classmethod
    def between(cls, store: str, before: Machine, after: Machine) -> Around:
        servers = {name: after.servers_s[name] - before.servers_s[name] for name in SERVERS}
        busy = (after.busy_s - before.busy_s) / max(after.total_s - before.total_s, 1e-9)
        return cls(store, servers, busy)

    def describe(self, messages: int) -> str:
        shown = [
            f"{label} {self.servers_s[name] / messages * 1000:.3f} ms"
            for name, label in SERVERS.items()
            if (name != "postgres" or self.store == "postgresql") and self.servers_s[name] > 0
        ]
        cores = os.cpu_count() or 1
        return (
            f"CPU per message: {', '.join(shown) or 'no server on this machine'}; machine busy "
            f"{self.busy * 100 * cores:.0f}% of {100 * cores}%"
        )


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds the PostgreSQL and RabbitMQ processes of this machine used so far. A
    PostgreSQL backend that ended counts in its parent's time for children, which is added."""
    used = dict.fromkeys(SERVERS, 0.0)
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            name = (folder / "comm").read_text().strip()
            if name not in used:
                continue
            fields = (folder / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        used[name] += sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime
    return used


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@asynccontextmanager
async def fresh_store(kind: str, workdir: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench.db"
        return
    async with postgres_database("bench") as url:
        yield url


def dispatchers(workdir: Path, names: Names, url: str, count: int) -> list[Daemon]:
    """Dispatcher processes on the shipped rules (settings.toml's [triage] and rules.d/),
    their team queues given this run's prefix, without the golden tests (which name the
    shipped queues)."""
    rules = workdir / "rules.d"
    rules.mkdir()
    for source in (REPOSITORY / "rules.d").iterdir():
        (rules / source.name).write_text(prefixed(source.read_text(), names))
    text = (REPOSITORY / "settings.toml").read_text()
    triage = text[text.index("[triage]") :].replace('tests = ["rules-tests.toml"]\n', "")
    return [
        Daemon(
            workdir,
            names,
            store_url=url,
            settings_name=f"d{n}.toml",
            log_level="warning",
            extra=prefixed(triage, names),
        )
        for n in range(count)
    ]


def prefixed(rules: str, names: Names) -> str:
    """The rules with this run's queue names (queues are named in quotes)."""
    for team in TEAMS:
        rules = rules.replace(f'"{team}"', f'"{names.prefix}.{team}"')
    return rules


def env_for(names: Names, n: int, count: int) -> dict[str, str]:
    env = {"INGEST_QUEUES__TEAMS": json.dumps(team_queues(names))}
    if count > 1:
        env |= {
            "INGEST_QUEUES__CASE_OPEN_PARTITIONS": str(count),
            "INGEST_DISPATCHER__INSTANCE": str(n),
            "INGEST_DISPATCHER__INSTANCES": str(count),
        }
    return env


async def publish(channel: AbstractChannel, names: Names, partitions: int, cases: list[CaseOpen]):
    """As the channels publish, with confirms, at most IN_FLIGHT at once."""
    settings = names.queue_settings(partitions)
    limit = asyncio.Semaphore(IN_FLIGHT)
    exchanges = {"": channel.default_exchange}

    async def one(case: CaseOpen) -> None:
        exchange, routing_key = case_open_route(settings, case)
        if exchange not in exchanges:
            exchanges[exchange] = await channel.get_exchange(exchange, ensure=False)
        async with limit:
            await exchanges[exchange].publish(
                aio_pika.Message(case.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key,
            )

    await asyncio.gather(*(one(case) for case in cases))


async def run_one(name: str, total: int, warmup: int, customers: int) -> Result:
    kind, processes = name.split("-")
    count = int(processes)
    names = Names()
    with tempfile.TemporaryDirectory(prefix="bench-dispatcher-") as folder:
        workdir = Path(folder)
        async with fresh_store(kind, workdir) as url:
            daemons = dispatchers(workdir, names, url, count)
            try:
                seconds, cpu, window, messages = await drive(
                    daemons, names, total, warmup, customers
                )
            finally:
                for daemon in daemons:
                    daemon.stop()
                await delete_names(names, *team_queues(names))
    rate, cpu_ms = await baseline(messages)
    around = Around.between(kind, *window)
    return Result(name, len(messages), seconds, cpu, around, rate, cpu_ms)


def team_queues(names: Names) -> list[str]:
    return [f"{names.prefix}.{team}" for team in TEAMS]


async def drive(
    daemons: list[Daemon], names: Names, total: int, warmup: int, customers: int
) -> tuple[float, list[float], tuple[Machine, Machine], list[bytes]]:
    """Warm up, stop, fill case-open, start again and time the measured stream: its seconds,
    each dispatcher's CPU seconds, and the machine at its start and end."""
    partitions = len(daemons)
    warm = build(warmup, seed=3, customers=customers, tag="w-")
    measured = build(total, seed=7, customers=customers, tag="m-")
    directory = daemons[0].workdir / "directory.csv"
    directory.write_text(warm.directory)
    imported = run_ingest(daemons[0].settings_path, "customers", "import", str(directory))
    assert imported.returncode == 0, imported.stderr.decode()
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, names.queue_settings(partitions))
        arrivals = Arrivals()
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=1000)
        await start(daemons)
        for queue in [names.case_update, *team_queues(names)]:
            declared = await consumer.declare_queue(queue, passive=True)
            await declared.consume(arrivals.take, no_ack=False)

        arrivals.expect(warm.expected_new)
        await publish(channel, names, partitions, warm.phase_one)
        await asyncio.wait_for(arrivals.done.wait(), TIMEOUT_S)
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.log_text()

        stream = measured.phase_one + warm.build_phase_two(arrivals.case_of)
        measured.rng.shuffle(stream)
        arrivals.expect(measured.expected_new + warm.expected_updates)
        await publish(channel, names, partitions, stream)
        await start(daemons)
        assert all(d.process is not None for d in daemons)
        before = [cpu_seconds(d.process.pid) for d in daemons]  # type: ignore[union-attr]
        machine_before = Machine.now()
        await asyncio.wait_for(arrivals.done.wait(), TIMEOUT_S)
        machine_after = Machine.now()
        after = [cpu_seconds(d.process.pid) for d in daemons]  # type: ignore[union-attr]
        seconds = max(arrivals.arrived) - min(arrivals.arrived)
    cpu = [b - a for a, b in zip(before, after, strict=True)]
    return seconds, cpu, (machine_before, machine_after), [case.to_json() for case in stream]


async def start(daemons: list[Daemon]) -> None:
    for n, daemon in enumerate(daemons):
        daemon.start("dispatcher", env_for(daemon.names, n, len(daemons)))
    for daemon in daemons:
        await daemon.wait_ready()


async def baseline(bodies: list[bytes]) -> tuple[float, float]:
    """A bare dispatcher: take each body off a quorum queue, forward it to a topic exchange,
    acknowledge the batch and commit, as the dispatcher's runner does; msg/s and CPU ms."""
    names = Names()
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        setup = await connection.channel(publisher_confirms=True)
        arguments = quorum_arguments(names.case_open_dead, 5)
        await setup.declare_queue(names.case_open, durable=True, arguments=arguments)
        target = await setup.declare_queue(names.default, durable=True, arguments=arguments)
        exchange = await setup.declare_exchange(names.exchange, "topic", durable=True)
        await target.bind(exchange, routing_key=names.default)
        await asyncio.gather(
            *(
                setup.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=names.case_open,
                )
                for body in bodies
            )
        )
        try:
            return await _bare_dispatch(connection, names, len(bodies))
        finally:
            await delete_names(names)


async def _bare_dispatch(
    connection: aio_pika.abc.AbstractConnection, names: Names, total: int
) -> tuple[float, float]:
    channel = await connection.channel(publisher_confirms=False)
    transaction = channel.transaction()
    await transaction.select()
    await channel.set_qos(prefetch_count=200)
    exchange = await channel.get_exchange(names.exchange, ensure=False)
    queue = await channel.get_queue(names.case_open, ensure=False)
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(inbox.put, no_ack=False)
    handled = 0
    first = await inbox.get()
    began, cpu_began = time.perf_counter(), time.process_time()
    batch = [first]
    while True:
        while not inbox.empty() and len(batch) < 100:
            batch.append(inbox.get_nowait())
        for message in batch:
            forward = aio_pika.Message(
                message.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-schema": "case-open/1"},
            )
            await exchange.publish(forward, routing_key=names.default)
        await batch[-1].ack(multiple=True)
        await transaction.commit()
        handled += len(batch)
        if handled >= total:
            break
        batch = [await inbox.get()]
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    return total / seconds, cpu / total * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=10000, help="measured messages (default 10000)")
    parser.add_argument("--warmup", type=int, default=10000, help="warm-up messages")
    parser.add_argument("--customers", type=int, default=3000, help="directory size")
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="configurations")
    options = parser.parse_args()
    for name in options.only.split(","):
        result = await run_one(name, options.n, options.warmup, options.customers)
        for line in result.lines():
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
