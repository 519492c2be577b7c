"""CPU of deciding batches from one very busy sender, next to a sender with no past.

Two senders that real desks have:
- `alerts`: a monitoring system that writes to support opens a case with each alert (each
  different, five seconds apart), and its cases stay open for days;
- `flood`: a number sending ten SMS a second (a loop in somebody's integration): every one
  continues one conversation, so thousands are within the conversation window, and the
  same few words come back again and again (duplicates).

Every batch with one of their messages reads what history and dedup need of them; this
benchmark shows whether that grows with what they sent before. For each `--before` count K it
sends K messages of the sender (in batches of `--batch`), then decides `--measured` batches
more and prints the CPU of the decide path per message (the thread's CPU clock) and the wall
clock (which counts PostgreSQL's work too), the best of `--repeat` runs, next to the same for
K = 0 from the same run: the baseline.

    .venv/bin/python -m tests.benchmarks.busy_sender [--sender alerts|flood]
        [--before 1000,10000] [--store sqlite|postgresql] [--batch 300] [--measured 3]
        [--repeat 2]

Run it from the repository root (PostgreSQL on 127.0.0.1 for `--store postgresql`). It is not
a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ulid import ULID

from dispatcher.decide import Decider, Incoming
from dispatcher.incidents.signature import prepare
from dispatcher.store import Store
from ingest.daemon import settle_garbage_collector
from normalizer.model import CaseOpen, Sender, Touchpoint
from tests.benchmarks.decide import decider_for, settings_in, timed
from tests.benchmarks.statements import fresh_store

CHECKS = ("disk", "certificate", "queue depth", "backup", "latency", "memory", "replication")
FLOOD_WORDS = ("OK", "STATUS", "ping", "test")


def alert(n: int, start: datetime, rng: random.Random) -> CaseOpen:
    """Alert n of the monitoring system: each different, five seconds apart."""
    check = rng.choice(CHECKS)
    host = f"host-{rng.randrange(400)}.example.net"
    return CaseOpen(
        id=str(ULID()),
        received_at=start + timedelta(seconds=5 * n),
        channel="email",
        adapter="smtp",
        source_id=f"alert-{n}@monitor.example",
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=Sender(kind="email", address="alerts@monitor.example", name="Monitoring"),
        subject=f"[ALERT] {check} on {host}",
        text=f"The {check} check failed on {host} at step {rng.randrange(10**6)}.",
    )


def flood(n: int, start: datetime, rng: random.Random) -> CaseOpen:
    """SMS n of the flood: ten a second, one in four the same few words."""
    words = rng.choice(FLOOD_WORDS) if n % 4 == 0 else f"reading {rng.randrange(10**6)}"
    return CaseOpen(
        id=str(ULID()),
        received_at=start + timedelta(seconds=n / 10),
        channel="sms",
        adapter="twilio",
        source_id=f"SM{n:032d}",
        touchpoints=[Touchpoint(kind="number", address="+14155550999")],
        sender=Sender(kind="phone", address="+14155550100"),
        text=words,
    )


SENDERS: dict[str, Callable[[int, datetime, random.Random], CaseOpen]] = {
    "alerts": alert,
    "flood": flood,
}


async def per_message_ms(
    decider: Decider, before: int, options: argparse.Namespace
) -> tuple[float, float]:
    """CPU and wall-clock milliseconds per measured message, after `before` messages."""
    async with fresh_store(options.store) as url:
        store = await Store.open(url, auto_migrate=True)
        try:
            rng = random.Random(11)
            start = datetime.now(UTC) - timedelta(days=3)
            size = options.batch
            total = before + options.measured * size
            make = SENDERS[options.sender]
            messages = [make(n, start, rng) for n in range(total)]
            cpu, wall = 0.0, 0.0
            for first in range(0, total, size):
                batch = [Incoming(case) for case in messages[first : first + size]]
                began = time.perf_counter()
                cpu_s, _ = await store.run(timed, decider, batch)
                if first >= before:
                    cpu, wall = cpu + cpu_s, wall + time.perf_counter() - began
            measured = options.measured * size
            return cpu / measured * 1000, wall / measured * 1000
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sender", choices=sorted(SENDERS), default="alerts")
    parser.add_argument("--before", default="1000,10000", help="earlier messages (comma-separated)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--batch", type=int, default=300, help="messages per batch")
    parser.add_argument("--measured", type=int, default=3, help="measured batches")
    parser.add_argument("--repeat", type=int, default=2, help="runs per count")
    options = parser.parse_args()
    prepare()
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as folder:
        settings, path = settings_in(Path(folder))
        decider = decider_for(settings, path, intake=True)
        settle_garbage_collector()
        counts = [0, *(int(part) for part in options.before.split(","))]
        print(f"{options.store}, {options.sender}: one sender, batches of {options.batch}")
        asyncio.run(per_message_ms(decider, 0, options))  # warm-up: not shown
        baseline = None
        for count in counts:
            best = min(
                asyncio.run(per_message_ms(decider, count, options)) for _ in range(options.repeat)
            )
            baseline = best if baseline is None else baseline
            print(
                f"  {count:>6} messages before: {best[0]:.3f} ms CPU per message "
                f"({best[0] / baseline[0]:.2f}x the sender's with none), {best[1]:.3f} ms wall "
                f"({best[1] / baseline[1]:.2f}x)"
            )


if __name__ == "__main__":
    main()
