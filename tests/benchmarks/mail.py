"""Benchmark of the email channel: the mail normaliser alone, then SMTP ingest to the queue.

What it measures:

1. Normaliser: `normalizer.envelope.normalize` (what a parsing worker runs: the mail
   normaliser, then language detection among the default settings' languages) over every
   `.eml` in `tests/fixtures/mail/`, pass after pass, in this process's one thread (one core)
   for about `--seconds` seconds, after one untimed warm-up pass. Prints messages/s and MB/s
   (1 MB = 10^6 bytes, of raw mail) over the wall time of the timed passes, the mean, p50,
   p99 and largest time per message, the slowest fixtures, and how many mails were
   unprocessable (they are part of the corpus and are counted like the others). Baseline,
   the same way: the standard library's parser alone (`BytesParser`, default policy).
2. SMTP ingest, baseline first: a bare aiosmtpd sink (`tests.benchmarks.smtp_sink`, in a
   process of its own) that parses each mail with the standard library and answers 250, sent
   the same kind of mails over the same connections. Then the pipeline: a real `ingest run
   --role all` daemon (SMTP listener, publisher, dispatcher, SQLite store), started through
   `tests.daemon` with its own ports, files and queue names. A consumer on the team queue
   `<prefix>.support.general` (aio-pika, manual ack, prefetch 300) is started first. N mails
   of about 2 KB (a Received line, multipart/alternative with text and HTML, each with its
   own Message-ID), built before timing, are sent by `--connections` threads, each with one
   persistent smtplib connection carrying several mails (MAIL, RCPT, DATA). Before the timed
   mails, `--warmup` mails go the same way and are waited for, untimed, to the sink and to
   the daemon alike: the daemon starts its parsing workers with its first mail (about half a
   second of CPU each), a start-up cost that is not the rate of a running daemon. The
   latency of a mail runs from the start of its DATA to its arrival in the team queue,
   matched by the forwarded case's `source_id` (the Message-ID without angle brackets).
   Prints accepted mails/s at the SMTP side (250 answers / (last 250 - first DATA)),
   end-to-end mails/s (arrivals / (last arrival - first DATA)), p50/p99 latency to the queue
   and to the 250 answer, the failures (any answer other than 250, or a broken connection) by
   reason, the CPU used by the daemon, by its parsing workers and by this process (near 100%
   for this process means the load generator, not the daemon, sets the pace), the CPU
   milliseconds per mail of the sink and of the daemon (event loop, other threads, workers:
   on a shared machine a steadier figure than mails/s), and the pipeline's accepted rate as
   a share of the sink's.
3. Large mail (`tests.benchmarks.large_mail`), against the sink and the same daemon: one
   mail at the size limit (an attachment of about 18 MB, 25 MB on the wire), one of 5,000
   MIME parts, then four of the large ones at once while /healthz is asked every 20 ms:
   time to the 250, the peak RSS growth of the daemon and its workers while they are
   handled, their RSS afterwards, and the slowest health answer.

Afterwards the daemon is stopped, its queues and exchanges deleted and its folder removed.

Run it as a module from the repository root, with RabbitMQ on 127.0.0.1:5672 (guest/guest):

    .venv/bin/python -m tests.benchmarks.mail [--seconds 5] [-n 2000] [--warmup 50]
        [--connections 8] [--skip-large]

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import email.utils
import json
import queue
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from ulid import ULID

from ingest.settings import NormalizerSettings
from normalizer.blobs import Blob
from normalizer.envelope import Envelope, Options, RawMail, normalize
from normalizer.errors import Unprocessable
from tests.benchmarks.large_mail import run_large
from tests.benchmarks.web_pipeline import process_cpu_s, thread_cpu_s
from tests.daemon import BROKER_URL, SUPPORT_ADDRESS, Daemon, Names, delete_names, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mail"
TOUCHPOINTS = ["support@example.com"]
PREFETCH = 300
ARRIVAL_TIMEOUT_S = 120.0
SMTP_TIMEOUT_S = 60.0
SLOWEST_SHOWN = 3
LOG_LINES_SHOWN = 20
MAX_BYTES = 26_214_400  # the default size limit of [channels.smtp]
# The defaults of settings.toml where the test daemon's settings differ.
DAEMON_ENV = {
    "INGEST_CHANNELS__SMTP__MAX_MESSAGE_BYTES": str(MAX_BYTES),
    "INGEST_WORKERS__PROCESSES": "2",
}


# --- figures -----------------------------------------------------------------------------


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (inclusive method); nan for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


@dataclass(frozen=True)
class CpuSample:
    """Wall clock and CPU seconds used so far by this process and by the daemon: its event
    loop's thread, the whole process, and its child processes (the parsing workers; a
    process's own figure in /proc leaves out children that are still running)."""

    wall: float
    own: float
    daemon: float | None
    loop: float | None = None
    children: dict[int, float] = field(default_factory=dict)

    @classmethod
    def take(cls, daemon_pid: int | None) -> CpuSample:
        children = {pid: process_cpu_s(pid) for pid in child_pids(daemon_pid)}
        return cls(
            time.perf_counter(),
            time.process_time(),
            process_cpu_s(daemon_pid),
            thread_cpu_s(daemon_pid),
            {pid: used for pid, used in children.items() if used is not None},
        )


