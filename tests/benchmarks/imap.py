"""Benchmark of the IMAP channel's latency: from APPEND to the team queue, steady and in bursts.

What it measures, against a real Dovecot (`tests.imap_server`) and RabbitMQ on 127.0.0.1:5672:

1. Baseline: a bare imapclient session in IDLE on the same server, which on every wake-up
   searches for new UIDs and fetches their Subject (no pipeline, no broker, nothing made
   safe). Its latency, from the start of each APPEND to the moment the bare session has
   fetched that mail, is the floor any IMAP adapter stands on.
2. Pipeline: a real `ingest run --role all` daemon (IMAP adapter in IDLE, normaliser,
   publisher, dispatcher, SQLite store), started through `tests.daemon`. The latency runs from
   the start of each APPEND to the forwarded case's arrival in the team queue (a consumer
   on `<prefix>.support.general`), matched by subject. One mail goes through untimed first
   (the language model loads on the first mail).

Each is timed over `-n` mails (200) in steady flow (`--rate` mails/s) and again in bursts
(`--burst` mails appended back to back, then a pause of `--gap` s). Mails are appended over
one persistent IMAP connection. Prints p50, p90, p99 and the largest latency of each.
The machine the figures come from may be shared; say so when reporting them.

    .venv/bin/python -m tests.benchmarks.imap [-n 200] [--rate 10] [--burst 10] [--gap 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import aio_pika
from imapclient import IMAPClient

from tests.daemon import BROKER_URL, Daemon, Names, delete_names
from tests.imap_server import PASSWORD, USER, Dovecot

Plan = list[float]
"""When to append each mail, in seconds from the start."""


def steady(count: int, rate: float) -> Plan:
    return [n / rate for n in range(count)]


def bursts(count: int, size: int, gap_s: float) -> Plan:
    return [(n // size) * gap_s for n in range(count)]


def mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"{subject}@bench.example"
    message["To"] = USER
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject}@bench.example>"
    message.set_content(f"{subject}: the printer on floor 3 is on fire again, please help.\n")
    return message.as_bytes()


def append_all(dovecot: Dovecot, subjects: list[str], plan: Plan) -> dict[str, float]:
    """Append each mail at its moment over one connection; when each APPEND started."""
    started: dict[str, float] = {}
    with dovecot.client() as client:
        origin = time.monotonic()
        for subject, at in zip(subjects, plan, strict=True):
            time.sleep(max(0.0, origin + at - time.monotonic()))
            started[subject] = time.monotonic()
            client.append("INBOX", mail(subject))
    return started


class BareWatcher:
    """The baseline: IDLE, then SEARCH the new UIDs and FETCH their Subject, in a thread."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.seen: dict[str, float] = {}
        self._dovecot = dovecot
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with IMAPClient("127.0.0.1", port=self._dovecot.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            status = client.select_folder("INBOX")
            last = int(status[b"UIDNEXT"]) - 1
            self._ready.set()
            while not self._stop.is_set():
                client.idle()
                while not self._stop.is_set() and not client.idle_check(timeout=0.5):
                    pass
                client.idle_done()
                new = [uid for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last]
                for uid, data in client.fetch(new, [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items():
                    header = data[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip()
                    self.seen[header.removeprefix("Subject: ")] = time.monotonic()
                    last = max(last, uid)


async def team_arrivals(names: Names, seen: dict[str, float], stop: asyncio.Event) -> None:
    """Record when each forwarded case arrives in the team queue, by subject."""
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=300)
        queue = await channel.declare_queue(names.default, passive=True)

        async def arrived(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen[json.loads(message.body)["subject"]] = time.monotonic()
            await message.ack()

        await queue.consume(arrived)
        await stop.wait()


async def run_plan(dovecot: Dovecot, label: str, plan: Plan, seen: dict[str, float]) -> list[float]:
    subjects = [f"{label}-{n:04d}" for n in range(len(plan))]
    started = await asyncio.to_thread(append_all, dovecot, subjects, plan)
    deadline = time.monotonic() + 120
    # `seen` fills from a thread (the baseline) or a consumer: look at it now and then.
    while not all(s in seen for s in subjects) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    missing = [s for s in subjects if s not in seen]
    if missing:
        print(f"  {label}: {len(missing)} mails never arrived")
    return [seen[s] - started[s] for s in subjects if s in seen]


def summary(label: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return (
        f"  {label:28} n={len(ordered):4}  p50 {cut[49] * 1000:7.0f} ms  "
        f"p90 {cut[89] * 1000:7.0f} ms  p99 {cut[98] * 1000:7.0f} ms  "
        f"max {ordered[-1] * 1000:7.0f} ms"
    )


async def benchmark(count: int, rate: float, burst: int, gap_s: float) -> None:
    plans: dict[str, Callable[[], Plan]] = {
        "steady": lambda: steady(count, rate),
        "bursts": lambda: bursts(count, burst, gap_s),
    }
    print(f"IMAP latency, {count} mails each: steady {rate}/s; bursts of {burst} every {gap_s} s")
    dovecot = Dovecot().start()
    try:
        print("baseline: a bare IDLE session (SEARCH + FETCH Subject), APPEND to fetched")
        watcher = BareWatcher(dovecot)
        watcher.start()
        for name, plan in plans.items():
            print(summary(name, await run_plan(dovecot, f"bare-{name}", plan(), watcher.seen)))
        watcher.stop()

        print("pipeline: ingest run (IMAP IDLE, dispatcher, SQLite), APPEND to team queue")
        await pipeline(dovecot, plans)
    finally:
        dovecot.remove()


async def pipeline(dovecot: Dovecot, plans: dict[str, Callable[[], Plan]]) -> None:
    names = Names()
    with tempfile.TemporaryDirectory(prefix="ingest-imap-bench-") as folder:
        settings = (
            "[channels.imap]\nenabled = true\n\n[[channels.imap.accounts]]\n"
            f'name = "support"\nhost = "127.0.0.1"\nport = {dovecot.port}\n'
            f'security = "none"\nuser = "{USER}"\npassword_env = "BENCH_IMAP_PASSWORD"\n'
        )
        daemon = Daemon(Path(folder), names, extra=settings, log_level="warning")
        seen: dict[str, float] = {}
        stop = asyncio.Event()
        try:
            await daemon.launch(env={"BENCH_IMAP_PASSWORD": PASSWORD})
            consumer = asyncio.create_task(team_arrivals(names, seen, stop))
            await run_plan(dovecot, "warm-up", [0.0], seen)
            for name, plan in plans.items():
                print(summary(name, await run_plan(dovecot, f"pipeline-{name}", plan(), seen)))
            stop.set()
            await consumer
        finally:
            daemon.stop()
            await delete_names(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="mails per run")
    parser.add_argument("--rate", type=float, default=10.0, help="steady mails per second")
    parser.add_argument("--burst", type=int, default=10, help="mails per burst")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between bursts")
    options = parser.parse_args()
    asyncio.run(benchmark(options.n, options.rate, options.burst, options.gap))


if __name__ == "__main__":
    main()
