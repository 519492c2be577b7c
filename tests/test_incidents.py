"""Incident detection in the dispatcher's decide path, on a real store (SQLite and a
PostgreSQL database of its own): incidents form from enough customers saying the same thing
within the window, grow, carry their facts to the cases, and two dispatchers seeing halves of
one storm form one incident."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from ulid import ULID

from dispatcher.decide import Decider, Incoming, Outcome
from dispatcher.incidents.detect import IncidentDetector
from dispatcher.intake import Intake
from dispatcher.settings import DispatcherSettings, IncidentSettings
from dispatcher.store import Store
from dispatcher.tables import Incident, IncidentBand, IncidentMessage
from dispatcher.triage import DefaultQueue, RulesRouter, load_rules
from dispatcher.triage.live import LiveRules
from normalizer.model import CaseOpen, Flags, Sender, Touchpoint
from tests.conftest import migrate

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
numbers = count(1)
STORM = [
    ("Internet down in Aarhus", "Our internet is down in Aarhus, the FiberBox shows E-1043."),
    ("No internet", "No internet since nine in Aarhus, FiberBox light red, error E-1043."),
    ("FiberBox E-1043", "FiberBox says E-1043 and there is no internet here in Aarhus."),
    ("Outage Aarhus?", "Is there an outage in Aarhus? FiberBox E-1043, no internet at all."),
    ("Ingen internet", "Vores internet er nede i Aarhus, FiberBox viser fejl E-1043."),
    ("internet not working", "Internet stopped working in Aarhus, FiberBox error E-1043."),
    ("Nedbrud i Aarhus", "Internettet virker ikke i Aarhus, FiberBox fejl E-1043."),
]
ORDINARY = [
    ("Refund", "I was charged twice for order 88123, please refund it to my card."),
    ("Moving", "We are moving to Odense next month, can we take the plan along?"),
    ("TV remote", "The remote for the TV box stopped working, batteries are new."),
    ("Invoice", "Why is my invoice higher than last month? Customer number 4471."),
    ("Upgrade", "What does Fiber 1000 cost, and can I keep my current router?"),
    ("Password", "I forgot my password and the reset link expired already."),
]


def message(
    sender: str, subject: str, text: str, at: datetime, language: str = "en", **fields: Any
) -> CaseOpen:
    return CaseOpen(
        id=str(ULID()),
        received_at=at,
        channel="email",
        adapter="test",
        source_id=f"i{next(numbers)}@test",
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=Sender(kind="email", address=sender),
        subject=subject,
        text=text,
        language=language,
        **fields,
    )


def storm(
    count_: int, start: datetime = T0, minutes: float = 2.0, who: str = "s"
) -> list[CaseOpen]:
    """`count_` customers reporting the outage, `minutes` apart."""
    return [
        message(
            f"{who}{n}@people.example",
            *STORM[n % len(STORM)],
            start + timedelta(minutes=minutes * n),
        )
        for n in range(count_)
    ]


class World:
    def __init__(self, store: Store, router: Any = None, settings: IncidentSettings | None = None):
        self.store = store
        intake = Intake(detector=IncidentDetector(settings or IncidentSettings()))
        self.decider = Decider(
            DispatcherSettings(), "case-update", router or DefaultQueue("support"), None, intake
        )

    async def send(self, *cases: CaseOpen) -> list[Outcome]:
        return await self.store.run(self.decider.batch, [Incoming(case) for case in cases])

    async def incidents(self) -> list[Incident]:
        return await self.store.run(
            lambda s: list(s.scalars(select(Incident).order_by(Incident.id)))
        )


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[World]:
    store = await Store.open(store_url, auto_migrate=True)
    yield World(store)
    await store.close()


def notices(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [json.loads(notice) for outcome in outcomes for notice in outcome.notices]


async def test_five_customers_saying_the_same_form_an_incident_that_grows(world: World) -> None:
    first = [await world.send(case) for case in storm(4)]
    assert all(outcome.forward.incident is None for [outcome] in first)
    assert notices([o for batch in first for o in batch]) == []
    [fifth] = await world.send(*storm(1, T0 + timedelta(minutes=9), who="t"))
    incident = fifth.forward.incident
    assert incident is not None
    assert (incident.id, incident.size, incident.customers) == ("I-1", 5, 5)
    assert incident.first_seen == T0 and incident.sample_subject == "Internet down in Aarhus"
    [formed] = notices([fifth])
    assert (formed["schema"], formed["event"]) == ("incident/1", "formed")
    assert formed["incident"]["id"] == "I-1" and formed["incident"]["customers"] == 5

    grown = await world.send(*storm(3, T0 + timedelta(minutes=12), who="u"))
    assert [o.forward.incident.size for o in grown] == [6, 7, 8]
    [grew] = notices(grown)  # one notice per incident per batch, on its last message
    assert (grew["event"], grew["incident"]["size"]) == ("grew", 8)
    assert grown[-1].notices and not grown[0].notices
    [row] = await world.incidents()
    assert (row.status, row.size, row.customers) == ("formed", 8, 8)


async def test_one_customer_saying_it_five_times_is_no_incident(world: World) -> None:
    cases = [
        message("same@people.example", subject, text, T0 + timedelta(minutes=n))
        for n, (subject, text) in enumerate(STORM[:6])
    ]
    outcomes = await world.send(*cases)
    assert [o.forward.incident for o in outcomes] == [None] * 6
    assert await world.incidents() == []


async def test_different_questions_form_no_incident(world: World) -> None:
    cases = [
        message(f"o{n}@people.example", subject, text, T0 + timedelta(minutes=n))
        for n, (subject, text) in enumerate(ORDINARY * 2)
    ]
    outcomes = await world.send(*cases)
    assert [o.forward.incident for o in outcomes] == [None] * len(cases)
    assert await world.incidents() == []


async def test_reports_spread_beyond_the_window_form_no_incident(world: World) -> None:
    for case in storm(6, minutes=31):
        await world.send(case)
    assert await world.incidents() == []


async def test_auto_replies_and_short_messages_are_never_compared(world: World) -> None:
    automatic = [
        message(f"a{n}@people.example", *STORM[n], T0, flags=Flags(auto_reply=True))
        for n in range(5)
    ]
    short = [message(f"b{n}@people.example", "Hi", "Thanks!", T0) for n in range(5)]
    await world.send(*automatic, *short)
    rows = await world.store.run(lambda s: s.scalar(select(IncidentMessage.case_open_id)))
    assert rows is None and await world.incidents() == []


async def test_a_storm_in_two_languages_is_one_incident(world: World) -> None:
    english = [
        message(f"e{n}@people.example", *STORM[n % 4], T0 + timedelta(minutes=n)) for n in range(5)
    ]
    danish = [
        message(f"d{n}@people.example", *STORM[(4, 6)[n % 2]], T0 + timedelta(minutes=5 + n), "da")
        for n in range(5)
    ]
    outcomes = await world.send(*english, *danish)
    [row] = await world.incidents()
    assert (row.size, row.customers) == (10, 10)
    assert {o.forward.incident.id for o in outcomes[4:]} == {"I-1"}


OUTAGE = "Our internet is down in Aarhus, the FiberBox shows error E-1043 since this morning."
TV_FAULT = "The TV box in Odense restarts every ten minutes and shows code T-77 on its screen."


def alike(senders: list[str], text: str, start: datetime) -> list[CaseOpen]:
    """One message of `text` from each sender, six seconds apart."""
    return [
        message(sender, "Help", text, start + timedelta(seconds=6 * n))
        for n, sender in enumerate(senders)
    ]


async def test_a_large_incident_counts_a_customer_writing_again_once(world: World) -> None:
    """An incident of more messages than a batch may add customers from is not read whole:
    whether it holds each of them is looked up, also for one whose earlier message is too old
    to be among the batch's neighbours."""
    await world.send(*alike([f"a{n}@people.example" for n in range(60)], OUTAGE, T0))
    again = ["a0@people.example", "a59@people.example", "new@people.example"]
    outcomes = await world.send(*alike(again, "Still: " + OUTAGE, T0 + timedelta(minutes=7)))
    assert [o.forward.incident.customers for o in outcomes] == [60, 60, 61]
    [row] = await world.incidents()
    assert (row.size, row.customers) == (63, 61)


