"""Dedup levels 1-3, follow-ups, case feedback and history, decided in a real store.

Every test runs on SQLite and on a PostgreSQL database of its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.orm import Session
from ulid import ULID

from dispatcher.database import create_engine
from dispatcher.decide import Decider, Incoming, Outcome
from dispatcher.directory import import_rows, read_directory
from dispatcher.feedback import CaseEventMessage, EventRejected, apply_event
from dispatcher.known import THREAD_IDS, load, replied_to, wanted_for
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from dispatcher.tables import Customer, Message
from dispatcher.tables import Identity as IdentityRow
from dispatcher.triage import DefaultQueue
from dispatcher.writes import KeyTaken, Writes
from normalizer.model import (
    OPEN_CASES_LISTED,
    Attachment,
    CaseOpen,
    Identity,
    Sender,
    Thread,
    Touchpoint,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DIRECTORY = """external_id,name,organisation,emails,phones,tier,is_customer
ACME-1,Ann Lee,Acme,ann@acme.example,+4930123456,gold,yes
BETA-2,Bob Ray,Beta,bob@beta.example,,silver,yes
"""
numbers = count(1)


def message(
    sender: str = "ann@acme.example",
    text: str = "My printer is on fire",
    *,
    channel: str = "email",
    at: datetime = T0,
    source_id: str | None = None,
    name: str | None = None,
    **fields: Any,
) -> CaseOpen:
    kind = "phone" if sender.startswith("+") else "email"
    return CaseOpen(
        id=str(ULID()),
        received_at=at,
        channel=channel,  # type: ignore[arg-type]
        adapter="test",
        source_id=source_id or f"m{next(numbers)}@test",
        touchpoints=[Touchpoint(kind="mailbox", address="support@example.com")],
        sender=Sender(kind=kind, address=sender, name=name),
        text=text,
        **fields,
    )


class World:
    """A migrated store, a decider on default settings, and the directory above."""

    def __init__(self, store: Store, settings: DispatcherSettings) -> None:
        self.store = store
        self.decider = Decider(settings, "case-update", DefaultQueue("support"))

    async def send(
        self, case: CaseOpen, redelivered: bool = False, publish_id: str | None = None
    ) -> Outcome:
        incoming = Incoming(case, redelivered, publish_id)
        [outcome] = await self.store.run(self.decider.batch, [incoming])
        return outcome

    async def event(self, case_ref: str, event: str, at: datetime, **fields: Any) -> bool:
        parsed = CaseEventMessage(id=str(ULID()), case=case_ref, event=event, at=at, **fields)  # type: ignore[arg-type]
        return await self.store.run(apply_event, parsed, "C-")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[World]:
    store = await Store.open(url, auto_migrate=True)
    try:
        rows, errors = read_directory(DIRECTORY.splitlines(keepends=True))
        assert errors == []
        await store.run(import_rows, rows, "test")
        yield World(store, DispatcherSettings())
    finally:
        await store.close()


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[World]:
    async with opened(store_url) as world:
        yield world


def dedup(outcome: Outcome) -> tuple[str, str | None]:
    assert outcome.forward is not None and outcome.forward.dedup is not None
    return outcome.forward.dedup.verdict, outcome.forward.dedup.case_id


async def test_level_1_a_repeat_of_a_source_id_is_dropped(world: World) -> None:
    first = await world.send(message(source_id="same@test"))
    again = await world.send(message(source_id="same@test", text="resent"))
    assert dedup(first)[0] == "new"
    assert again.forward is None and again.repeat_of == first.case.id


async def test_a_key_is_its_channel_and_source_id_together_whatever_they_hold(
    world: World,
) -> None:
    """Level 1 matches (channel, source id) exactly: the same source id on another channel
    is another message, and a key with quotes, a backslash and letters outside ASCII is
    found again, also when its forward is marked done."""
    odd = "<ü\"\\😀'@test>"
    first = await world.send(message(source_id=odd), publish_id="a1")
    elsewhere = await world.send(message(source_id=odd, channel="web", text="Other words"))
    again = await world.send(message(source_id=odd, text="resent"))
    assert dedup(first)[0] == "new"
    assert elsewhere.repeat_of is None and elsewhere.forward is not None
    assert again.forward is None and again.repeat_of == first.case.id
    assert (await world.send(first.case, redelivered=True, publish_id="a1")).resent
    await world.store.run(world.decider.batch, [], [("email", odd)])
    assert (await world.send(first.case, redelivered=True, publish_id="a1")).forward is None


async def test_a_large_batch_numbers_its_cases_without_gaps_in_few_round_trips(
    world: World,
) -> None:
    """120 new cases in one batch get C-1 to C-120; on PostgreSQL the numbers come from the
    sequence in growing blocks (16, 16, 32, then the 56 still needed), not 16 at a time."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "nextval" in statement:
            statements.append(statement)

    engine = world.store.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        cases = [message(f"n{n}@new.example", f"Question number {n}") for n in range(120)]
        outcomes = await world.store.run(world.decider.batch, [Incoming(c) for c in cases])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [dedup(o) for o in outcomes] == [("new", f"C-{n}") for n in range(1, 121)]
    postgresql = engine.dialect.name == "postgresql"
    assert len(statements) == (4 if postgresql else 0)


