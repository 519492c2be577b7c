"""End-to-end benchmark of the web channel, compared with plain RabbitMQ.

What it measures:

1. Pipeline: a real `ingest run --role all` daemon (web API, publisher, dispatcher, SQLite
   store) on its own port, files and queue names. N messages are POSTed to
   `/api/v1/messages` with bounded concurrency; a consumer on the team queue
   `<prefix>.support.general` records, per message, the time from the start of its HTTP
   request to its arrival as a forwarded case.
2. Baseline: the same broker with plain aio-pika: N messages of about 1 KB published with
   publisher confirms (same concurrency) to a quorum queue and consumed with manual acks;
   per-message time from the start of the publish to its arrival.

For both it prints throughput (delivered / (last arrival - first send)), p50 and p99
end-to-end latency, the count of failed sends, and the ratio pipeline/baseline.

Run it from the repository root, with RabbitMQ on 127.0.0.1:5672 (guest/guest):

    .venv/bin/python tests/benchmarks/web_pipeline.py [-n 5000] [--concurrency 64]

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
API_KEY = "bench-key"
PREFETCH = 300
READY_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
BASELINE_BODY_BYTES = 1024


# --- names and settings ----------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Queue and exchange names under one random prefix, so runs never collide."""

    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")

    @property
    def team(self) -> str:
        return f"{self.prefix}.support.general"

    @property
    def baseline(self) -> str:
        return f"{self.prefix}.baseline"

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.cases"

    def queues(self) -> list[str]:
        suffixes = ["case-open", "case-open.dead", "case-update", "support.general"]
        return [f"{self.prefix}.{suffix}" for suffix in [*suffixes, "cases.dead", "baseline"]]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_text(workdir: Path, names: Names, port: int) -> str:
    """The daemon's settings file for this run."""
    p = names.prefix
    return f"""
[broker]
url = "{BROKER_URL}"

[store]
url = "sqlite:///{workdir}/ingest.db"

[paths]
data_dir = "{workdir}/var"

[http]
host = "127.0.0.1"
port = {port}

[channels.web]
api_keys = ["{API_KEY}"]

[queues]
case_open = "{p}.case-open"
case_open_dead = "{p}.case-open.dead"
cases_exchange = "{p}.cases"
case_update = "{p}.case-update"
default = "{p}.support.general"
teams = ["{p}.support.general"]
team_dead = "{p}.cases.dead"

[log]
level = "warning"
"""


# --- the daemon --------------------------------------------------------------------------


class Daemon:
    """One `ingest run --role all` subprocess with its settings and log in `workdir`."""

    def __init__(self, workdir: Path, names: Names) -> None:
        self.port = free_port()
        self.settings_path = workdir / "settings.toml"
        self.settings_path.write_text(settings_text(workdir, names, self.port))
        self.log_path = workdir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "ingest", "run", "--settings", str(self.settings_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--role", "all"], stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz until it answers 200; raise if the daemon exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    raise RuntimeError("the daemon exited during start-up")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the daemon was not ready within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then kill after `timeout_s`; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"daemon still running {timeout_s:.0f} s after SIGTERM: killing it")
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- measurement -------------------------------------------------------------------------


@dataclass
class Tracker:
    """Send start and arrival times of one run, keyed by source id."""

    expected: int
    started: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    failed: int = 0
    unknown: int = 0
    redelivered: int = 0
    body_bytes: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, source_ids: list[str]) -> None:
        self.pending.update(source_ids)
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
        if source_id is None or source_id not in self.started:
            self.unknown += 1
            return
        if source_id in self.arrived:
            self.redelivered += 1
            return
        self.arrived[source_id] = now
        self.body_bytes += size
        self._settle(source_id)

    def _settle(self, source_id: str) -> None:
        self.pending.discard(source_id)
        if not self.pending:
            self.done.set()

    def latencies_ms(self) -> list[float]:
        return [(t - self.started[sid]) * 1000 for sid, t in self.arrived.items()]


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