async def test_a_message_like_two_incidents_merges_them_counting_customers_once(
    world: World,
) -> None:
    a_customers = [f"a{n}@people.example" for n in range(60)]
    b_customers = [f"a{n}@people.example" for n in range(40, 100)]  # 20 wrote about both
    await world.send(*alike(a_customers, OUTAGE, T0))
    await world.send(*alike(b_customers, TV_FAULT, T0 + timedelta(minutes=6)))
    assert [(r.status, r.size, r.customers) for r in await world.incidents()] == [
        ("formed", 60, 60),
        ("formed", 60, 60),
    ]
    [both] = await world.send(
        message("m@people.example", "Help", f"{OUTAGE} {TV_FAULT}", T0 + timedelta(minutes=13))
    )
    assert (both.forward.incident.id, both.forward.incident.customers) == ("I-1", 101)
    one, two = await world.incidents()
    assert (one.status, one.size, one.customers) == ("formed", 121, 101)
    assert (two.status, two.merged_into) == ("merged", one.id)
    assert {n["event"] for n in notices([both])} == {"grew", "merged"}


async def test_two_dispatchers_seeing_halves_of_a_storm_form_one_incident(pg_url: str) -> None:
    stores = [await Store.open(pg_url, auto_migrate=True) for _ in range(2)]
    try:
        one, two = World(stores[0]), World(stores[1])
        cases = storm(12, minutes=1)
        halves = await asyncio.gather(one.send(*cases[0::2]), two.send(*cases[1::2]))
        rows = await one.incidents()
        assert [(r.status, r.size, r.customers) for r in rows] == [("formed", 12, 12)]
        carried = {o.forward.incident.id for half in halves for o in half if o.forward.incident}
        assert carried == {"I-1"}
    finally:
        for store in stores:
            await store.close()


