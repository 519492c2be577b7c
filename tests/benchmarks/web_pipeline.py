"""End-to-end benchmark of the web channel, compared with plain RabbitMQ.

What it measures:

1. Pipeline: a real `ingest run --role all` daemon (web API, publisher, dispatcher, SQLite
   store), started through `tests.daemon` on its own port, files and queue names. N messages
   are POSTed to `/api/v1/messages` by aiohttp with bounded concurrency; a consumer on the
   team queue `<prefix>.support.general` records, per message, the time from the start of
   its HTTP request to its arrival as a forwarded case.
2. Baseline: the same broker with plain aio-pika: N messages of about 1 KB published with
   publisher confirms (same concurrency) to a quorum queue and consumed with manual acks;
   per-message time from the start of the publish to its arrival.

For both it prints throughput (delivered / (last arrival - first send)), p50 and p99
end-to-end latency, the count of failed sends, the ratio pipeline/baseline, and the CPU
used by this process and by the daemon (to show whether the load generator is the limit).

Run it as a module from the repository root, with RabbitMQ on 127.0.0.1:5672 (guest/guest):

    .venv/bin/python -m tests.benchmarks.web_pipeline [-n 5000] [--concurrency 64]

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from tests.daemon import API_KEY, BROKER_URL, Daemon, Names, delete_names

PREFETCH = 300
ARRIVAL_TIMEOUT_S = 300.0
HTTP_TIMEOUT_S = 60.0
BASELINE_BODY_BYTES = 1024


# --- measurement -------------------------------------------------------------------------


@dataclass
class Tracker:
    """Send start and arrival times of one run, keyed by source id."""

    pending: set[str]
    started: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    unknown: int = 0
    duplicates: int = 0
    body_bytes: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if not self.pending:
            self.done.set()

    def start(self, source_id: str) -> None:
        self.started[source_id] = time.perf_counter()

    def fail(self, source_id: str) -> None:
        """A send that was refused: it is no longer waited for."""
        self.failed += 1
        self._settle(source_id)

    def arrive(self, source_id: str | None, size: int) -> None:
        now = time.perf_counter()
        if source_id not in self.started:
            self.unknown += 1
        elif source_id in self.arrived:
            self.duplicates += 1
        else:
            self.arrived[source_id] = now
            self.body_bytes += size
            self._settle(source_id)

    def _settle(self, source_id: str) -> None:
        self.pending.discard(source_id)
        if not self.pending:
            self.done.set()

    async def wait(self, name: str, timeout_s: float = ARRIVAL_TIMEOUT_S) -> bool:
        """Wait for every accepted message; False (after saying so) when time runs out."""
        try:
            await asyncio.wait_for(self.done.wait(), timeout_s)
        except TimeoutError:
            print(
                f"{name}: timed out after {timeout_s:.0f} s: {len(self.arrived)} arrived, "
                f"{len(self.pending)} missing, {self.failed} sends failed"
            )
            return False
        if self.unknown or self.duplicates:
            print(f"{name}: {self.unknown} unknown, {self.duplicates} duplicate arrivals")
        return True


@dataclass(frozen=True)
class Result:
    name: str
    sent: int
    delivered: int
    failed: int
    throughput: float
    p50_ms: float
    p99_ms: float
    mean_body_bytes: float


def summarise(name: str, tracker: Tracker) -> Result:
    latencies = [(t - tracker.started[sid]) * 1000 for sid, t in tracker.arrived.items()]
    n = len(latencies)
    p50 = p99 = throughput = float("nan")
    if n == 1:
        p50 = p99 = latencies[0]
    elif n > 1:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    if n:
        throughput = n / (max(tracker.arrived.values()) - min(tracker.started.values()))
    body = tracker.body_bytes / n if n else 0.0
    return Result(name, len(tracker.started), n, tracker.failed, throughput, p50, p99, body)


@dataclass(frozen=True)
class CpuSample:
    """Wall clock and CPU seconds used so far by this process and by the daemon."""

    wall: float
    own: float
    daemon: float | None

    @classmethod
    def take(cls, daemon: Daemon) -> CpuSample:
        pid = daemon.process.pid if daemon.process else None
        return cls(time.perf_counter(), time.process_time(), process_cpu_s(pid))


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of `pid` from /proc (Linux); None where that is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_line(phase: str, before: CpuSample, after: CpuSample) -> str:
    """CPU use over a phase, as a percentage of one core."""
    wall = after.wall - before.wall
    own = 100 * (after.own - before.own) / wall
    line = f"CPU during {phase:<8} ({wall:5.1f} s): benchmark process {own:3.0f}%"
    if before.daemon is not None and after.daemon is not None:
        line += f", daemon {100 * (after.daemon - before.daemon) / wall:3.0f}%"
    return line


# --- broker helpers ----------------------------------------------------------------------


async def connect(name: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(BROKER_URL, client_properties={"connection_name": name})


async def start_consumer(
    connection: AbstractRobustConnection, queue_name: str, tracker: Tracker, passive: bool
) -> AbstractQueue:
    """Consume `queue_name` on its own channel (manual ack, prefetch) into `tracker`."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    if passive:  # declared by the daemon, with arguments we need not repeat
        queue = await channel.declare_queue(queue_name, passive=True)
    else:
        arguments = {"x-queue-type": "quorum"}
        queue = await channel.declare_queue(queue_name, durable=True, arguments=arguments)

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            source_id = json.loads(message.body).get("source_id")
        except (ValueError, AttributeError):
            source_id = None
        tracker.arrive(source_id, len(message.body))
        await message.ack()

    await queue.consume(on_message)
    return queue