def p50_p99(values: list[float]) -> tuple[float, float]:
    """The 50th and 99th percentiles, interpolated within the observed range."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def summarise(name: str, tracker: Tracker) -> Result:
    latencies = tracker.latencies_ms()
    delivered = len(latencies)
    p50 = p99 = throughput = float("nan")
    if delivered:
        p50, p99 = p50_p99(latencies)
        elapsed = max(tracker.arrived.values()) - min(tracker.started.values())
        throughput = delivered / elapsed
    return Result(
        name=name,
        sent=len(tracker.started),
        delivered=delivered,
        failed=tracker.failed,
        throughput=throughput,
        p50_ms=p50,
        p99_ms=p99,
        mean_body_bytes=tracker.body_bytes / delivered if delivered else 0.0,
    )


@dataclass(frozen=True)
class CpuSample:
    """Wall clock and CPU seconds used so far by this process and by the daemon."""

    wall: float
    own: float
    daemon: float | None


def daemon_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of `pid` from /proc (Linux); None where that is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_sample(daemon: Daemon) -> CpuSample:
    pid = daemon.process.pid if daemon.process else None
    own = time.process_time()
    return CpuSample(time.perf_counter(), own, daemon_cpu_s(pid) if pid else None)


def cpu_line(phase: str, before: CpuSample, after: CpuSample) -> str:
    """CPU use over a phase, as a percentage of one core."""
    wall = after.wall - before.wall
    own = 100 * (after.own - before.own) / wall
    line = f"CPU during {phase:<8} ({wall:5.1f} s): benchmark process {own:3.0f}%"
    if before.daemon is not None and after.daemon is not None:
        line += f", daemon {100 * (after.daemon - before.daemon) / wall:3.0f}%"
    return line


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
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            source_id = json.loads(message.body).get("source_id")
        except (ValueError, AttributeError):
            source_id = None
        tracker.arrive(source_id, len(message.body))
        await message.ack()

    await queue.consume(on_message)
    return queue


async def wait_arrivals(tracker: Tracker, name: str, timeout_s: float) -> bool:
    """Wait for every accepted message; False (after saying so) when time runs out."""
    if tracker.done.is_set():
        return True
    try:
        await asyncio.wait_for(tracker.done.wait(), timeout_s)
    except TimeoutError:
        print(
            f"{name}: timed out after {timeout_s:.0f} s: {len(tracker.arrived)} of "
            f"{tracker.expected} arrived ({tracker.failed} sends failed)"
        )
        return False
    return True


async def run_bounded(
    count: int, concurrency: int, send_one: Callable[[int], Awaitable[None]]
) -> None:
    """Run send_one(0..count-1) with at most `concurrency` in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with semaphore:
            await send_one(i)

    await asyncio.gather(*(bounded(i) for i in range(count)))


# --- pipeline run --------------------------------------------------------------------------


def web_message(i: int) -> dict[str, object]:
    return {
        "sender": {"email": f"customer{i}@example.com", "name": f"Customer {i}"},
        "subject": f"Benchmark {i}",
        "text": f"Message number {i} of the benchmark.",
    }


async def submit_all(url: str, count: int, concurrency: int, tracker: Tracker) -> dict[str, int]:
    """POST `count` messages; answers counted by status ("error" for transport errors)."""
    answers: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    base_headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def send_one(i: int) -> None:
            source_id = f"bench-{i}"
            headers = {**base_headers, "Idempotency-Key": source_id}
            body = json.dumps(web_message(i)).encode()
            tracker.start(source_id)
            try:
                status = str((await client.post(url, content=body, headers=headers)).status_code)
            except httpx.HTTPError as error:
                status = f"error ({type(error).__name__})"
            answers[status] = answers.get(status, 0) + 1
            if status != "202":
                tracker.fail(source_id)

        await run_bounded(count, concurrency, send_one)
    return answers


async def run_pipeline(
    daemon: Daemon, connection: AbstractRobustConnection, names: Names, count: int, conc: int
) -> tuple[Result, bool]:
    tracker = Tracker(expected=count)
    tracker.expect([f"bench-{i}" for i in range(count)])
    queue = await start_consumer(connection, names.team, tracker, passive=True)
    answers = await submit_all(f"{daemon.url}/api/v1/messages", count, conc, tracker)
    non_202 = {status: n for status, n in answers.items() if status != "202"}
    if non_202:
        print(f"pipeline: non-202 answers: {non_202}")
    complete = await wait_arrivals(tracker, "pipeline", ARRIVAL_TIMEOUT_S)
    await queue.channel.close()
    if tracker.unknown or tracker.redelivered:
        print(f"pipeline: {tracker.unknown} unknown, {tracker.redelivered} duplicate arrivals")
    return summarise("pipeline", tracker), complete


# --- baseline run --------------------------------------------------------------------------


def baseline_body(i: int) -> bytes:
    """About BASELINE_BODY_BYTES of JSON, shaped a little like a case."""
    document: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "schema": "case-open/1",
        "channel": "web",
        "source_id": f"base-{i}",
        "sender": {"kind": "email", "address": f"customer{i}@example.com"},
        "subject": f"Benchmark {i}",
        "text": f"Message number {i} of the benchmark.",
        "padding": "",
    }
    room = BASELINE_BODY_BYTES - len(json.dumps(document))
    document["padding"] = "x" * max(room, 0)
    return json.dumps(document).encode()