async def test_two_dispatchers_locking_first_still_form_one_incident(pg_url: str) -> None:
    """A dispatcher whose last batch touched an incident locks before it reads: two such,
    seeing halves of a new storm, still form one incident of it."""
    stores = [await Store.open(pg_url, auto_migrate=True) for _ in range(2)]
    try:
        one, two = World(stores[0]), World(stores[1])
        await one.send(*alike([f"a{n}@people.example" for n in range(6)], OUTAGE, T0))
        await two.send(*alike([f"b{n}@people.example" for n in range(3)], OUTAGE, T0))
        assert one.decider.intake.detector.touching and two.decider.intake.detector.touching
        later = T0 + timedelta(hours=2)
        cases = alike([f"c{n}@people.example" for n in range(12)], TV_FAULT, later)
        halves = await asyncio.gather(one.send(*cases[0::2]), two.send(*cases[1::2]))
        rows = await one.incidents()
        assert [(r.status, r.size, r.customers) for r in rows] == [
            ("formed", 9, 9),
            ("formed", 12, 12),
        ]
        carried = {o.forward.incident.id for half in halves for o in half if o.forward.incident}
        assert carried == {"I-2"}
    finally:
        for store in stores:
            await store.close()


async def test_triage_rules_see_the_incident(tmp_path: Path, store_url: str) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(
        """
[triage]
[[triage.priorities]]
name = "P1"
definition = "Urgent"
response = "30m"
[[triage.priorities]]
name = "P3"
definition = "Normal"
response = "8h"
[[triage.rules]]
name = "outage"
when = { incident = { size_at_least = 5, customers_at_least = 5 } }
set = { priority = "P1", queue = "network", tags = ["incident"] }
"""
    )
    router = RulesRouter(
        LiveRules(lambda: load_rules(settings, ["support", "network"], "support"), lambda: [])
    )
    store = await Store.open(store_url, auto_migrate=True)
    try:
        world = World(store, router)
        outcomes = await world.send(*storm(6))
    finally:
        await store.close()
    assert [o.routing_key for o in outcomes] == ["support"] * 4 + ["network"] * 2
    last = outcomes[-1].forward.triage
    assert (last.priority, last.tags) == ("P1", ["incident"])
    assert last.matched[0].because == "incident I-1 of 6 messages from 6 customers"


async def test_pruning_drops_old_bands_but_keeps_the_incident(world: World) -> None:
    await world.send(*storm(5))
    pruned = await world.store.prune(DispatcherSettings().retention, T0 + timedelta(days=8))
    assert pruned.incident_bands > 0
    [row] = await world.incidents()
    assert (row.size, row.customers) == (5, 5)
    later = storm(5, T0 + timedelta(days=8), who="later")
    outcomes = await world.send(*later)
    assert outcomes[-1].forward.incident.id == "I-2"  # a new incident, the old one is over


