"""Several dispatchers deciding at the same moment on one PostgreSQL: the database decides.

Each "dispatcher" here is a store of its own (its own engine and connections), all deciding
their batches at once in worker threads, as separate processes would.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from subprocess import PIPE

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from ulid import ULID

from dispatcher.database import create_engine, head_revision
from dispatcher.decide import Decider, Incoming, Outcome
from dispatcher.feedback import CaseEventMessage, apply_events
from dispatcher.identity import lock_customers
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from dispatcher.tables import Case, Customer, Identity, Message
from dispatcher.triage import DefaultQueue
from tests.daemon import clean_environment
from tests.test_decide import _until_a_lock_is_waited_for, message

DISPATCHERS = 3


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[Store]]:
    first = await Store.open(pg_url, auto_migrate=True)
    others = [await Store.open(pg_url) for _ in range(DISPATCHERS - 1)]
    yield [first, *others]
    for store in [first, *others]:
        await store.close()


async def decide_at_once(stores: list[Store], batches: list[list[Incoming]]) -> list[Outcome]:
    decider = Decider(DispatcherSettings(), "case-update", DefaultQueue("support"))
    results = await asyncio.gather(
        *(decider.decided(store, batch) for store, batch in zip(stores, batches, strict=True))
    )
    return [outcome for outcomes in results for outcome in outcomes]


async def test_copies_and_a_new_sender_at_once_make_one_message_and_one_customer(
    stores: list[Store],
) -> None:
    original = message("new.person@nowhere.example", "Where is my parcel?", source_id="k@x")
    batches = [
        [
            Incoming(original.model_copy(update={"id": str(ULID())})),
            Incoming(message("new.person@nowhere.example", f"and another thing, {n}")),
            Incoming(message("+14155550199", "same words everywhere", channel="sms")),
        ]
        for n in range(DISPATCHERS)
    ]
    outcomes = await decide_at_once(stores, batches)

    verdicts = Counter(
        o.forward.dedup.verdict if o.forward and o.forward.dedup else "repeat" for o in outcomes
    )
    # One copy of k@x opens a case, the others are repeats; of the three "and another thing"
    # messages each is new (different words); the three identical texts from one phone: one
    # new case and two duplicates.
    assert verdicts == {"new": 1 + DISPATCHERS + 1, "repeat": DISPATCHERS - 1, "duplicate": 2}

    def counts(session):  # type: ignore[no-untyped-def]
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Message, Customer, Identity)
        )

    assert await stores[0].run(counts) == (1 + DISPATCHERS + DISPATCHERS, 2, 2)


async def test_a_customer_held_by_one_dispatcher_holds_up_no_other_naming_it(
    stores: list[Store],
) -> None:
    """Dispatchers lock customers against each other, not against a foreign-key check.

    Marking a message forwarded and counting a repeat of it in one transaction makes
    PostgreSQL check the message's customer row (it does so for a row the transaction already
    changed). When the customer lock was FOR UPDATE, that check waited for whichever
    dispatcher held the customer (its phone identity on another partition), and deadlocked
    when that one then waited for the incident lock: about once a run of three dispatchers,
    a second lost each time. FOR NO KEY UPDATE still excludes the other dispatchers."""
    decider = Decider(DispatcherSettings(), "case-update", DefaultQueue("support"))
    first = message("held@acme.example", "Where is my parcel?", source_id="held@x")
    [opened] = await decider.decided(stores[0], [Incoming(first)])
    assert opened.forward is not None and opened.forward.customer is not None
    customer = opened.forward.customer.id
    holder = create_engine(stores[1].engine.url.render_as_string(hide_password=False))
    waiting_at_most_1s = create_engine(
        stores[2].engine.url.render_as_string(hide_password=False), lock_timeout_s=1.0
    )
    try:
        with Session(holder) as held, held.begin():
            assert lock_customers(held, [customer], skip_locked=True) == set()
            again = Incoming(first.model_copy(update={"id": str(ULID())}))
            with Session(waiting_at_most_1s) as session, session.begin():
                [repeat] = decider.batch(session, [again], [("email", "held@x")])
            with Session(waiting_at_most_1s) as session, session.begin():
                # The other dispatchers still wait for the customer (and skip it).
                assert lock_customers(session, [customer], skip_locked=True) == {customer}
    finally:
        holder.dispose()
        waiting_at_most_1s.dispose()
    assert repeat.repeat_of == first.id
    row = await stores[0].run(lambda s: s.execute(select(Message.forwarded, Message.repeats)).one())
    assert tuple(row) == (True, 1)


async def test_case_events_and_a_dispatcher_take_two_cases_in_one_order(
    stores: list[Store],
) -> None:
    """The helpdesk's events on two cases and a dispatcher batch writing to both wait for
    each other in turn, never in a circle. The events used to lock each case as they came
    (here the later case first) while a dispatcher updates its cases in id order, and
    PostgreSQL broke the circle by failing one transaction after a second; events now lock
    all their cases in id order before applying any."""
    decider = Decider(DispatcherSettings(), "case-update", DefaultQueue("support"))
    batch = [
        Incoming(message("ann@acme.example", "one")),
        Incoming(message("bob@b.example", "two")),
    ]
    refs = [o.forward.dedup.case_id for o in await decider.decided(stores[0], batch)]  # type: ignore[union-attr]
    low, high = sorted(int(ref.removeprefix("C-")) for ref in refs)  # type: ignore[union-attr]
    at = datetime.now(UTC)
    events = [  # the later case first
        CaseEventMessage(id=f"e{n}", case=f"C-{n}", event="resolved", at=at) for n in (high, low)
    ]
    url = stores[0].engine.url.render_as_string(hide_password=False)
    engine = create_engine(url, lock_timeout_s=30)
    joined = update(Case).values(last_message_at=at)

    def helpdesk() -> list[bool | str]:
        with Session(engine) as session, session.begin():
            return apply_events(session, events, "C-")

    try:
        with engine.connect() as dispatcher, engine.connect() as watcher:
            dispatcher.begin()
            dispatcher.execute(joined.where(Case.id == low))
            applying = asyncio.create_task(asyncio.to_thread(helpdesk))
            await _until_a_lock_is_waited_for(watcher, low)
            # The dispatcher's batch goes on to its next case, then commits.
            await asyncio.to_thread(dispatcher.execute, joined.where(Case.id == high))
            dispatcher.commit()
        assert await applying == [True, True]
    finally:
        engine.dispose()
    statuses = await stores[0].run(lambda s: set(s.scalars(select(Case.status))))
    assert statuses == {"resolved"}


async def test_three_upgrades_at_once_migrate_once(tmp_path: Path, pg_url: str) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "{pg_url}"\n')
    command = [sys.executable, "-m", "ingest", "db", "upgrade", "--settings", str(settings)]
    running = [
        await asyncio.create_subprocess_exec(
            *command, stdout=PIPE, stderr=PIPE, env=clean_environment()
        )
        for _ in range(3)
    ]
    outputs = await asyncio.gather(*(process.communicate() for process in running))
    assert [process.returncode for process in running] == [0, 0, 0], outputs
    said = sorted(out.decode().split(": ", 1)[1].strip() for out, _ in outputs)
    assert said == [f"already at {head_revision()}"] * 2 + [
        f"migrated from nothing to {head_revision()}"
    ]