def child_pids(pid: int | None) -> list[int]:
    """The processes `pid` started (Linux), none when that cannot be read."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_line(before: CpuSample, after: CpuSample, mails: int = 0, name: str = "daemon") -> str:
    """CPU use between two samples, as a percentage of one core; given the mails handled,
    also the milliseconds of CPU per mail, by part (steadier than mails/s on a shared
    machine): the event loop, the daemon's other threads, the parsing workers."""
    wall = after.wall - before.wall
    line = f"CPU ({wall:.1f} s): benchmark process {100 * (after.own - before.own) / wall:.0f}%"
    if before.daemon is None or after.daemon is None:
        return line
    used = after.daemon - before.daemon
    workers = sum(end - before.children.get(pid, 0.0) for pid, end in after.children.items())
    line += f", {name} {100 * used / wall:.0f}%"
    if after.children:
        line += f", its child processes {100 * workers / wall:.0f}%"
    if mails:
        per_mail = 1000 / mails
        line += f"\nCPU per mail: {name} {per_mail * (used + workers):.2f} ms"
        if before.loop is not None and after.loop is not None:
            loop = after.loop - before.loop
            line += (
                f" = event loop {per_mail * loop:.2f} + other threads "
                f"{per_mail * (used - loop):.2f} + child processes {per_mail * workers:.2f}"
            )
    return line


# --- 1. the normaliser -------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    name: str
    raw: bytes
    raw_ref: str


@dataclass
class NormaliserRun:
    """Per-message times (seconds) and counts of the timed passes."""

    corpus: list[Fixture]
    passes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    times_s: list[float] = field(default_factory=list)
    by_file_s: dict[str, float] = field(default_factory=dict)
    unprocessable: set[str] = field(default_factory=set)
    unprocessable_calls: int = 0

    @property
    def messages(self) -> int:
        return len(self.times_s)

    @property
    def raw_bytes(self) -> int:
        return self.passes * sum(len(f.raw) for f in self.corpus)


def load_corpus(folder: Path = FIXTURES) -> list[Fixture]:
    """Every .eml in the folder, by name, with its blob reference computed once."""
    corpus = []
    for path in sorted(folder.glob("*.eml")):
        raw = path.read_bytes()
        corpus.append(Fixture(path.name, raw, Blob.of(raw).ref))
    return corpus


OPTIONS = Options(languages=tuple(NormalizerSettings().languages))


def normalise(fixture: Fixture, case_id: str) -> bool:
    """Normalise one mail as a parsing worker does; False if it was unprocessable."""
    envelope = Envelope(
        channel="email",
        adapter="smtp",
        touchpoint=TOUCHPOINTS[0],
        received_at=datetime.now(UTC),
        payload=RawMail(fixture.raw, tuple(TOUCHPOINTS)),
    )
    try:
        normalize(envelope, case_id, OPTIONS)
    except Unprocessable:
        return False
    return True


def stdlib_parse(fixture: Fixture, case_id: str) -> bool:
    """The baseline: the standard library's parser alone."""
    BytesParser(policy=email.policy.default).parsebytes(fixture.raw)
    return True


Step = Callable[[Fixture, str], bool]


def normalise_pass(run: NormaliserRun, case_id: str, step: Step) -> None:
    """One timed pass over the corpus, recorded in `run`."""
    for fixture in run.corpus:
        started = time.perf_counter()
        processed = step(fixture, case_id)
        elapsed = time.perf_counter() - started
        run.times_s.append(elapsed)
        run.by_file_s[fixture.name] = run.by_file_s.get(fixture.name, 0.0) + elapsed
        if not processed:
            run.unprocessable.add(fixture.name)
            run.unprocessable_calls += 1
    run.passes += 1


