"""The report's parts: topics, windows, what the dispatcher records for it, the migration
that fills existing cases, and a report that never holds up a writer."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from dispatcher.database import create_engine, upgrade
from dispatcher.decide import Decider, Incoming
from dispatcher.feedback import CaseEventMessage, apply_event
from dispatcher.reports.model import ReportError, window_for
from dispatcher.reports.sql import reading_engine, snapshot
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from dispatcher.tables import Case
from dispatcher.topics import topic_of
from normalizer.model import CaseOpen, SlaDue, Triage
from tests.conftest import migrate
from tests.test_decide import message

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("subject", "language", "topic"),
    [
        ("Refund for order 1234", "en", "refund"),
        ("RE: refund for my order 98765", "en", "refund"),
        ("Order refund please", "en", "refund"),
        ("Router keeps dropping the connection", "en", "connect drop router"),
        ("Connection drops on my router", "en", "connect drop router"),
        ("Fakturaen er forkert", "da", "faktura forkert"),
        ("SV: Fakturaer forkerte", "da", "faktura forkert"),
        ("回复: 打印机无法连接 12", "zh", "打印机无法连接"),
    ],
)
def test_cases_about_the_same_problem_share_a_topic(
    subject: str, language: str, topic: str
) -> None:
    assert topic_of(subject, "ignored", language) == topic


def test_a_case_without_subject_takes_its_topic_from_the_first_line() -> None:
    assert topic_of(None, "\n  Paper jam in tray 2\nthanks", "en") == "jam paper tray"
    assert topic_of("", "", "en") is None
    assert topic_of("1234 #99", None, "en") is None  # nothing but numbers says nothing


@pytest.mark.parametrize(
    ("period", "since", "until", "today", "first", "last"),
    [
        ("month", None, None, date(2026, 4, 15), date(2026, 3, 1), date(2026, 3, 31)),
        ("month", None, None, date(2026, 1, 1), date(2025, 12, 1), date(2025, 12, 31)),
        ("quarter", None, None, date(2026, 5, 20), date(2026, 1, 1), date(2026, 3, 31)),
        ("quarter", date(2026, 4, 1), None, date(2026, 9, 1), date(2026, 4, 1), date(2026, 6, 30)),
        ("month", None, date(2026, 2, 28), date(2026, 9, 1), date(2026, 2, 1), date(2026, 2, 28)),
        ("month", date(2026, 1, 31), None, date(2026, 9, 1), date(2026, 1, 31), date(2026, 2, 27)),
        (
            "month",
            date(2026, 3, 5),
            date(2026, 3, 5),
            date(2026, 9, 1),
            date(2026, 3, 5),
            date(2026, 3, 5),
        ),
    ],
)
def test_the_window_asked_for(
    period: str, since: date | None, until: date | None, today: date, first: date, last: date
) -> None:
    window = window_for(period, since, until, UTC_ZONE, today)  # type: ignore[arg-type]
    assert window.since == datetime.combine(first, datetime.min.time(), UTC)
    assert window.until == datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    assert window.previous.until == window.since
    assert window.previous.until - window.previous.since == window.until - window.since


def test_a_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ReportError, match=r"--until \(2026-03-01\) is before --since"):
        window_for("month", date(2026, 3, 2), date(2026, 3, 1), UTC_ZONE, date(2026, 9, 1))


def triaged(case: CaseOpen, follow_up: bool = False) -> Triage:
    """Triage as the rules would decide: a product, a bucket and an SLA for every case."""
    return Triage(
        queue="network",
        bucket="problem",
        category="defect",
        product="router",
        priority="P2",
        sla=SlaDue(
            policy="standard",
            priority="P2",
            response_due=case.received_at + timedelta(hours=4),
            resolution_due=case.received_at + timedelta(days=2),
        ),
        reason="test rules",
    )


async def test_a_new_case_keeps_what_triage_decided_and_its_topic(store_url: str) -> None:
    store = await Store.open(store_url, auto_migrate=True)
    try:
        decider = Decider(DispatcherSettings(), "case-update", triaged)
        opening = message(text="It drops every hour", subject="Router drops the connection")
        await store.run(decider.batch, [Incoming(opening, False)])
        case = await store.run(lambda session: session.scalars(select(Case)).one())
    finally:
        await store.close()
    assert (case.bucket, case.category, case.product, case.priority) == (
        "problem",
        "defect",
        "router",
        "P2",
    )
    assert case.topic == "connect drop router"
    assert case.response_due == T0 + timedelta(hours=4)
    assert case.resolution_due == T0 + timedelta(days=2)


async def test_the_migration_fills_cases_opened_before_it(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        migrate(engine, "0004")
        with engine.begin() as connection:
            _an_old_case(connection)
        upgrade(engine)
        with engine.connect() as connection:
            row = connection.execute(
                select(Case.bucket, Case.product, Case.topic, Case.response_due)
            ).one()
    finally:
        engine.dispose()
    assert row == ("problem", "kettle", "heat kettl stop", T0)  # 10:00+01:00 is 09:00 UTC


def _an_old_case(connection: object) -> None:
    forward = {
        "text": "It does not heat any more",
        "language": "en",
        "triage": {
            "queue": "support.general",
            "bucket": "problem",
            "product": "kettle",
            "sla": {"policy": "p", "priority": "P3", "response_due": "2026-03-02T10:00:00+01:00"},
        },
    }
    statements = [
        "INSERT INTO customers (id, known, created_at, updated_at) VALUES (1, false, :at, :at)",
        "INSERT INTO cases (id, customer_id, status, queue, channel, subject, opened_at, "
        "last_message_at) VALUES (1, 1, 'open', 'support.general', 'email', "
        "'Kettle stopped heating', :at, :at)",
        "INSERT INTO messages (channel, source_id, case_open_id, customer_id, case_id, "
        "received_at, seen_at, verdict, reason, target_queue, forwarded, repeats, body) VALUES "
        "('email', 'k1', '01J0000000000000000000000K', 1, 1, :at, :at, 'new', 'r', 'q', true, "
        "0, :body)",
    ]
    for statement in statements:
        connection.execute(text(statement), {"at": T0, "body": json.dumps(forward)})  # type: ignore[attr-defined]


async def test_a_report_reading_sqlite_never_holds_up_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    writer = create_engine(url, lock_timeout_s=0.5)
    upgrade(writer)
    reader = reading_engine(url)
    try:
        with snapshot(reader) as db:
            assert db.execute(select(Case.id)).all() == []
            with writer.begin() as connection:  # BEGIN IMMEDIATE: the write lock, at once
                connection.execute(
                    text(
                        "INSERT INTO customers (id, known, created_at, updated_at) "
                        "VALUES (1, 0, '2026-03-02', '2026-03-02')"
                    )
                )
            # ...and the report's snapshot still sees the store as it began.
            assert db.execute(text("SELECT count(*) FROM customers")).scalar() == 0
    finally:
        reader.dispose()
        writer.dispose()


async def test_the_first_answer_from_the_helpdesk_is_the_first_response(store_url: str) -> None:
    store = await Store.open(store_url, auto_migrate=True)
    try:
        decider = Decider(DispatcherSettings(), "case-update", triaged)
        await store.run(decider.batch, [Incoming(message(subject="Router is down"), False)])
        events = [
            ("assigned", T0 + timedelta(minutes=10)),  # assigning is no answer
            ("responded", T0 + timedelta(hours=2)),
            ("resolved", T0 + timedelta(hours=1)),  # delivered late, happened earlier
            ("closed", T0 + timedelta(hours=3)),
        ]
        for number, (kind, at) in enumerate(events):
            event = CaseEventMessage(id=f"hd-{number}", case="C-1", event=kind, at=at)  # type: ignore[arg-type]
            assert await store.run(apply_event, event, "C-")
        case = await store.run(lambda session: session.scalars(select(Case)).one())
    finally:
        await store.close()
    assert case.first_response_at == T0 + timedelta(hours=1)
    assert case.status == "closed"
