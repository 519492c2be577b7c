"""CPU of deciding a message with megabytes of text, next to one with a line of it.

A mail near the size limit (25 MB) can carry that much plain text, and its batch waits while
the dispatcher decides it: identity, history, dedup (the fingerprint reads all of it), triage
(the text conditions read the first 20,000 characters) and incident detection. This decides
one such message in a batch of its own, on the shipped settings and rules, and prints the CPU
of the decide path (the thread's CPU clock, the best of `--repeat` runs) next to the same for
a message of one line: the baseline.

    .venv/bin/python -m tests.benchmarks.large_text [--mb 5] [--repeat 3]

Run it from the repository root. It is not a test (no `test_` prefix): pytest does not
collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ulid import ULID

from dispatcher.decide import Decider, Incoming
from dispatcher.incidents.signature import prepare
from dispatcher.store import Store
from ingest.daemon import settle_garbage_collector
from normalizer.model import CaseOpen, Sender, Touchpoint
from tests.benchmarks.decide import decider_for, settings_in, timed

WORDS = ("invoice", "payment", "refund", "parcel", "arrived", "damaged", "account", "password")


def mail(text: str) -> CaseOpen:
    return CaseOpen(
        id=str(ULID()),
        received_at=datetime.now(UTC),
        channel="email",
        adapter="smtp",
        source_id=f"{ULID()}@large.example",
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=Sender(kind="email", address=f"{ULID()}@large.example"),
        subject="The export you asked for",
        text=text,
    )


def words(megabytes: float) -> str:
    rng = random.Random(1)
    count = int(megabytes * 1_000_000 / 10)
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(100)}" for _ in range(count))


async def cpu_ms(decider: Decider, store: Store, text: str) -> float:
    cpu_s, _ = await store.run(timed, decider, [Incoming(mail(text))])
    return cpu_s * 1000


async def measure(options: argparse.Namespace, folder: Path) -> None:
    settings, path = settings_in(folder)
    decider = decider_for(settings, path, intake=True)
    settle_garbage_collector()
    store = await Store.open(f"sqlite:///{folder}/store.db", auto_migrate=True)
    try:
        line = "The parcel arrived damaged; please send a new one."
        large = words(options.mb)
        await cpu_ms(decider, store, line)  # warm-up: not shown
        small = min([await cpu_ms(decider, store, line) for _ in range(options.repeat)])
        big = min([await cpu_ms(decider, store, large) for _ in range(options.repeat)])
    finally:
        await store.close()
    print(f"one message alone in its batch, best of {options.repeat}")
    print(f"  {len(line):>9,} characters of text: {small:8.1f} ms CPU (baseline)")
    print(f"  {len(large):>9,} characters of text: {big:8.1f} ms CPU ({big / small:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="megabytes of text")
    parser.add_argument("--repeat", type=int, default=3, help="runs per message")
    options = parser.parse_args()
    prepare()
    with tempfile.TemporaryDirectory(prefix="bench-large-text-") as name:
        asyncio.run(measure(options, Path(name)))


if __name__ == "__main__":
    main()