async def run_bounded(
    count: int, concurrency: int, send_one: Callable[[int], Awaitable[None]]
) -> None:
    """Run send_one(0..count-1) on `concurrency` workers sharing one index iterator."""
    indices = iter(range(count))

    async def worker() -> None:
        for i in indices:
            await send_one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def baseline_queue(names: Names) -> str:
    return f"{names.prefix}.baseline"


# --- the two runs ------------------------------------------------------------------------


def web_message(i: int) -> bytes:
    return json.dumps(
        {
            "sender": {"email": f"customer{i}@example.com", "name": f"Customer {i}"},
            "subject": f"Benchmark {i}",
            "text": f"Message number {i} of the benchmark.",
        }
    ).encode()


async def submit_all(url: str, count: int, concurrency: int, tracker: Tracker) -> None:
    """POST `count` messages with aiohttp; print the answers other than 202."""
    other: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:

        async def send_one(i: int) -> None:
            source_id = f"bench-{i}"
            tracker.start(source_id)
            try:
                async with session.post(
                    url, data=web_message(i), headers={"Idempotency-Key": source_id}
                ) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as error:
                status = f"error ({type(error).__name__})"
            if status != "202":
                other[status] = other.get(status, 0) + 1
                tracker.fail(source_id)

        await run_bounded(count, concurrency, send_one)
    if other:
        print(f"pipeline: non-202 answers: {other}")


async def run_pipeline(daemon: Daemon, count: int, concurrency: int) -> tuple[Result, bool]:
    tracker = Tracker(pending={f"bench-{i}" for i in range(count)})
    async with await connect("bench-pipeline-consume") as connection:
        await start_consumer(connection, daemon.names.default, tracker, passive=True)
        await submit_all(f"{daemon.url}/api/v1/messages", count, concurrency, tracker)
        complete = await tracker.wait("pipeline")
    return summarise("pipeline", tracker), complete


def baseline_body(i: int) -> bytes:
    """About BASELINE_BODY_BYTES of JSON, shaped a little like a case."""
    document = {
        "id": uuid.uuid4().hex,
        "schema": "case-open/1",
        "channel": "web",
        "source_id": f"base-{i}",
        "sender": {"kind": "email", "address": f"customer{i}@example.com"},
        "subject": f"Benchmark {i}",
        "text": f"Message number {i} of the benchmark.",
        "padding": "",
    }
    document["padding"] = "x" * max(BASELINE_BODY_BYTES - len(json.dumps(document)), 0)
    return json.dumps(document).encode()