async def test_a_key_recorded_meanwhile_rolls_the_whole_batch_back(world: World) -> None:
    """A batch inserting a key another dispatcher recorded since it looked raises KeyTaken
    (to be decided again) and leaves nothing of itself behind, on both databases."""
    first = await world.send(message(source_id="taken@test"))
    messages = Message.__table__

    def write_again(session: Any) -> None:
        stored = session.execute(select(messages).where(messages.c.source_id == "taken@test")).one()
        row = {k: v for k, v in stored._mapping.items() if k != "id"}
        fresh = row | {"source_id": "fresh@test", "case_open_id": str(ULID())}
        writes = Writes()
        writes.messages += [fresh, row | {"case_open_id": str(ULID())}]
        writes.flush(session, [])

    with pytest.raises(KeyTaken):
        await world.store.run(write_again)
    counted = await world.store.run(
        lambda session: session.scalar(select(func.count()).select_from(messages))
    )
    assert counted == 1 and first.forward is not None


async def test_a_redelivery_before_the_forward_was_done_forwards_the_same_decision(
    world: World,
) -> None:
    case = message()
    first = await world.send(case, publish_id="a1")
    copy = await world.send(case, publish_id="b2")  # a second copy (not a redelivery): dropped
    redelivered = await world.send(case, redelivered=True, publish_id="a1")
    assert copy.forward is None
    assert redelivered.forward == first.forward
    assert redelivered.resent and not first.resent  # it may have gone out the first time
    await world.store.run(world.decider.batch, [], [(case.channel, case.source_id)])
    assert (await world.send(case, redelivered=True, publish_id="a1")).forward is None


async def test_a_redelivered_second_copy_is_never_forwarded_again(world: World) -> None:
    """Two copies of one case-open (the second sent from a spool after a lost confirm): the
    first is forwarded, and its dispatcher dies before marking that done. The second copy,
    redelivered from the dead dispatcher's hands, is a repeat, not a reason to resend."""
    case = message()
    first = await world.send(case, publish_id="a1")
    second = await world.send(case, redelivered=True, publish_id="b2")
    assert first.forward is not None
    assert second.forward is None and second.repeat_of == case.id and not second.resent
    # The decided copy itself, redelivered, still goes again: its commit may have failed.
    assert (await world.send(case, redelivered=True, publish_id="a1")).resent


async def test_level_2_same_customer_same_text_on_another_channel_is_a_duplicate(
    world: World,
) -> None:
    mail = await world.send(message(text="Invoice 77 is wrong.\n\nThanks"))
    sms = await world.send(
        message(
            "+4930123456",
            "invoice 77   is WRONG. thanks",
            channel="sms",
            at=T0 + timedelta(hours=3),
        )
    )
    assert dedup(sms) == ("duplicate", dedup(mail)[1])
    assert sms.routing_key == "case-update"
    assert sms.forward is not None and sms.forward.dedup is not None
    assert sms.forward.dedup.level == 2
    assert (
        "same content as the customer's email message of 2026-03-02 09:00"
        in sms.forward.dedup.reason
    )
    later = await world.send(
        message(text="Invoice 77 is wrong. Thanks", at=T0 + timedelta(hours=28))
    )
    assert dedup(later)[0] == "new"


async def test_media_the_source_only_links_to_counts_as_content_by_its_url(world: World) -> None:
    def mms(url: str, at: datetime) -> CaseOpen:
        photo = Attachment(name="photo.jpg", media_type="image/jpeg", url=url)
        return message("+4930123456", "", channel="sms", at=at, attachments=[photo])

    first = await world.send(mms("https://api.twilio.example/Media/ME1", T0))
    same = await world.send(mms("https://api.twilio.example/Media/ME1", T0 + timedelta(hours=1)))
    other = await world.send(mms("https://api.twilio.example/Media/ME2", T0 + timedelta(days=2)))
    assert dedup(first)[0] == "new"
    assert dedup(same) == ("duplicate", dedup(first)[1])
    assert dedup(other)[0] == "new"


