"""Benchmark and quality measure of incident detection on the generated set.

The set (tests/data/incident-set.jsonl, written by `tests.benchmarks.incident_set`) is a day
of 2,000 ordinary messages plus three storms of 30 customers each (two of them in two
languages). It is fed in time order, in batches of `--batch`, through the dispatcher's real
decide path (`Decider.batch` in one store transaction per batch, customers, dedup, history
and the default router) on a fresh store, twice: once with incident detection (the
`Intake` hook) and once without, the bare baseline. Prints

- per storm, the share of its messages in its incident (the incident holding most of them)
  and how many incidents it formed; the incidents formed of ordinary traffic (should be 0);
- the cost of detection per message: the time spent in the detector's batch work divided by
  the messages (wall-clock, and CPU time of its thread: on a busy shared machine the
  wall-clock includes waiting for a core), and the whole decide path per message with and
  without detection.

    .venv/bin/python -m tests.benchmarks.incidents [--batch 100] [--store sqlite|URL]

It is not a test (no `test_` prefix): pytest does not collect it. tests/test_incident_set.py
checks the quality figures; the timings are for a person to read (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from ulid import ULID

from dispatcher.decide import Decider, Incoming
from dispatcher.incidents.detect import Found, IncidentDetector
from dispatcher.incidents.signature import prepare
from dispatcher.intake import Intake
from dispatcher.settings import DispatcherSettings, IncidentSettings
from dispatcher.store import Store
from dispatcher.tables import Incident, IncidentMessage
from dispatcher.triage import DefaultQueue
from normalizer.model import CaseOpen, Sender, Touchpoint

SET = Path(__file__).resolve().parents[1] / "data" / "incident-set.jsonl"


def load_set(path: Path = SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def case_of(item: dict[str, Any]) -> CaseOpen:
    return CaseOpen(
        id=str(ULID()),
        received_at=datetime.fromisoformat(item["received_at"]),
        channel="email",
        adapter="bench",
        source_id=item["id"],
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=Sender(kind="email", address=item["sender"]),
        subject=item["subject"],
        text=item["text"],
        language=item["language"],
    )


class TimedDetector(IncidentDetector):
    """The detector, adding up the time its batches take: wall-clock, and the CPU time of
    the thread running them (what it costs, not counting waits for a busy core)."""

    spent_s = 0.0
    cpu_s = 0.0

    def batch(self, *args: Any, **kwargs: Any) -> Found:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().batch(*args, **kwargs)
        finally:
            self.spent_s += time.perf_counter() - started
            self.cpu_s += time.thread_time() - cpu


def batches(items: Sequence[CaseOpen], size: int) -> Iterator[list[Incoming]]:
    for start in range(0, len(items), size):
        yield [Incoming(case) for case in items[start : start + size]]


async def run(
    url: str, cases: list[CaseOpen], size: int, detector: IncidentDetector | None
) -> tuple[float, dict[str, int | None]]:
    """Decide every batch; the seconds it took and each message's final incident."""
    store = await Store.open(url, auto_migrate=True)
    try:
        intake = Intake(detector=detector) if detector else None
        decider = Decider(
            DispatcherSettings(), "case-update", DefaultQueue("support"), None, intake
        )
        started = time.perf_counter()
        for batch in batches(cases, size):
            await store.run(decider.batch, batch)
        elapsed = time.perf_counter() - started
        placed = await store.run(_placements)
    finally:
        await store.close()
    return elapsed, placed


def _placements(session: Any) -> dict[str, int | None]:
    """Each message's incident, if that incident (or what it was merged into) formed."""
    incidents = {row.id: row for row in session.scalars(select(Incident))}

    def final(number: int | None) -> int | None:
        while number is not None and incidents[number].merged_into is not None:
            number = incidents[number].merged_into
        return number if number is not None and incidents[number].status == "formed" else None

    m = IncidentMessage
    return {
        case_open_id: final(incident)
        for case_open_id, incident in session.execute(select(m.case_open_id, m.incident_id))
    }


def quality(
    items: list[dict[str, Any]], cases: list[CaseOpen], placed: dict[str, int | None]
) -> tuple[dict[str, tuple[float, int, int | None]], set[int], int]:
    """Per storm (share of its messages in its incident, incidents it touched, that
    incident); the incidents formed of ordinary traffic only; and how many ordinary messages
    joined a storm's incident."""
    by_storm: dict[str | None, list[int | None]] = defaultdict(list)
    for item, case in zip(items, cases, strict=True):
        by_storm[item["storm"]].append(placed.get(case.id))
    storms: dict[str, tuple[float, int, int | None]] = {}
    storm_incidents: set[int] = set()
    for storm, found in sorted((k, v) for k, v in by_storm.items() if k):
        counts = Counter(number for number in found if number is not None)
        main, size = counts.most_common(1)[0] if counts else (None, 0)
        storms[storm] = (size / len(found), len(counts), main)
        storm_incidents.update(counts)
    ordinary = [n for n in by_storm[None] if n is not None]
    joined = sum(1 for n in ordinary if n in storm_incidents)
    return storms, set(ordinary) - storm_incidents, joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (a fresh file), or a URL of an empty PostgreSQL database for each run: "
        "--store postgresql://postgres@127.0.0.1/bench_bare,postgresql://...",
    )
    options = parser.parse_args()
    prepare()  # the daemon imports datasketch once it is up, before any batch
    items = load_set()
    with tempfile.TemporaryDirectory() as folder:
        if options.store == "sqlite":
            bare_url, url = f"sqlite:///{folder}/bare.db", f"sqlite:///{folder}/incidents.db"
        else:
            bare_url, url = options.store.split(",")
        cases = [case_of(item) for item in items]
        bare_s, _ = asyncio.run(run(bare_url, cases, options.batch, None))
        cases = [case_of(item) for item in items]
        detector = TimedDetector(IncidentSettings())
        detected_s, placed = asyncio.run(run(url, cases, options.batch, detector))
    storms, ordinary_only, joined = quality(items, cases, placed)
    n = len(cases)
    in_storms = sum(1 for item in items if item["storm"])
    print(f"{n} messages ({in_storms} in storms), batches of {options.batch}")
    for storm, (share, touched, main) in storms.items():
        print(f"  storm {storm}: {share:.1%} of its messages in I-{main} ({touched} incident(s))")
    print(f"  incidents formed of ordinary traffic only: {len(ordinary_only)}")
    print(f"  ordinary messages that joined a storm's incident: {joined}")
    print(
        f"detection: {detector.spent_s / n * 1000:.3f} ms per message (the detector's work, "
        f"wall-clock), {detector.cpu_s / n * 1000:.3f} ms of CPU"
    )
    print(
        f"decide path: {bare_s / n * 1000:.3f} ms per message bare, "
        f"{detected_s / n * 1000:.3f} ms with detection"
    )


if __name__ == "__main__":
    main()