async def publish_all(
    connection: AbstractRobustConnection, queue: str, count: int, conc: int, tracker: Tracker
) -> None:
    """Publish `count` persistent messages with confirms, `conc` confirms in flight."""
    channel = await connection.channel(publisher_confirms=True)

    async def send_one(i: int) -> None:
        source_id = f"base-{i}"
        message = aio_pika.Message(
            baseline_body(i),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        tracker.start(source_id)
        try:
            await channel.default_exchange.publish(message, routing_key=queue)
        except Exception as error:  # a nack or a closed channel: report and go on
            print(f"baseline: publish {source_id} failed: {type(error).__name__}: {error}")
            tracker.fail(source_id)

    await run_bounded(count, conc, send_one)
    await channel.close()


async def run_baseline(names: Names, count: int, concurrency: int) -> tuple[Result, bool]:
    tracker = Tracker(pending={f"base-{i}" for i in range(count)})
    consumer = await connect("bench-baseline-consume")
    publisher = await connect("bench-baseline-publish")
    async with consumer, publisher:
        await start_consumer(consumer, baseline_queue(names), tracker, passive=False)
        await publish_all(publisher, baseline_queue(names), count, concurrency, tracker)
        complete = await tracker.wait("baseline")
    return summarise("baseline", tracker), complete


# --- report and main ---------------------------------------------------------------------


def print_table(pipeline: Result, baseline: Result) -> None:
    header = (
        f"{'run':<10} {'sent':>6} {'delivered':>9} {'failed':>6} {'msg/s':>9} "
        f"{'p50 ms':>9} {'p99 ms':>9} {'body B':>7}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for r in (pipeline, baseline):
        print(
            f"{r.name:<10} {r.sent:>6} {r.delivered:>9} {r.failed:>6} {r.throughput:>9.1f} "
            f"{r.p50_ms:>9.1f} {r.p99_ms:>9.1f} {r.mean_body_bytes:>7.0f}"
        )
    ratios = [
        f"{a / b:.2f}x" if b else "n/a"
        for a, b in [
            (pipeline.throughput, baseline.throughput),
            (pipeline.p50_ms, baseline.p50_ms),
            (pipeline.p99_ms, baseline.p99_ms),
        ]
    ]
    print(f"{'ratio':<10} {'':>6} {'':>9} {'':>6} {ratios[0]:>9} {ratios[1]:>9} {ratios[2]:>9}")
    print("(ratio = pipeline / baseline)")


def report_log(daemon: Daemon, failed: bool) -> None:
    """Show how much the daemon logged; keep a copy outside the temp dir if it matters."""
    text = daemon.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines and not failed:
        print("daemon log: empty (level warning)")
        return
    kept = Path(tempfile.gettempdir()) / f"web_pipeline-{daemon.names.prefix}.log"
    kept.write_text(text)
    print(f"daemon log: {len(lines)} lines, kept at {kept}")
    for line in lines[:20]:
        print(f"  | {line[:300]}")


async def measure(daemon: Daemon, count: int, concurrency: int) -> bool:
    """Start the daemon, run both measurements, print the figures; True if all arrived."""
    started = time.perf_counter()
    await daemon.start().wait_ready()
    print(f"daemon ready in {time.perf_counter() - started:.1f} s on {daemon.url}")
    before = CpuSample.take(daemon)
    pipeline, ok_pipeline = await run_pipeline(daemon, count, concurrency)
    middle = CpuSample.take(daemon)
    baseline, ok_baseline = await run_baseline(daemon.names, count, concurrency)
    after = CpuSample.take(daemon)
    print_table(pipeline, baseline)
    print()
    print(cpu_line("pipeline", before, middle))
    print(cpu_line("baseline", middle, after))
    print("(a benchmark process near 100% means the load generator limits the figures)")
    return ok_pipeline and ok_baseline


async def benchmark(count: int, concurrency: int) -> int:
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    print(f"prefix {names.prefix}, n={count}, concurrency={concurrency}")
    with tempfile.TemporaryDirectory(prefix="web_pipeline-") as tmp:
        daemon = Daemon(Path(tmp), names, log_level="warning")
        ok = False
        try:
            ok = await measure(daemon, count, concurrency)
        except Exception as error:
            print(f"benchmark failed: {type(error).__name__}: {str(error)[:500]}")
        finally:
            code = daemon.stop()
            print(f"daemon exit code: {code}")
            ok = ok and code in (0, None)
            report_log(daemon, failed=not ok)
            try:
                await delete_names(names, baseline_queue(names))
            except Exception as error:
                print(f"could not delete the {names.prefix}.* queues: {error!r}")
                ok = False
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=64, help="sends in flight (64)")
    args = parser.parse_args()
    sys.exit(asyncio.run(benchmark(args.n, args.concurrency)))


if __name__ == "__main__":
    main()