async def test_a_display_name_alone_links_no_one(world: World) -> None:
    one = await world.send(message("ann.lee@gmail.example", name="Ann Lee"))
    two = await world.send(message("ann.lee@yahoo.example", name="Ann Lee"))
    assert dedup(one)[0] == dedup(two)[0] == "new"
    assert one.forward is not None and two.forward is not None
    assert one.forward.customer is not None and two.forward.customer is not None
    assert one.forward.customer.id != two.forward.customer.id
    assert one.forward.customer.known is False


async def test_level_3_an_email_reply_is_a_follow_up(world: World) -> None:
    first = await world.send(message(source_id="orig@acme.example"))
    reply = await world.send(
        message(
            text="Still burning.",
            at=T0 + timedelta(days=1),
            thread=Thread(in_reply_to="agent-reply@help.example", references=["orig@acme.example"]),
        )
    )
    assert dedup(reply) == ("follow-up", dedup(first)[1])
    assert reply.routing_key == "case-update"


async def test_replies_naming_thousands_of_messages_are_followed_by_the_first_and_latest(
    world: World,
) -> None:
    """A batch of replies whose References name 2,000 messages each (a mail can list that
    many, and the batch looked all of them up: half a second for 60 such mails): a follow-up
    is found by the thread's first message or its latest ones, of which 100 are looked up."""
    root = dedup(await world.send(message(source_id="root@acme.example")))[1]
    latest = dedup(await world.send(message("bob@beta.example", "Our side", source_id="l@b")))[1]
    unheard = [f"gone-{n}@elsewhere.example" for n in range(2000)]
    replies = [
        message(
            f"person{n}@acme.example",
            f"Same here ({n})",
            at=T0 + timedelta(days=1),
            thread=Thread(references=["root@acme.example", *unheard])
            if n % 2
            else Thread(in_reply_to="l@b", references=[*unheard, "l@b"]),
        )
        for n in range(60)
    ]
    looked_up = replied_to(replies[1].thread)
    assert len(looked_up) == THREAD_IDS
    assert (looked_up[0], looked_up[-1]) == ("root@acme.example", unheard[-1])
    decided = await world.store.run(world.decider.batch, [Incoming(m) for m in replies])
    # Strangers to the cases' customers: each opens a case linked to the one it follows.
    linked = [o.forward.dedup.linked_case for o in decided if o.forward and o.forward.dedup]
    assert linked == [latest if n % 2 == 0 else root for n in range(60)]


async def test_a_case_reference_from_a_stranger_opens_a_new_linked_case(world: World) -> None:
    first = await world.send(message())
    ref = dedup(first)[1]
    assert ref is not None
    stranger = await world.send(
        message("bob@beta.example", "About your case", thread=Thread(case_ref=ref))
    )
    assert stranger.forward is not None and stranger.forward.dedup is not None
    assert stranger.forward.dedup.verdict == "new"
    assert stranger.forward.dedup.linked_case == ref
    assert "neither its customer nor a participant" in stranger.forward.dedup.reason

    await world.event(
        ref, "participant-added", T0, participant=Identity(kind="email", address="bob@beta.example")
    )
    again = await world.send(message("bob@beta.example", "Me again", thread=Thread(case_ref=ref)))
    assert dedup(again) == ("follow-up", ref)


async def test_chat_within_the_conversation_window_continues_the_open_case(world: World) -> None:
    chat = dict(channel="chat", thread=Thread(conversation_key="tg:42"))
    first = await world.send(message("+4930123456", "hello", **chat))
    soon = await world.send(
        message("+4930123456", "are you there?", at=T0 + timedelta(minutes=10), **chat)
    )
    late = await world.send(message("+4930123456", "new thing", at=T0 + timedelta(hours=2), **chat))
    assert dedup(soon) == ("follow-up", dedup(first)[1])
    assert dedup(late)[0] == "new"


