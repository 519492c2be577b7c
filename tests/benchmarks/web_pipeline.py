"""End-to-end benchmark of the web channel, compared with plain RabbitMQ.

What it measures:

1. Pipeline: a real `ingest run --role all` daemon (web API, publisher, dispatcher, SQLite
   store), started through `tests.daemon` on its own port, files and queue names. N messages
   are POSTed to `/api/v1/messages` by aiohttp with bounded concurrency; a consumer on the
   team queue `<prefix>.support.general` records, per message, the time from the start of
   its HTTP request to its arrival as a forwarded case.
   With `--split` the daemon runs as two processes on the same queue names, each with its
   own folder and port: `--role channels` (which receives the POSTs) and `--role dispatcher`,
   so that the two roles can use two CPU cores.
2. Baseline: the same broker with plain aio-pika: N messages of about 1 KB published with
   publisher confirms (same concurrency) to a quorum queue and consumed with manual acks;
   per-message time from the start of the publish to its arrival.

By default both runs send as fast as the concurrency allows, so the latency includes the
backlog at saturation. With `--rate R`, message i of each run is sent no earlier than
start + i / R (still at most `--concurrency` in flight), to measure latency below saturation;
the largest delay of a send behind that schedule is printed.

For both it prints throughput (delivered / (last arrival - first send)), p50 and p99
end-to-end latency, p50 and p99 of the answer (the 202 for the pipeline, the publisher confirm
for the baseline), the count of failed sends, the ratio pipeline/baseline, and the CPU used
by this process and by each daemon process, per accepted message too (to show whether the
load generator is the limit; on a shared machine CPU per message is the steadier figure, and
the dispatcher's, whose code a change to the channels leaves alone, is a control).

Before the timed runs, `--warm-up` messages (300) are sent untimed, so that start-up work
(the language model, caches, connections) is not counted per message. After them, unless
`--paced 0`, both runs are repeated at `--paced` messages per second (500) with `--paced-n`
messages (2500), for the 202 latency below saturation. Last it prints the channels role's
CPU per accepted message as the accepted/s one core would sustain (the goal: 0.5 ms, 2,000/s).

Run it as a module from the repository root, with RabbitMQ on 127.0.0.1:5672 (guest/guest):

    .venv/bin/python -m tests.benchmarks.web_pipeline [-n 5000] [--concurrency 64]
        [--rate 300] [--split] [--warm-up 300] [--paced 500] [--paced-n 2500]

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
    answered: dict[str, float] = field(default_factory=dict)  # the 202, for the pipeline
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
    late_ms: float  # the largest delay of a send behind its --rate slot; 0 without a rate
    answer_p50_ms: float  # to the 202 for the pipeline, to the confirm for the baseline
    answer_p99_ms: float


def summarise(name: str, tracker: Tracker, late_s: float) -> Result:
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
    sent = len(tracker.started)
    answer_p50, answer_p99 = answer_p50_p99(tracker)
    return Result(
        name,
        sent,
        n,
        tracker.failed,
        throughput,
        p50,
        p99,
        body,
        late_s * 1000,
        answer_p50,
        answer_p99,
    )


@dataclass(frozen=True)
class CpuSample:
    """Wall clock and CPU seconds used so far by this process and by each daemon (by role)."""

    wall: float
    own: float
    daemons: dict[str, float | None]
    loops: dict[str, float | None]  # each daemon's main thread: its event loop

    @classmethod
    def take(cls, deployment: Deployment) -> CpuSample:
        pids = deployment.pids()
        daemons = {role: process_cpu_s(pid) for role, pid in pids.items()}
        loops = {role: thread_cpu_s(pid) for role, pid in pids.items()}
        return cls(time.perf_counter(), time.process_time(), daemons, loops)


def thread_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of the main thread of `pid` (a daemon's event loop), as process_cpu_s."""
    return process_cpu_s(pid, f"task/{pid}/")