def test_signatures_are_datasketch_minhashes_whatever_the_batch() -> None:
    """The batch's MinHash in one array operation gives the values datasketch's MinHash gives
    each message alone: signatures stored by earlier versions stay comparable."""
    from datasketch import MinHash

    from dispatcher.incidents.signature import (
        PERMUTATIONS,
        SEED,
        band_keys,
        shingles,
        signature,
        signatures,
    )

    at = T0
    cases = [message(f"c{n}@x.example", s, t, at) for n, (s, t) in enumerate(STORM + ORDINARY)]
    cases.append(
        message("j@x.example", "接続できない", "インターネットに接続できません。", at, "ja")
    )
    cases.append(message("s@x.example", "Hi", "thanks!", at))  # too short: no signature
    batch = signatures(cases, 3)
    assert batch[-1] is None
    for case, found in zip(cases[:-1], batch[:-1], strict=True):
        assert found is not None
        reference = MinHash(num_perm=PERMUTATIONS, seed=SEED, hashfunc=zlib.crc32)
        reference.update_batch([word.encode() for word in shingles(case)[0]])
        assert found.values.dtype == np.uint32
        assert found.values.tolist() == reference.hashvalues.tolist()
        [expected] = band_keys(reference.hashvalues.astype(np.uint32)[np.newaxis, :])
        assert found.bands == expected
        alone = signature(case, 3)
        assert alone is not None and alone.to_bytes() == found.to_bytes()
        assert (alone.bands, alone.anchors) == (found.bands, found.anchors)


def test_migration_0009_keys_the_bands_by_time_and_keeps_them(store_url: str) -> None:
    """Bands written before 0009 are kept, found by the key (band, received_at,
    case_open_id), and the downgrade brings the old key and index back with the rows."""
    from sqlalchemy import func, insert, inspect, text

    from dispatcher.database import create_engine

    engine = create_engine(store_url)
    at = T0
    rows = [
        {"band": -(2**62), "case_open_id": "01A", "received_at": at},
        {"band": 2**62, "case_open_id": "01A", "received_at": at},
        {"band": 2**62, "case_open_id": "01B", "received_at": at + timedelta(minutes=5)},
    ]
    listed = text(
        "SELECT band, case_open_id, received_at FROM incident_bands ORDER BY band, case_open_id"
    )

    try:
        migrate(engine, "0008")
        with engine.begin() as connection:
            connection.execute(insert(IncidentBand.__table__), rows)
        migrate(engine, "0009")
        with engine.connect() as connection:
            kept = [(band, name) for band, name, _ in connection.execute(listed)]
            assert kept == [(-(2**62), "01A"), (2**62, "01A"), (2**62, "01B")]
            assert (
                connection.scalar(select(func.max(IncidentBand.received_at)))
                == rows[2]["received_at"]
            )
            found = inspect(connection)
            key = found.get_pk_constraint("incident_bands")["constrained_columns"]
            assert key == ["band", "received_at", "case_open_id"]
            assert found.get_indexes("incident_bands") == []
        migrate(engine, "0008", down=True)
        with engine.connect() as connection:
            assert len(connection.execute(listed).all()) == 3
            found = inspect(connection)
            key = found.get_pk_constraint("incident_bands")["constrained_columns"]
            assert key == ["band", "case_open_id"]
            assert [i["column_names"] for i in found.get_indexes("incident_bands")] == [
                ["band", "received_at"]
            ]
    finally:
        engine.dispose()


def test_migration_0012_indexes_members_by_incident_and_customer(store_url: str) -> None:
    """0012 replaces the index on incident_id with one on (incident_id, customer_id), keeping
    the members; the downgrade brings the old index back."""
    from sqlalchemy import insert, inspect

    from dispatcher.database import create_engine

    engine = create_engine(store_url)
    incident = {"id": 1, "status": "formed", "first_seen": T0, "last_seen": T0}
    incident |= {"formed_at": T0, "size": 2, "customers": 2}
    members = [
        {"case_open_id": name, "customer_id": customer, "received_at": T0}
        | {"signature": b"\x00" * 8, "incident_id": 1}
        for name, customer in (("01A", 7), ("01B", 8))
    ]

    def indexes() -> list[list[str]]:
        with engine.connect() as connection:
            found = inspect(connection).get_indexes("incident_messages")
            return sorted(index["column_names"] for index in found)

    try:
        migrate(engine, "0011")
        with engine.begin() as connection:
            connection.execute(insert(Incident.__table__), [incident])
            connection.execute(insert(IncidentMessage.__table__), members)
        migrate(engine, "0012")
        assert indexes() == [["incident_id", "customer_id"], ["received_at"]]
        with engine.connect() as connection:
            kept = connection.execute(
                select(IncidentMessage.customer_id).where(IncidentMessage.incident_id == 1)
            )
            assert sorted(kept.scalars()) == [7, 8]
        migrate(engine, "0011", down=True)
        assert indexes() == [["incident_id"], ["received_at"]]
    finally:
        engine.dispose()