def run_normaliser(corpus: list[Fixture], seconds: float, step: Step = normalise) -> NormaliserRun:
    """Whole passes over the corpus until `seconds` have gone by (at least one)."""
    case_id = str(ULID())  # the normaliser is pure: one id serves every call
    for fixture in corpus:  # warm-up: imports, caches, compiled patterns, the language model
        step(fixture, case_id)
    run = NormaliserRun(corpus)
    started, cpu = time.perf_counter(), time.process_time()
    while run.passes == 0 or time.perf_counter() - started < seconds:
        normalise_pass(run, case_id, step)
    run.wall_s = time.perf_counter() - started
    run.cpu_s = time.process_time() - cpu
    return run


def print_normaliser(run: NormaliserRun) -> None:
    corpus_bytes = sum(len(f.raw) for f in run.corpus)
    times_ms = [t * 1000 for t in run.times_s]
    print(
        f"corpus: {len(run.corpus)} mails, {corpus_bytes / 1000:.1f} kB; "
        f"{run.passes} timed passes in {run.wall_s:.2f} s (after 1 warm-up pass)"
    )
    print(
        f"throughput: {rate(run.messages, run.wall_s):.0f} messages/s, "
        f"{rate(run.raw_bytes, run.wall_s) / 1e6:.2f} MB/s; "
        f"{rate(run.messages, run.cpu_s):.0f} messages per CPU second "
        f"(this process had {100 * run.cpu_s / run.wall_s:.0f}% of a core: on a shared machine "
        "the second figure is the one-core rate)"
    )
    print(
        f"per message: mean {statistics.fmean(times_ms):.3f} ms, "
        f"p50 {percentile(times_ms, 50):.3f} ms, p99 {percentile(times_ms, 99):.3f} ms, "
        f"max {max(times_ms):.3f} ms"
    )
    slowest = sorted(run.by_file_s.items(), key=lambda item: item[1], reverse=True)
    shown = ", ".join(
        f"{name} {1000 * s / run.passes:.2f} ms" for name, s in slowest[:SLOWEST_SHOWN]
    )
    print(f"slowest (mean): {shown}")
    print(
        f"unprocessable: {len(run.unprocessable)} of {len(run.corpus)} mails "
        f"({run.unprocessable_calls} calls): {', '.join(sorted(run.unprocessable)) or '-'}"
    )


# --- 2. SMTP ingest ----------------------------------------------------------------------


TEXT_BODY = """Hello,

my order {order} was delivered this morning, but the box was crushed and the
glass front of the cabinet inside is cracked in two places. The courier left
before I could open it, so I could not refuse the delivery.

I have kept all the packaging and took photos of the box and of the damage.
Could you send a replacement, or tell me how to return the cabinet? I would
prefer a replacement, as I need it for a room we are finishing next week.

For your records: the parcel number on the label is {parcel}, and the
driver noted "left at door" although I was at home and nobody rang.

The delivery address is still the one on the order. I am at home on weekdays
after 4 pm if someone needs to pick it up.

Thank you,
Customer {i}
"""

HTML_BODY = """<html><body>
<p>Hello,</p>
<p>my order <b>{order}</b> was delivered this morning, but the box was crushed and
the glass front of the cabinet inside is cracked in two places.</p>
<p>I have kept all the packaging and took photos. Could you send a replacement,
or tell me how to return the cabinet?</p>
<p>Thank you,<br>Customer {i}</p>
</body></html>
"""


@dataclass(frozen=True)
class Mail:
    source_id: str  # the Message-ID without angle brackets
    sender: str
    wire: bytes


