"""Benchmark of `ingest report` on a generated store of a million messages.

For SQLite and PostgreSQL it fills a fresh store with the known traffic of
`tests.report_traffic` (customers, cases over a year to March 2026, messages following them,
helpdesk events; each message with a stored forward of `--body` bytes, as the dispatcher keeps one),
runs ANALYZE (PostgreSQL: VACUUM ANALYZE, as autovacuum would after such a load), then
times, each in a process of its own as an operator runs it:

- baseline: `SELECT channel, count(*)` over every message, the least a report could do;
- `ingest report` for the month (March 2026, trends against February), HTML and CSV;
- `ingest report` for the quarter (Q1 2026);
- `ingest report` for the whole year at once (every message of the store in the window).

Run it from the repository root, with PostgreSQL on 127.0.0.1:

    .venv/bin/python -m tests.benchmarks.report [-n 1000000] [--only sqlite,postgresql]

Each run prints wall-clock seconds and the CPU seconds the `ingest report` process used
(user and system; on PostgreSQL the server's own work is not in it): on a shared machine the
wall clock says as much about the neighbours as about the report.

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from dispatcher.database import create_engine, upgrade
from tests.daemon import clean_environment, postgres_database
from tests.report_traffic import generate

MESSAGES_PER_CASE = 2.17  # the generator's average: the opening message and 1.17 more
DAYS = 365
COUNT_BY_CHANNEL = "SELECT channel, count(*) FROM messages GROUP BY channel"
RUNS = {
    "month, html": ("--since", "2026-03-01", "--until", "2026-03-31"),
    "month, csv": ("--since", "2026-03-01", "--until", "2026-03-31", "--format", "csv"),
    "quarter, html": ("--since", "2026-01-01", "--period", "quarter"),
    "whole year, html": ("--since", "2025-04-01", "--until", "2026-03-31"),
}


def fill(url: str, messages: int, body: int) -> tuple[int, float]:
    """Fill the store; the number of messages written and the seconds it took."""
    started = time.perf_counter()
    cases = round(messages / MESSAGES_PER_CASE)
    traffic = generate(
        seed=11, customers=max(100, cases // 8), cases=cases, body_bytes=body, days=DAYS
    )
    engine = create_engine(url)
    try:
        upgrade(engine)
        traffic.write(engine)
        raw = engine.raw_connection()  # outside a transaction: VACUUM cannot run in one
        try:
            if "postgresql" in url:
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            raw.cursor().execute("ANALYZE" if "sqlite" in url else "VACUUM ANALYZE")
        finally:
            raw.close()
    finally:
        engine.dispose()
    return len(traffic.messages), time.perf_counter() - started


def baseline(url: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds of counting every message by channel, in this process (on
    PostgreSQL the counting is the server's: its CPU is not in the second figure)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # connected before the clock starts
            started, cpu = time.perf_counter(), time.process_time()
            connection.execute(text(COUNT_BY_CHANNEL)).all()
            return time.perf_counter() - started, time.process_time() - cpu
    finally:
        engine.dispose()


def timed_report(settings: Path, out: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user and system) of one `ingest report` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "report",
            "--settings",
            str(settings),
            *args,
            "--out",
            str(out),
        ],
        capture_output=True,
        env=clean_environment(),
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def measure(name: str, url: str, folder: Path, messages: int, body: int) -> None:
    written, filling = fill(url, messages, body)
    print(f"{name}: {written:,} messages written in {filling:.0f} s", flush=True)
    settings = folder / f"{name}.toml"
    settings.write_text(f'[store]\nurl = "{url}"\n')
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} cores: a shared machine)", flush=True)
    wall, cpu = baseline(url)
    print(f"  baseline, count by channel of all messages: {wall:6.2f} s ({cpu:.2f} s CPU)")
    for label, args in RUNS.items():
        suffix = "csv" if "csv" in label else "html"
        wall, cpu = timed_report(settings, folder / f"{name}-{label[:5]}.{suffix}", args)
        print(f"  ingest report, {label:17}: {wall:6.2f} s ({cpu:.2f} s CPU)", flush=True)


async def main(messages: int, only: list[str], body: int) -> None:
    with tempfile.TemporaryDirectory(prefix="report-bench-") as temporary:
        folder = Path(temporary)
        if "sqlite" in only:
            url = f"sqlite:///{folder}/store.db"
            measure("sqlite", url, folder, messages, body)
            size = (folder / "store.db").stat().st_size
            print(f"  (store file {size / 2**20:,.0f} MiB)")
        if "postgresql" in only:
            async with postgres_database("report_bench") as url:
                await asyncio.to_thread(measure, "postgresql", url, folder, messages, body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=1_000_000)
    parser.add_argument("--only", default="sqlite,postgresql")
    parser.add_argument("--body", type=int, default=1200, help="bytes of stored forward")
    options = parser.parse_args()
    asyncio.run(main(options.messages, options.only.split(","), options.body))
