"""Benchmark of the dispatcher: throughput and added latency with history lookup and dedup.

For each configuration (store SQLite or PostgreSQL; one or three `ingest run --role
dispatcher` processes on the same queue and store) it starts the dispatchers through
`tests.daemon` on fresh queue names and a fresh store (a new PostgreSQL database, dropped
afterwards), imports the scenario's customer directory, then sends the scenario stream of
`tests.scenario` (60% originals, 20% repeats, 10% cross-channel duplicates, 10% follow-ups;
the follow-ups and duplicates once the originals are through) to `case-open`:

- saturation: every message published up front; throughput = messages handled (forwarded or
  dropped) / time from the first publish to the last forward;
- latency: messages published at `--rate` per second; for each forwarded message, the time
  from its publish to its arrival on the team or case-update queue (p50, p99, max). That is
  the latency the dispatcher adds (decision, history, store commit, broker transaction).

Run it from the repository root, with RabbitMQ and PostgreSQL on 127.0.0.1:

    .venv/bin/python -m tests.benchmarks.dispatcher [-n 5000] [--rate 100]
        [--only sqlite-1,postgresql-3]

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from ingest.topology import declare_topology
from normalizer.model import CaseOpen
from tests.daemon import BROKER_URL, Daemon, Names, delete_names, postgres_database, run_ingest
from tests.scenario import build

CONFIGURATIONS = ("sqlite-1", "sqlite-3", "postgresql-1", "postgresql-3")
TIMEOUT_S = 900.0
IN_FLIGHT = 500


@dataclass
class Arrivals:
    """Publish and arrival times by case-open id, and a count to wait for."""

    sent: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    case_of: dict[str, str] = field(default_factory=dict)  # source id -> case reference
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def take(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        self.arrived[body["id"]] = time.perf_counter()
        self.case_of[body["source_id"]] = body["dedup"]["case_id"]
        await message.ack()
        if len(self.arrived) >= self.expected:
            self.done.set()


@dataclass(frozen=True)
class Result:
    name: str
    mode: str
    messages: int
    seconds: float
    latencies_ms: list[float]

    def line(self) -> str:
        rate = self.messages / self.seconds
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{self.name:14} {self.mode:10} {self.messages:6d} msgs {self.seconds:7.1f} s "
            f"{rate:8.1f} msg/s   added latency p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {lat[-1]:7.1f} ms"
        )


@asynccontextmanager
async def fresh_store(kind: str, workdir: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/bench.db"
        return
    async with postgres_database("bench") as url:
        yield url


async def publish(
    channel: AbstractChannel,
    queue: str,
    cases: Sequence[CaseOpen],
    arrivals: Arrivals,
    rate: float | None,
) -> None:
    """Publish with confirms, at most IN_FLIGHT at once, at `rate` per second if given."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    start = time.perf_counter()

    async def one(index: int, case: CaseOpen) -> None:
        if rate:
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        async with limit:
            arrivals.sent[case.id] = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(case.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )

    await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))


async def run_one(name: str, total: int, rate: float | None) -> Result:
    kind, processes = name.split("-")
    names = Names()
    with tempfile.TemporaryDirectory(prefix="bench-dispatcher-") as folder:
        workdir = Path(folder)
        async with fresh_store(kind, workdir) as url:
            daemons = [
                Daemon(
                    workdir, names, store_url=url, settings_name=f"d{n}.toml", log_level="warning"
                )
                for n in range(int(processes))
            ]
            try:
                return await drive(name, daemons, names, total, rate)
            finally:
                for daemon in daemons:
                    daemon.stop()
                await delete_names(names)


async def drive(
    name: str, daemons: list[Daemon], names: Names, total: int, rate: float | None
) -> Result:
    scenario = build(total)
    directory = daemons[0].workdir / "directory.csv"
    directory.write_text(scenario.directory)
    imported = run_ingest(daemons[0].settings_path, "customers", "import", str(directory))
    assert imported.returncode == 0, imported.stderr.decode()
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_topology(channel, names.queue_settings())
        for daemon in daemons:
            daemon.start(role="dispatcher")
        for daemon in daemons:
            await daemon.wait_ready()
        arrivals = Arrivals(expected=scenario.expected_new)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=500)
        for queue in (names.default, names.case_update):
            declared = await consumer.get_queue(queue)
            await declared.consume(arrivals.take, no_ack=False)

        begin = time.perf_counter()
        await publish(channel, names.case_open, scenario.phase_one, arrivals, rate)
        await asyncio.wait_for(arrivals.done.wait(), TIMEOUT_S)
        arrivals.expected += scenario.expected_updates
        arrivals.done.clear()
        phase_two = scenario.build_phase_two(arrivals.case_of)
        await publish(channel, names.case_open, phase_two, arrivals, rate)
        await asyncio.wait_for(arrivals.done.wait(), TIMEOUT_S)
        seconds = max(arrivals.arrived.values()) - begin
    latencies = [(arrivals.arrived[i] - arrivals.sent[i]) * 1000 for i in arrivals.arrived]
    mode = f"{rate:g}/s" if rate else "saturated"
    return Result(name, mode, total, seconds, latencies)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s for the latency runs")
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="configurations to run")
    options = parser.parse_args()
    for name in options.only.split(","):
        for rate in (None, options.rate):
            print((await run_one(name, options.n, rate)).line(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