def build_mail(i: int, run_id: str) -> Mail:
    """A realistic ~2 KB customer mail (text and HTML alternatives) with its own Message-ID."""
    domain = f"customer{i % 50}.example"
    sender = f"customer{i}@{domain}"
    source_id = f"bench-{run_id}-{i}@{domain}"
    order = 100000 + i
    message = EmailMessage()
    message["Received"] = (
        f"from mail.{domain} (mail.{domain} [192.0.2.{i % 250 + 1}]) by mx.example.com "
        f"with ESMTPS id {run_id}{i:06d}; {email.utils.format_datetime(datetime.now(UTC))}"
    )
    message["From"] = f"Customer {i} <{sender}>"
    message["To"] = f"Support <{SUPPORT_ADDRESS}>"
    message["Subject"] = f"Order {order}: delivery arrived damaged"
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{source_id}>"
    message["User-Agent"] = "Benchmark Mail 1.0"
    message.set_content(TEXT_BODY.format(order=order, i=i, parcel=f"JD{order:012d}"))
    message.add_alternative(HTML_BODY.format(order=order, i=i), subtype="html")
    return Mail(source_id, sender, message.as_bytes(policy=email.policy.SMTP))


@dataclass
class SmtpTracker:
    """Per mail: start of DATA, the 250 answer, arrival in the team queue (perf_counter)."""

    started: dict[str, float] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    unexpected: int = 0
    duplicates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, reason: str) -> None:
        with self._lock:  # called from the sending threads
            self.failures[reason] += 1

    def arrive(self, source_id: str | None) -> None:
        """Called on the event loop for each delivery from the team queue."""
        now = time.perf_counter()
        if source_id not in self.started:
            self.unexpected += 1
        elif source_id in self.arrived:
            self.duplicates += 1
        else:
            self.arrived[source_id] = now

    def missing(self) -> set[str]:
        return self.accepted.keys() - self.arrived.keys()

    def reset(self) -> None:
        """Forget the warm-up mails: the timed ones are counted alone."""
        for record in (self.started, self.accepted, self.arrived):
            record.clear()
        self.failures.clear()
        self.unexpected = self.duplicates = 0


class Refused(Exception):
    """An SMTP answer other than the one expected."""

    def __init__(self, step: str, code: int) -> None:
        super().__init__(f"{step} {code}")


def expect(step: str, answer: tuple[int, bytes], code: int = 250) -> None:
    if answer[0] != code:
        raise Refused(step, answer[0])


def send_one(client: smtplib.SMTP, mail: Mail, tracker: SmtpTracker) -> None:
    """MAIL, RCPT, DATA on an open connection; a refusal raises Refused."""
    expect("MAIL", client.mail(mail.sender))
    expect("RCPT", client.rcpt(SUPPORT_ADDRESS))
    tracker.started[mail.source_id] = time.perf_counter()
    expect("DATA", client.data(mail.wire))
    tracker.accepted[mail.source_id] = time.perf_counter()


def open_client(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=SMTP_TIMEOUT_S)
    client.ehlo("mta.customer.example")
    return client


def close_client(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def reset(client: smtplib.SMTP | None) -> smtplib.SMTP | None:
    """RSET after a refusal: the connection if it is still usable, else None."""
    if client is None:
        return None
    try:
        client.rset()
    except (smtplib.SMTPException, OSError):
        client.close()
        return None
    return client


def send_from_queue(port: int, mails: queue.SimpleQueue[Mail], tracker: SmtpTracker) -> None:
    """One sending thread: take mails until none are left, over one persistent connection
    (opened again after an error)."""
    client: smtplib.SMTP | None = None
    try:
        while True:
            try:
                mail = mails.get_nowait()
            except queue.Empty:
                return
            try:
                client = client or open_client(port)
                send_one(client, mail, tracker)
            except Refused as refusal:
                tracker.fail(str(refusal))
                client = reset(client)
            except (smtplib.SMTPException, OSError) as error:
                tracker.fail(type(error).__name__)
                if client is not None:
                    client.close()
                client = None
    finally:
        if client is not None:
            close_client(client)


async def send_all(port: int, mails: list[Mail], connections: int, tracker: SmtpTracker) -> None:
    """Send every mail over `connections` threads, each with its own connection."""
    work: queue.SimpleQueue[Mail] = queue.SimpleQueue()
    for mail in mails:
        work.put(mail)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="smtp") as pool:
        await asyncio.gather(
            *(
                loop.run_in_executor(pool, send_from_queue, port, work, tracker)
                for _ in range(connections)
            )
        )