async def test_a_flood_from_one_number_joins_the_right_cases_in_any_order(world: World) -> None:
    """Hundreds of SMS in one batch, some arriving late: each continues the conversation's
    latest open case within the window, and a repeated text is a duplicate of its first."""
    sms = dict(channel="sms")
    flood = [
        message("+4930123456", f"reading {n}", at=T0 + timedelta(seconds=5 * n), **sms)
        for n in range(300)
    ]
    flood += [message("+4930123456", "STOP", at=T0 + timedelta(seconds=n), **sms) for n in (7, 3)]
    decided = await world.store.run(world.decider.batch, [Incoming(m) for m in flood])
    ref = dedup(decided[0])[1]
    verdicts = Counter(dedup(outcome) for outcome in decided[1:])
    # The STOP sent at 7 s continues the conversation; the one sent at 3 s, come after it,
    # has the same content.
    assert verdicts == {("follow-up", ref): 300, ("duplicate", ref): 1}
    assert decided[-1].forward and decided[-1].forward.dedup
    assert "same content as the customer's sms message of" in decided[-1].forward.dedup.reason

    assert await world.event(ref or "", "closed", T0 + timedelta(minutes=26))
    later = T0 + timedelta(minutes=26, seconds=30)
    after = await world.store.run(
        world.decider.batch,
        [
            Incoming(message("+4930123456", "still there?", at=later, **sms)),
            # Arrived late: sent before the one above, after the case was closed.
            Incoming(message("+4930123456", "hello?", at=later - timedelta(seconds=10), **sms)),
        ],
    )
    reopened = dedup(after[0])
    assert reopened[0] == "new" and reopened[1] != ref  # the conversation's case was closed
    assert dedup(after[1]) == ("follow-up", reopened[1])


async def test_a_follow_up_to_a_closed_case_reopens_it_or_opens_a_linked_case(world: World) -> None:
    ref = dedup(await world.send(message()))[1]
    assert ref is not None
    assert await world.event(ref, "closed", T0 + timedelta(days=1))
    reopened = await world.send(
        message(text="Not fixed", at=T0 + timedelta(days=3), thread=Thread(case_ref=ref))
    )
    assert reopened.forward is not None and reopened.forward.dedup is not None
    assert (reopened.forward.dedup.verdict, reopened.forward.dedup.reopened) == ("follow-up", True)
    assert await world.event(ref, "resolved", T0 + timedelta(days=4))
    much_later = await world.send(
        message(text="Again", at=T0 + timedelta(days=40), thread=Thread(case_ref=ref))
    )
    assert much_later.forward is not None and much_later.forward.dedup is not None
    assert much_later.forward.dedup.verdict == "new"
    assert much_later.forward.dedup.linked_case == ref
    assert "has been resolved for 36 days (over 14)" in much_later.forward.dedup.reason


async def test_case_events_are_idempotent_and_unknown_cases_rejected(world: World) -> None:
    ref = dedup(await world.send(message()))[1]
    event = CaseEventMessage(id="ev-1", case=ref or "", event="assigned", at=T0, assignee="zoe")
    assert await world.store.run(apply_event, event, "C-") is True
    assert await world.store.run(apply_event, event, "C-") is False
    with pytest.raises(EventRejected, match="no case C-999"):
        await world.event("C-999", "closed", T0)
    follow = await world.send(
        message(text="any news?", thread=Thread(case_ref=ref), at=T0 + timedelta(hours=1))
    )
    assert follow.forward is not None and follow.forward.history is not None
    assert [(c.id, c.status) for c in follow.forward.history.open_cases] == [(ref, "assigned")]


async def test_history_is_attached_to_every_forward(world: World) -> None:
    days = [0, 2, 5, 20, 60, 100]
    for day in days:
        await world.send(message(text=f"request {day}", at=T0 + timedelta(days=day)))
    await world.send(
        message("+4930123456", "sms request", channel="sms", at=T0 + timedelta(days=100))
    )
    latest = await world.send(message(text="latest", at=T0 + timedelta(days=101)))
    assert latest.forward is not None
    customer, history = latest.forward.customer, latest.forward.history
    assert customer is not None and history is not None
    assert (customer.external_id, customer.name, customer.organisation) == (
        "ACME-1",
        "Ann Lee",
        "Acme",
    )
    assert (customer.tier, customer.known) == ("gold", True)
    counts = {c.days: (c.total, c.by_channel) for c in history.contacts}
    assert counts == {
        7: (2, {"email": 1, "sms": 1}),
        30: (2, {"email": 1, "sms": 1}),
        90: (4, {"email": 3, "sms": 1}),
    }
    assert history.last_queue == "support"
    assert len(history.recent_cases) == 5
    assert len(history.open_cases) == 7
    assert history.repeat_contact is False
    third = await world.send(message(text="third this week", at=T0 + timedelta(days=101, hours=1)))
    assert third.forward is not None and third.forward.history is not None
    assert third.forward.history.repeat_contact is True
    assert third.forward.history.repeat_reason == "3 contacts in the last 7 days (threshold 3)"