def process_cpu_s(pid: int | None, task: str = "") -> float | None:
    """User + system CPU seconds of `pid` from /proc (Linux); None where that is missing."""
    try:
        fields = Path(f"/proc/{pid}/{task}stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_line(phase: str, before: CpuSample, after: CpuSample, accepted: int = 0) -> str:
    """CPU use over a phase, as a percentage of one core (and, given the messages accepted,
    each daemon's CPU milliseconds per message: the figure a shared machine disturbs least)."""
    wall = after.wall - before.wall
    own = 100 * (after.own - before.own) / wall
    line = f"CPU during {phase:<8} ({wall:5.1f} s): benchmark process {own:3.0f}%"
    used: list[float] = []
    for role, start in before.daemons.items():
        end = after.daemons.get(role)
        if start is not None and end is not None:
            used.append(100 * (end - start) / wall)
            line += f", daemon {role} {used[-1]:3.0f}%"
            if accepted:
                line += f" ({1000 * (end - start) / accepted:.2f} ms per message"
                loop_start, loop_end = before.loops.get(role), after.loops.get(role)
                if loop_start is not None and loop_end is not None:
                    loop = 1000 * (loop_end - loop_start) / accepted
                    line += f", {loop:.2f} of them on the event loop"
                line += ")"
    if len(used) > 1:
        line += f", daemons together {sum(used):3.0f}%"
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
    count: int,
    concurrency: int,
    send_one: Callable[[int], Awaitable[None]],
    rate: float | None = None,
) -> float:
    """Run send_one(0..count-1) on `concurrency` workers sharing one index iterator.

    With a `rate` (per second), send i starts no earlier than start + i / rate. Returns the
    largest delay, in seconds, of a send behind that slot (0.0 without a rate): a large one
    means the concurrency cap, not the rate, set the pace.
    """
    indices = iter(range(count))
    start = time.perf_counter()
    late_s = 0.0

    async def worker() -> None:
        nonlocal late_s
        for i in indices:
            if rate is not None:
                wait_s = start + i / rate - time.perf_counter()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                else:
                    late_s = max(late_s, -wait_s)
            await send_one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return late_s


def baseline_queue(names: Names) -> str:
    return f"{names.prefix}.baseline"


# --- the two runs ------------------------------------------------------------------------


def web_message(i: int, run: str = "bench") -> bytes:
    """Message i of a run; runs differ in their text (the dispatcher takes the same text
    from the same sender again as a duplicate, which never reaches the team queue)."""
    return json.dumps(
        {
            "sender": {"email": f"customer{i}@example.com", "name": f"Customer {i}"},
            "subject": f"Benchmark {i}",
            "text": f"Message number {i} of the benchmark's {run} run.",
        }
    ).encode()


async def submit_all(
    url: str, count: int, concurrency: int, rate: float | None, tracker: Tracker, prefix: str
) -> float:
    """POST `count` messages with aiohttp, paced by `rate`; print the answers other than 202.

    Returns the largest delay of a send behind its slot (see run_bounded).
    """
    other: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:

        async def send_one(i: int) -> None:
            source_id = f"{prefix}-{i}"
            tracker.start(source_id)
            try:
                async with session.post(
                    url, data=web_message(i, prefix), headers={"Idempotency-Key": source_id}
                ) as response:
                    await response.read()
                    status = str(response.status)
                    tracker.answered[source_id] = time.perf_counter()
            except (aiohttp.ClientError, TimeoutError) as error:
                status = f"error ({type(error).__name__})"
            if status != "202":
                other[status] = other.get(status, 0) + 1
                tracker.fail(source_id)

        late_s = await run_bounded(count, concurrency, send_one, rate)
    if other:
        print(f"pipeline: non-202 answers: {other}")
    return late_s


async def run_pipeline(
    daemon: Daemon, count: int, concurrency: int, rate: float | None, prefix: str = "bench"
) -> tuple[Result, bool]:
    """Submit to `daemon` (the one with the web API) and wait for the forwarded cases. Each
    run of a deployment needs its own `prefix`: a repeated idempotency key opens no case."""
    tracker = Tracker(pending={f"{prefix}-{i}" for i in range(count)})
    url = f"{daemon.url}/api/v1/messages"
    async with await connect("bench-pipeline-consume") as connection:
        await start_consumer(connection, daemon.names.default, tracker, passive=True)
        late_s = await submit_all(url, count, concurrency, rate, tracker, prefix)
        complete = await tracker.wait("pipeline")
    return summarise("pipeline", tracker, late_s), complete


def baseline_body(i: int, prefix: str) -> bytes:
    """About BASELINE_BODY_BYTES of JSON, shaped a little like a case."""
    document = {
        "id": uuid.uuid4().hex,
        "schema": "case-open/1",
        "channel": "web",
        "source_id": f"{prefix}-{i}",
        "sender": {"kind": "email", "address": f"customer{i}@example.com"},
        "subject": f"Benchmark {i}",
        "text": f"Message number {i} of the benchmark.",
        "padding": "",
    }
    document["padding"] = "x" * max(BASELINE_BODY_BYTES - len(json.dumps(document)), 0)
    return json.dumps(document).encode()