async def start_consumer(
    connection: AbstractRobustConnection, queue_name: str, tracker: SmtpTracker
) -> None:
    """Consume the team queue (declared by the daemon) into `tracker`, with manual acks."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    team_queue = await channel.declare_queue(queue_name, passive=True)

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            source_id = json.loads(message.body).get("source_id")
        except (ValueError, AttributeError):
            source_id = None
        tracker.arrive(source_id)
        await message.ack()

    await team_queue.consume(on_message)


async def wait_arrivals(tracker: SmtpTracker, timeout_s: float = ARRIVAL_TIMEOUT_S) -> bool:
    """Wait until every accepted mail has arrived; False (after saying so) on timeout."""
    deadline = time.monotonic() + timeout_s
    while tracker.missing():
        if time.monotonic() > deadline:
            print(f"timed out after {timeout_s:.0f} s: {len(tracker.missing())} accepted missing")
            return False
        await asyncio.sleep(0.05)
    return True


def print_smtp(tracker: SmtpTracker, mails: list[Mail]) -> None:
    sizes = [len(mail.wire) for mail in mails]
    latencies = [(t - tracker.started[sid]) * 1000 for sid, t in tracker.arrived.items()]
    answers = [(t - tracker.started[sid]) * 1000 for sid, t in tracker.accepted.items()]
    first = min(tracker.started.values(), default=0.0)
    smtp_s = max(tracker.accepted.values(), default=first) - first
    end_s = max(tracker.arrived.values(), default=first) - first
    print(
        f"sent {len(mails)} mails (mean {statistics.fmean(sizes):.0f} B), "
        f"accepted (250) {len(tracker.accepted)}, arrived {len(tracker.arrived)}, "
        f"failed {sum(tracker.failures.values())}"
    )
    print(f"accepted at SMTP: {rate(len(tracker.accepted), smtp_s):.1f} mails/s ({smtp_s:.2f} s)")
    print(f"end to end:       {rate(len(tracker.arrived), end_s):.1f} mails/s ({end_s:.2f} s)")
    print(
        f"latency DATA -> team queue: p50 {percentile(latencies, 50):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms"
    )
    print(
        f"latency DATA -> 250:        p50 {percentile(answers, 50):.1f} ms, "
        f"p99 {percentile(answers, 99):.1f} ms"
    )
    if tracker.failures:
        print(f"failures by reason: {dict(tracker.failures)}")
    if tracker.unexpected or tracker.duplicates:
        print(f"arrivals: {tracker.unexpected} unexpected, {tracker.duplicates} duplicates")


async def run_smtp(daemon: Daemon, count: int, connections: int, warmup: int) -> tuple[bool, float]:
    """Send `warmup` mails, then `count` timed ones to the running daemon, wait for them,
    print the figures; whether all went well and the accepted rate."""
    run_id = uuid.uuid4().hex[:8]
    warmup_mails = [build_mail(count + i, run_id) for i in range(warmup)]
    mails = [build_mail(i, run_id) for i in range(count)]
    tracker = SmtpTracker()
    pid = daemon.process.pid if daemon.process else None
    connection = await aio_pika.connect_robust(
        BROKER_URL, client_properties={"connection_name": "bench-mail-consume"}
    )
    async with connection:
        await start_consumer(connection, daemon.names.default, tracker)
        if warmup_mails:
            await send_all(daemon.smtp_port, warmup_mails, connections, tracker)
            if not await wait_arrivals(tracker) or tracker.failures:
                print(f"warm-up failed: {dict(tracker.failures)}")
                return False, 0.0
            tracker.reset()
        before = CpuSample.take(pid)
        await send_all(daemon.smtp_port, mails, connections, tracker)
        complete = await wait_arrivals(tracker)
        after = CpuSample.take(pid)
    print_smtp(tracker, mails)
    print(cpu_line(before, after, len(tracker.accepted)))
    print("(a benchmark process near 100% means the load generator limits the figures)")
    return complete and not tracker.failures, accepted_rate(tracker)


def accepted_rate(tracker: SmtpTracker) -> float:
    first = min(tracker.started.values(), default=0.0)
    return rate(len(tracker.accepted), max(tracker.accepted.values(), default=first) - first)


@contextlib.contextmanager
def sink_process(max_bytes: int) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The bare aiosmtpd sink in its own process, on a free port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "tests.benchmarks.smtp_sink", str(port), str(max_bytes)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


async def run_sink(port: int, pid: int, count: int, connections: int, warmup: int) -> float:
    """The baseline: the same kind of mails to the bare sink; prints and returns accepted/s."""
    run_id = uuid.uuid4().hex[:8]
    mails = [build_mail(i, run_id) for i in range(count)]
    tracker = SmtpTracker()
    await send_all(
        port, [build_mail(count + i, run_id) for i in range(warmup)], connections, tracker
    )
    tracker.reset()
    before = CpuSample.take(pid)
    await send_all(port, mails, connections, tracker)
    after = CpuSample.take(pid)
    answers = [(t - tracker.started[sid]) * 1000 for sid, t in tracker.accepted.items()]
    accepted = accepted_rate(tracker)
    print(
        f"sink: accepted (250) {len(tracker.accepted)} of {count}, {accepted:.1f} mails/s; "
        f"DATA -> 250 p50 {percentile(answers, 50):.1f} ms, p99 {percentile(answers, 99):.1f} ms"
    )
    print(cpu_line(before, after, len(tracker.accepted), "sink"))
    return accepted


# --- daemon, report and main -------------------------------------------------------------


def report_log(daemon: Daemon) -> None:
    """How much the daemon logged (level warning); a copy is kept outside the temp dir."""
    text = daemon.log_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        print("daemon log: empty (level warning)")
        return
    kept = Path(tempfile.gettempdir()) / f"mail-{daemon.names.prefix}.log"
    kept.write_text(text)
    print(f"daemon log: {len(lines)} lines, kept at {kept}")
    for line in lines[:LOG_LINES_SHOWN]:
        print(f"  | {line[:300]}")


async def measure_smtp(
    workdir: Path, names: Names, count: int, connections: int, warmup: int, large: bool
) -> bool:
    """Run the sink, then start the daemon, run the SMTP measurements, stop it; True if all
    went well."""
    with sink_process(MAX_BYTES) as (port, sink):
        print(f"-- baseline: bare aiosmtpd sink (parses with the standard library), port {port}")
        baseline = await run_sink(port, sink.pid, count, connections, warmup)
        if large:
            await run_large("sink", port, sink.pid)
    daemon = Daemon(workdir, names, log_level="warning")
    ok = False
    try:
        started = time.perf_counter()
        daemon.start(env=DAEMON_ENV)
        await daemon.wait_ready()
        print(
            f"-- pipeline: daemon ready in {time.perf_counter() - started:.1f} s "
            f"(SMTP port {daemon.smtp_port}, prefix {names.prefix}); "
            f"n={count} after {warmup} warm-up mails, connections={connections}"
        )
        ok, accepted = await run_smtp(daemon, count, connections, warmup)
        print(f"pipeline / sink, accepted mails/s: {accepted / baseline:.0%}")
        if large and daemon.process is not None:
            await run_large(
                "pipeline", daemon.smtp_port, daemon.process.pid, daemon.url + "/healthz"
            )
    except Exception as error:
        print(f"SMTP benchmark failed: {type(error).__name__}: {str(error)[:500]}")
    finally:
        code = daemon.stop()
        print(f"daemon exit code: {code}")
        report_log(daemon)
    return ok and code in (0, None)


async def benchmark(seconds: float, count: int, connections: int, warmup: int, large: bool) -> int:
    corpus = load_corpus()
    print("== baseline: the standard library's parser alone (one core) ==")
    print_normaliser(run_normaliser(corpus, seconds, stdlib_parse))
    print("\n== normaliser with language detection, as in a parsing worker (one core) ==")
    print_normaliser(run_normaliser(corpus, seconds))
    print("\n== SMTP ingest to the team queue ==")
    names = Names(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix="mail-bench-") as tmp:
        ok = await measure_smtp(Path(tmp), names, count, connections, warmup, large)
        try:
            await delete_names(names)
        except Exception as error:
            print(f"could not delete the {names.prefix}.* queues: {error!r}")
            ok = False
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="normaliser run time (default 5)"
    )
    parser.add_argument("-n", type=int, default=2000, help="mails sent over SMTP (default 2000)")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent SMTP connections (default 8)"
    )
    parser.add_argument(
        "--warmup", type=int, default=50, help="untimed mails sent first (default 50)"
    )
    parser.add_argument(
        "--skip-large", action="store_true", help="leave out the large-mail measurements"
    )
    args = parser.parse_args()
    if args.seconds <= 0 or args.n <= 0 or args.connections <= 0 or args.warmup < 0:
        parser.error("--seconds, -n and --connections must be positive, --warmup at least 0")
    large = not args.skip_large
    sys.exit(asyncio.run(benchmark(args.seconds, args.n, args.connections, args.warmup, large)))


if __name__ == "__main__":
    main()