async def test_a_sender_with_many_open_cases_gets_the_latest_without_all_being_read(
    world: World,
) -> None:
    shown, recent = OPEN_CASES_LISTED, DispatcherSettings().history.recent_cases
    refs = []
    for n in range(shown + 6):  # each its own case, all left open
        sent = await world.send(message(text=f"alert {n} fired", at=T0 + timedelta(minutes=n)))
        assert sent.forward is not None and sent.forward.dedup is not None
        refs.append(sent.forward.dedup.case_id)
    latest = await world.send(message(text="one more alert", at=T0 + timedelta(hours=2)))
    assert latest.forward is not None and latest.forward.history is not None
    history = latest.forward.history
    assert [c.id for c in history.open_cases] == refs[::-1][:shown]
    assert [c.id for c in history.recent_cases] == refs[::-1][:recent]
    assert history.last_queue == "support"

    def read(session: Session) -> int:
        [root] = session.scalars(select(Customer.id).where(Customer.external_id == "ACME-1"))
        wanted = wanted_for([latest.case], [], "C-", 90, [None])
        return len(load(session, [root], wanted, world.decider.windows).cases)

    # The latest open ones (the last written to and the recent ones among them), not all.
    assert await world.store.run(read) == shown


async def test_retention_prunes_old_records_and_fingerprints(world: World) -> None:
    await world.send(message(text="old", at=T0))
    await world.send(message(text="recent", at=T0 + timedelta(days=10)))
    await world.send(message(text="new", at=T0 + timedelta(days=13)))
    retention = DispatcherSettings().retention.model_copy(
        update={"message_days": 7, "fingerprint_h": 48.0}
    )
    pruned = await world.store.prune(retention, now=T0 + timedelta(days=14))
    assert (pruned.messages, pruned.fingerprints, pruned.counters) == (1, 1, 0)

    def left(session):  # type: ignore[no-untyped-def]
        rows = session.execute(select(Message.reason, Message.fingerprint)).all()
        return sorted(row.fingerprint is not None for row in rows), session.scalar(
            select(func.count()).select_from(Message)
        )

    assert await world.store.run(left) == ([False, True], 2)
    later = await world.store.prune(retention, now=T0 + timedelta(days=101))
    assert later.counters == 2, "the counters of days older than 90 days go"


@pytest.mark.slow
async def test_a_customer_another_dispatcher_holds_is_put_off_then_waited_for(
    pg_url: str,
) -> None:
    """Ann's mail and SMS come from two identities, so on two partitions: while another
    dispatcher's transaction holds her, a batch puts her messages off instead of waiting
    (Bob's goes on); handed again, they wait their turn and are decided together."""
    async with opened(pg_url) as world:
        engine = create_engine(pg_url)
        other = engine.connect()
        try:
            ann = await asyncio.to_thread(_hold_customer, other, "ann@acme.example")
            mail = message(text="Invoice 77 is wrong")
            sms = message("+4930123456", "invoice 77 is wrong", channel="sms")
            bob = message("bob@beta.example")
            batch = [Incoming(mail), Incoming(bob), Incoming(sms)]
            first = await world.store.run(world.decider.batch, batch)
            assert [outcome.later for outcome in first] == [True, False, True]
            assert dedup(first[1])[0] == "new"
            assert first[0].forward is None and first[2].forward is None

            again = [Incoming(mail, held=True), Incoming(sms, held=True)]
            waiting = asyncio.create_task(world.store.run(world.decider.batch, again))
            await _until_a_lock_is_waited_for(other, ann)
            assert not waiting.done()
            await asyncio.to_thread(other.rollback)
            decided = await asyncio.wait_for(waiting, 30)
        finally:
            await asyncio.to_thread(other.close)
            engine.dispose()
    assert [outcome.later for outcome in decided] == [False, False]
    verdict, case = dedup(decided[0])
    assert verdict == "new" and dedup(decided[1]) == ("duplicate", case)


def _hold_customer(connection: Connection, address: str) -> int:
    """Lock the customer of `address` in an open transaction (as a dispatcher deciding one of
    their messages does); its id."""
    connection.begin()
    customer = connection.scalar(
        select(IdentityRow.customer_id).where(IdentityRow.address == address)
    )
    connection.execute(select(Customer.id).where(Customer.id == customer).with_for_update())
    return int(customer)


async def _until_a_lock_is_waited_for(connection: Connection, customer: int) -> None:
    """Until another session of this database waits for a lock (the customer's row)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    # A transaction sees pg_stat_activity as it was when it first looked, unless told.
    forget = text("SELECT pg_stat_clear_snapshot()")

    def waiting() -> int | None:
        connection.execute(forget)
        return connection.scalar(query)

    for _ in range(600):
        if await asyncio.to_thread(waiting):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no session waited for customer {customer}")
