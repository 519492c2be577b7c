"""Incident detection on the committed generated set (tests/data/incident-set.jsonl): a day
of ordinary traffic and three storms of 30 customers, two of them in two languages, through
the dispatcher's decide path on a fresh SQLite store."""

from __future__ import annotations

from pathlib import Path

from dispatcher.settings import IncidentSettings
from tests.benchmarks.incident_set import generate
from tests.benchmarks.incidents import SET, TimedDetector, case_of, load_set, quality, run


def test_the_committed_set_is_what_the_generator_writes() -> None:
    assert load_set() == generate()


async def test_storms_form_their_incidents_and_ordinary_traffic_none(tmp_path: Path) -> None:
    items = load_set(SET)
    assert len(items) == 2090 and sum(1 for item in items if item["storm"]) == 90
    cases = [case_of(item) for item in items]
    detector = TimedDetector(IncidentSettings())
    _, placed = await run(f"sqlite:///{tmp_path}/set.db", cases, 100, detector)
    storms, ordinary_only, joined = quality(items, cases, placed)
    assert set(storms) == {"A", "B", "C"}
    for storm, (share, incidents, _) in storms.items():
        assert share >= 0.95, f"storm {storm}: {share:.1%} in its incident"
        assert incidents == 1, f"storm {storm} touched {incidents} incidents"
    assert ordinary_only == set(), "an incident formed of ordinary traffic"
    assert joined <= 5