async def publish_all(
    connection: AbstractRobustConnection,
    queue: str,
    count: int,
    conc: int,
    rate: float | None,
    tracker: Tracker,
    prefix: str,
) -> float:
    """Publish `count` persistent messages with confirms, `conc` confirms in flight, paced
    by `rate`; return the largest delay of a publish behind its slot (see run_bounded)."""
    channel = await connection.channel(publisher_confirms=True)

    async def send_one(i: int) -> None:
        source_id = f"{prefix}-{i}"
        message = aio_pika.Message(
            baseline_body(i, prefix),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        tracker.start(source_id)
        try:
            await channel.default_exchange.publish(message, routing_key=queue)
            tracker.answered[source_id] = time.perf_counter()
        except Exception as error:  # a nack or a closed channel: report and go on
            print(f"baseline: publish {source_id} failed: {type(error).__name__}: {error}")
            tracker.fail(source_id)

    late_s = await run_bounded(count, conc, send_one, rate)
    await channel.close()
    return late_s


async def run_baseline(
    names: Names, count: int, concurrency: int, rate: float | None, prefix: str = "base"
) -> tuple[Result, bool]:
    tracker = Tracker(pending={f"{prefix}-{i}" for i in range(count)})
    queue = baseline_queue(names)
    consumer = await connect("bench-baseline-consume")
    publisher = await connect("bench-baseline-publish")
    async with consumer, publisher:
        await start_consumer(consumer, queue, tracker, passive=False)
        late_s = await publish_all(publisher, queue, count, concurrency, rate, tracker, prefix)
        complete = await tracker.wait("baseline")
    return summarise("baseline", tracker, late_s), complete


# --- the daemon processes ----------------------------------------------------------------


@dataclass
class Deployment:
    """The daemon processes of one run, by role: {"all"}, or {"channels", "dispatcher"}.

    Each process has its own folder (settings, spool, SQLite file) and HTTP port; they share
    the queue names. The POSTs go to `entry`, the one that runs the channels.
    """

    daemons: dict[str, Daemon]

    @classmethod
    def create(cls, tmp: Path, names: Names, split: bool) -> Deployment:
        roles = ["channels", "dispatcher"] if split else ["all"]
        daemons: dict[str, Daemon] = {}
        for role in roles:
            workdir = tmp / role
            workdir.mkdir()
            daemons[role] = Daemon(workdir, names, log_level="warning")
        return cls(daemons)

    @property
    def entry(self) -> Daemon:
        return self.daemons["channels" if "channels" in self.daemons else "all"]

    def describe(self) -> str:
        if len(self.daemons) == 1:
            return "one process (--role all)"
        return "split (--role " + " + --role ".join(self.daemons) + ")"

    def pids(self) -> dict[str, int | None]:
        return {
            role: daemon.process.pid if daemon.process else None
            for role, daemon in self.daemons.items()
        }

    async def start(self) -> None:
        """Start every process, then wait until each answers /readyz."""
        for role, daemon in self.daemons.items():
            daemon.start(role=role)
        await asyncio.gather(*(daemon.wait_ready() for daemon in self.daemons.values()))

    def stop(self) -> dict[str, int | None]:
        """SIGTERM each process in turn (channels before dispatcher); their exit codes."""
        return {role: daemon.stop() for role, daemon in self.daemons.items()}


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


def answer_p50_p99(tracker: Tracker) -> tuple[float, float]:
    """p50 and p99 of the time to the answer, in ms: the 202 (the message safe on the
    broker) for the pipeline, the publisher confirm for the baseline."""
    times = [(t - tracker.started[sid]) * 1000 for sid, t in tracker.answered.items()]
    if len(times) < 2:
        return float("nan"), float("nan")
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return cuts[49], cuts[98]


def print_answers(pipeline: Result, baseline: Result, rate: float | None) -> None:
    at = "as fast as answered" if rate is None else f"at {rate:g} requests/s"
    print(
        f"request -> 202 {at}: p50 {pipeline.answer_p50_ms:.1f} ms, "
        f"p99 {pipeline.answer_p99_ms:.1f} ms; baseline publish -> confirm "
        f"p50 {baseline.answer_p50_ms:.1f} ms, p99 {baseline.answer_p99_ms:.1f} ms"
    )


def print_lateness(pipeline: Result, baseline: Result) -> None:
    """How far the sends fell behind the --rate schedule, at worst."""
    print(
        f"sends behind the rate schedule, at most: pipeline {pipeline.late_ms:.1f} ms, "
        f"baseline {baseline.late_ms:.1f} ms"
    )


def report_log(role: str, daemon: Daemon, failed: bool) -> None:
    """Show how much the daemon logged; keep a copy outside the temp dir if it matters."""
    text = daemon.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines and not failed:
        print(f"daemon {role} log: empty (level warning)")
        return
    kept = Path(tempfile.gettempdir()) / f"web_pipeline-{daemon.names.prefix}-{role}.log"
    kept.write_text(text)
    print(f"daemon {role} log: {len(lines)} lines, kept at {kept}")
    for line in lines[:20]:
        print(f"  | {line[:300]}")


@dataclass(frozen=True)
class Options:
    count: int
    concurrency: int
    rate: float | None
    warm_up: int
    paced: float
    paced_count: int


async def measure(deployment: Deployment, options: Options) -> bool:
    """Start the daemons, run the measurements, print the figures; True if all arrived."""
    started = time.perf_counter()
    await deployment.start()
    ports = ", ".join(f"{role} on {d.url}" for role, d in deployment.daemons.items())
    print(f"daemon ready in {time.perf_counter() - started:.1f} s: {ports}")
    entry = deployment.entry
    count, concurrency, rate = options.count, options.concurrency, options.rate
    ok = True
    if options.warm_up:  # start-up work (models, caches, connections) is not per message
        _, ok = await run_pipeline(entry, options.warm_up, concurrency, None, prefix="warm")
    before = CpuSample.take(deployment)
    pipeline, ok_pipeline = await run_pipeline(entry, count, concurrency, rate)
    middle = CpuSample.take(deployment)
    baseline, ok_baseline = await run_baseline(entry.names, count, concurrency, rate)
    after = CpuSample.take(deployment)
    print_table(pipeline, baseline)
    if rate is not None:
        print_lateness(pipeline, baseline)
    print_answers(pipeline, baseline, rate)
    print()
    accepted = pipeline.sent - pipeline.failed
    print(cpu_line("pipeline", before, middle, accepted))
    print(cpu_line("baseline", middle, after))
    print("(a benchmark process near 100% means the load generator limits the figures)")
    ok = ok and ok_pipeline and ok_baseline
    if options.paced:
        ok = await measure_paced(deployment, options) and ok
    print_goals(deployment, before, middle, accepted)
    return ok


async def measure_paced(deployment: Deployment, options: Options) -> bool:
    """The 202 latency below saturation: both runs offered `paced` messages per second."""
    n, conc, rate = options.paced_count, options.concurrency, options.paced
    print(f"\n-- paced: {n} messages at {rate:g}/s, at most {conc} in flight")
    pipeline, ok_pipeline = await run_pipeline(deployment.entry, n, conc, rate, prefix="paced")
    baseline, ok_baseline = await run_baseline(deployment.entry.names, n, conc, rate, "paced")
    print_lateness(pipeline, baseline)
    print_answers(pipeline, baseline, rate)
    return ok_pipeline and ok_baseline


def print_goals(deployment: Deployment, before: CpuSample, after: CpuSample, accepted: int) -> None:
    """The channels role's CPU per accepted message as the rate one core would sustain."""
    role = "channels" if "channels" in before.daemons else "all"
    start, end = before.daemons.get(role), after.daemons.get(role)
    if start is None or end is None or not accepted:
        return
    per_message_ms = 1000 * (end - start) / accepted
    print(
        f"\n{role} role: {per_message_ms:.2f} ms CPU per accepted message, so "
        f"{1000 / per_message_ms:,.0f} accepted/s on one core (goal: at most 0.5 ms, 2,000/s)"
    )


def stop_and_report(deployment: Deployment, ok: bool) -> bool:
    """Stop every daemon, print the exit codes and logs; False if any exit was unclean."""
    codes = deployment.stop()
    print("daemon exit codes: " + ", ".join(f"{role} {code}" for role, code in codes.items()))
    ok = ok and all(code in (0, None) for code in codes.values())
    for role, daemon in deployment.daemons.items():
        report_log(role, daemon, failed=not ok)
    return ok


async def benchmark(options: Options, split: bool) -> int:
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix="web_pipeline-") as tmp:
        deployment = Deployment.create(Path(tmp), names, split)
        offered = "unlimited" if options.rate is None else f"{options.rate:g} msg/s"
        print(
            f"prefix {names.prefix}, n={options.count}, concurrency={options.concurrency}, "
            f"offered rate={offered}, warm-up {options.warm_up} messages, "
            f"daemon={deployment.describe()}"
        )
        ok = False
        try:
            ok = await measure(deployment, options)
        except Exception as error:
            print(f"benchmark failed: {type(error).__name__}: {str(error)[:500]}")
        finally:
            ok = stop_and_report(deployment, ok)
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
    parser.add_argument(
        "--rate", type=float, default=None, help="messages offered per second (default: no limit)"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="run the daemon as two processes, --role channels and --role dispatcher",
    )
    parser.add_argument(
        "--warm-up", type=int, default=300, help="untimed messages sent first (default 300)"
    )
    parser.add_argument(
        "--paced",
        type=float,
        default=500,
        help="then both runs again at this rate, for the 202 latency (default 500/s; 0: no)",
    )
    parser.add_argument(
        "--paced-n", type=int, default=2500, help="messages per paced run (default 2500)"
    )
    args = parser.parse_args()
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    options = Options(args.n, args.concurrency, args.rate, args.warm_up, args.paced, args.paced_n)
    sys.exit(asyncio.run(benchmark(options, args.split)))


if __name__ == "__main__":
    main()