async def publish_all(
    connection: AbstractRobustConnection, queue_name: str, count: int, conc: int, tracker: Tracker
) -> None:
    """Publish `count` persistent messages with confirms, `conc` confirms in flight."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = channel.default_exchange

    async def send_one(i: int) -> None:
        source_id = f"base-{i}"
        message = aio_pika.Message(
            baseline_body(i),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        tracker.start(source_id)
        try:
            await exchange.publish(message, routing_key=queue_name)
        except Exception as error:  # a nack or a closed channel: report and go on
            print(f"baseline: publish {source_id} failed: {type(error).__name__}: {error}")
            tracker.fail(source_id)

    await run_bounded(count, conc, send_one)
    await channel.close()


async def run_baseline(names: Names, count: int, conc: int) -> tuple[Result, bool]:
    tracker = Tracker(expected=count)
    tracker.expect([f"base-{i}" for i in range(count)])
    consumer = await connect("bench-baseline-consume")
    publisher = await connect("bench-baseline-publish")
    async with consumer, publisher:
        await start_consumer(consumer, names.baseline, tracker, passive=False)
        await publish_all(publisher, names.baseline, count, conc, tracker)
        complete = await wait_arrivals(tracker, "baseline", ARRIVAL_TIMEOUT_S)
    return summarise("baseline", tracker), complete


# --- report and clean-up -------------------------------------------------------------------


def print_table(pipeline: Result, baseline: Result) -> None:
    header = (
        f"{'run':<10} {'sent':>6} {'delivered':>9} {'failed':>6} {'msg/s':>9} "
        f"{'p50 ms':>9} {'p99 ms':>9} {'body B':>7}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in (pipeline, baseline):
        print(
            f"{r.name:<10} {r.sent:>6} {r.delivered:>9} {r.failed:>6} {r.throughput:>9.1f} "
            f"{r.p50_ms:>9.1f} {r.p99_ms:>9.1f} {r.mean_body_bytes:>7.0f}"
        )

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    throughput = ratio(pipeline.throughput, baseline.throughput)
    p50 = ratio(pipeline.p50_ms, baseline.p50_ms)
    p99 = ratio(pipeline.p99_ms, baseline.p99_ms)
    print(f"{'ratio':<10} {'':>6} {'':>9} {'':>6} {throughput:>9} {p50:>9} {p99:>9}")
    print("(ratio = pipeline / baseline)")


async def delete_names(names: Names) -> None:
    """Delete every queue and the exchange this run created."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        for queue in names.queues():
            await channel.queue_delete(queue)
        await channel.exchange_delete(names.exchange)


def report_log(daemon: Daemon, names: Names, failed: bool) -> None:
    """Show how much the daemon logged; keep a copy outside the temp dir if it matters."""
    text = daemon.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines and not failed:
        print("daemon log: empty (level warning)")
        return
    kept = Path(tempfile.gettempdir()) / f"web_pipeline-{names.prefix}.log"
    kept.write_text(text)
    print(f"daemon log: {len(lines)} lines, kept at {kept}")
    for line in lines[:20]:
        print(f"  | {line[:300]}")


async def benchmark(count: int, concurrency: int) -> int:
    names = Names()
    print(f"prefix {names.prefix}, n={count}, concurrency={concurrency}")
    failed = True
    with tempfile.TemporaryDirectory(prefix="web_pipeline-") as tmp:
        daemon = Daemon(Path(tmp), names)
        try:
            daemon.start()
            started = time.perf_counter()
            await daemon.wait_ready()
            print(f"daemon ready in {time.perf_counter() - started:.1f} s on {daemon.url}")
            connection = await connect("bench-pipeline-consume")
            before = cpu_sample(daemon)
            async with connection:
                pipeline, ok_pipeline = await run_pipeline(
                    daemon, connection, names, count, concurrency
                )
            middle = cpu_sample(daemon)
            baseline, ok_baseline = await run_baseline(names, count, concurrency)
            after = cpu_sample(daemon)
            print_table(pipeline, baseline)
            print()
            print(cpu_line("pipeline", before, middle))
            print(cpu_line("baseline", middle, after))
            print("(a benchmark process near 100% means the load generator limits the figures)")
            failed = not (ok_pipeline and ok_baseline)
        except Exception as error:
            print(f"benchmark failed: {type(error).__name__}: {error}")
        finally:
            code = daemon.stop()
            print(f"daemon exit code: {code}")
            failed = failed or code not in (0, None)
            report_log(daemon, names, failed)
            try:
                await delete_names(names)
            except Exception as error:
                print(f"could not delete the {names.prefix}.* queues: {error!r}")
                failed = True
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=64, help="sends in flight (64)")
    args = parser.parse_args()
    sys.exit(asyncio.run(benchmark(args.n, args.concurrency)))


if __name__ == "__main__":
    main()
