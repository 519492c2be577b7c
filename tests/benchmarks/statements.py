"""The statements the decide path sends per batch, by kind, with the time each kind takes.

On PostgreSQL one dispatcher is latency-bound: it waits on round trips more than it computes
(see `tests.benchmarks.dispatcher`: one dispatcher leaves the machine three quarters busy).
This counts them. It feeds `tests.benchmarks.decide`'s traffic (a warm-up that gives the
customers history, then the measured mix of `tests.scenario`) to `Decider.batch` with every
feature on, one store transaction per batch, on a fresh store: an SQLite file, or a
PostgreSQL database of its own (created and dropped). For the measured batches it counts each
statement SQLAlchemy executes (its cursor events) with the wall time from execute to result,
and prints the statements per batch and the kinds that took most time. Rows that
`dispatcher.database.insert_rows` writes through the driver itself (COPY on PostgreSQL,
executemany on SQLite) are not seen: cases, case events, acknowledgements, incident members
and bands.

    .venv/bin/python -m tests.benchmarks.statements [--store sqlite|postgresql] [-n 3000]
        [--warmup 3000] [--customers 1000] [--batch 300] [--top 25]

Run it from the repository root. It is not a test (no `test_` prefix): pytest does not
collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from dispatcher.incidents.signature import prepare
from ingest.daemon import settle_garbage_collector
from tests.benchmarks.decide import decider_for, one_run, settings_in, stream_options
from tests.daemon import postgres_database

KIND_CHARS = 160


@dataclass
class Tally:
    """Statements seen while `on`, by kind: how many, and their seconds in all."""

    on: bool = False
    began: float = 0.0
    seen: dict[str, list[float]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)

    def measuring(self) -> None:
        self.on, self.began = True, time.perf_counter()

    def watch(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def unwatch(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)

    def _before(self, _conn: Any, cursor: Any, *_: Any) -> None:
        self.started[id(cursor)] = time.perf_counter()

    def _after(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        began = self.started.pop(id(cursor), None)
        if not self.on or began is None:
            return
        # A kind is the statement's beginning: lists of parameters or rows that vary with
        # the batch come after it.
        kind = self.seen.setdefault(" ".join(statement.split())[:KIND_CHARS], [0, 0.0])
        kind[0] += 1
        kind[1] += time.perf_counter() - began


@asynccontextmanager
async def fresh_store(kind: str) -> AsyncIterator[str]:
    """The URL of an empty store of this kind, removed afterwards."""
    if kind == "postgresql":
        async with postgres_database("bench_statements") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="bench-statements-") as folder:
            yield f"sqlite:///{folder}/store.db"


async def measure(options: argparse.Namespace) -> None:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="bench-statements-") as folder:
        settings, path = settings_in(Path(folder))
        decider = decider_for(settings, path, intake=True)
        settle_garbage_collector()  # as the daemon does once it is up
        async with fresh_store(options.store) as url:
            tally.watch()
            try:
                spent, count = await one_run(
                    url,
                    decider,
                    options.n,
                    options.warmup,
                    options.customers,
                    options.batch,
                    tally.measuring,
                )
            finally:
                tally.unwatch()
    wall_s = time.perf_counter() - tally.began
    report(tally, options, count, len(spent), sum(spent), wall_s)


def report(
    tally: Tally,
    options: argparse.Namespace,
    messages: int,
    batches: int,
    cpu_s: float,
    wall_s: float,
) -> None:
    count = sum(n for n, _ in tally.seen.values())
    seconds = sum(s for _, s in tally.seen.values())
    print(
        f"{options.store}: {messages} measured messages in {batches} batches of up to "
        f"{options.batch}; per batch {wall_s / batches * 1000:.1f} ms wall, "
        f"{cpu_s / batches * 1000:.1f} ms CPU of the deciding thread"
    )
    print(
        f"statements per batch: {count / batches:.1f}, taking {seconds / batches * 1000:.1f} ms "
        "(execute to result)"
    )
    print(f"{'per batch':>9} {'ms/batch':>9}  statement")
    ranked = sorted(tally.seen.items(), key=lambda item: -item[1][1])
    for text, (n, s) in ranked[: options.top]:
        print(f"{n / batches:9.2f} {s / batches * 1000:9.2f}  {text[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="postgresql")
    stream_options(parser, batch=300)
    parser.add_argument("--top", type=int, default=25, help="statement kinds listed")
    options = parser.parse_args()
    prepare()  # the daemon imports datasketch once it is up, before any batch
    asyncio.run(measure(options))


if __name__ == "__main__":
    main()
