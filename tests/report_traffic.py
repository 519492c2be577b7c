"""Known traffic for the report: customers, cases, messages and helpdesk events made from a
seed, written straight into a migrated store, with the rows kept so that a test can count
what the report must say (and the benchmark can fill a store of a million messages).

Cases open over the report's month and the month before it (so trends have something to
compare; the benchmark spreads them over a year), a few before (they must not count);
messages follow their case by hours or days (some past the month's end); helpdesk events
answer, resolve, close and reopen cases. Then, from a random source of their own (so the rows
above do not change with them): incidents made of runs of messages close in time (one merged
into another, members whose message retention removed, messages compared that joined none),
and the knowledge base's daily counters with the deflections behind them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from dispatcher.tables import (
    Case,
    CaseEvent,
    Customer,
    Deflection,
    Identity,
    Incident,
    IncidentMessage,
    KbCount,
    Message,
)

UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
CHANNELS = ("email", "sms", "web", "chat", "voice", "whatsapp")
QUEUES = ("support.general", "billing", "network", "sales")
BUCKETS = ("problem", "action", "consulting", "escalation", None)
CATEGORIES = ("delivery", "defect", "invoice", None)
PRIORITIES = ("P1", "P2", "P3", "P4")
TARGET_H = {"P1": 1, "P2": 4, "P3": 8, "P4": 24}
PROBLEMS = {
    "router": [
        ("connect drop router", ["Router keeps dropping the connection", "Connection drops"]),
        ("firmwar updat", ["Firmware update failed", "Update of the firmware fails"]),
    ],
    "kettle": [("heat kettl stop", ["Kettle stopped heating", "Kettle stops heating"])],
    "printer": [("jam paper", ["Paper jam", "Paper jam again"])],
    None: [("deliveri late", ["Late delivery", "Delivery late"]), ("refund", ["Refund please"])],
}
CHUNK = 5000
ARTICLES = ("reset-router", "late-delivery", "invoice-copy", "paper-jam", "descale-kettle")
ANSWERS = ("Thanks, that worked", "Solved it", "Fixed, thank you", None)


@dataclass
class Traffic:
    """The rows written, by table."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    incident_messages: list[dict[str, Any]] = field(default_factory=list)
    kb_counts: list[dict[str, Any]] = field(default_factory=list)
    deflections: list[dict[str, Any]] = field(default_factory=list)

    def root(self, customer_id: int) -> int:
        merged = self.customers[customer_id - 1]["merged_into"]
        return merged if merged is not None else customer_id

    def write(self, engine: Engine) -> None:
        """Insert every row, a chunk per statement, parents first."""
        tables: Sequence[tuple[Any, list[dict[str, Any]]]] = (
            (Customer.__table__, [c for c in self.customers if c["merged_into"] is None]),
            (Customer.__table__, [c for c in self.customers if c["merged_into"] is not None]),
            (Identity.__table__, self.identities),
            (Case.__table__, self.cases),
            (Message.__table__, self.messages),
            (CaseEvent.__table__, self.events),
            (Incident.__table__, [i for i in self.incidents if i["merged_into"] is None]),
            (Incident.__table__, [i for i in self.incidents if i["merged_into"] is not None]),
            (IncidentMessage.__table__, self.incident_messages),
            (KbCount.__table__, self.kb_counts),
            (Deflection.__table__, self.deflections),
        )
        with engine.begin() as connection:
            for table, rows in tables:
                for chunk in _chunks(rows):
                    connection.execute(insert(table), chunk)


def generate(
    seed: int = 7,
    customers: int = 60,
    cases: int = 400,
    body_bytes: int = 0,
    days: int = 62,
) -> Traffic:
    """Traffic over the `days` before April 2026 (by default the report's month, March 2026,
    and the stretch before it that trends compare with)."""
    rng = random.Random(seed)
    traffic = Traffic()
    _customers(traffic, rng, customers)
    body = ('{"text": "' + "x" * body_bytes + '"}') if body_bytes else None
    heavy = list(range(1, max(2, customers // 10) + 1))  # a tenth write most of the mail
    for number in range(1, cases + 1):
        owner = rng.choice(heavy) if rng.random() < 0.4 else rng.randint(1, customers)
        _case(traffic, rng, number, owner, body, days)
    _incidents(traffic, random.Random(seed + 1), max(12, cases // 1000))
    _knowledge_base(traffic, random.Random(seed + 2), days)
    return traffic


def _customers(traffic: Traffic, rng: random.Random, count: int) -> None:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    for number in range(1, count + 1):
        kind = number % 10  # 0: unknown sender, 1: prospect, the rest customers
        merged = number - 1 if number % 17 == 0 and (number - 1) % 17 != 0 else None
        traffic.customers.append(
            {
                "id": number,
                "external_id": None if kind == 0 else f"EXT-{number}",
                "name": None if kind == 0 else f"Customer {number}",
                "organisation": None,
                "tier": rng.choice(("gold", "silver", None)),
                "is_customer": None if kind == 0 else kind != 1,
                "known": kind != 0,
                "merged_into": merged,
                "created_at": created,
                "updated_at": created,
            }
        )
        traffic.identities.append(
            {
                "id": number,
                "kind": "email",
                "address": f"c{number}@example.com",
                "customer_id": merged or number,
                "origin": "message",
                "created_at": created,
            }
        )


def _case(
    traffic: Traffic, rng: random.Random, number: int, sender: int, body: str | None, days: int
) -> None:
    opened = UNTIL - timedelta(days=rng.uniform(0, days))
    if rng.random() < 0.03:  # before the span: outside the report and its trends
        opened -= timedelta(days=days)
    product = rng.choice(list(PROBLEMS))
    topic, subjects = rng.choice(PROBLEMS[product])
    priority = rng.choice(PRIORITIES)
    channel = rng.choice(CHANNELS)
    row = {
        "id": number,
        "customer_id": traffic.root(sender),
        "status": "open",
        "queue": rng.choice(QUEUES),
        "priority": priority,
        "channel": channel,
        "subject": rng.choice(subjects) if rng.random() < 0.95 else None,
        "assignee": None,
        "opened_at": opened,
        "last_message_at": opened,
        "closed_at": None,
        "linked_case_id": None,
        "bucket": rng.choice(BUCKETS),
        "category": rng.choice(CATEGORIES),
        "product": product,
        "topic": topic,
        "response_due": opened + timedelta(hours=TARGET_H[priority]),
        "resolution_due": None,
        "first_response_at": None,
    }
    traffic.cases.append(row)
    _message(traffic, row, sender, channel, opened, "new", body)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        at = opened + timedelta(hours=rng.uniform(0.5, 24 * 6))
        _message(traffic, row, sender, rng.choice(CHANNELS), at, "follow-up", body)
        row["last_message_at"] = max(row["last_message_at"], at)
    _helpdesk(traffic, rng, row)


def _message(
    traffic: Traffic,
    case: dict[str, Any],
    sender: int,
    channel: str,
    at: datetime,
    verdict: str,
    body: str | None,
) -> None:
    number = len(traffic.messages) + 1
    traffic.messages.append(
        {
            "id": number,
            "channel": channel,
            "source_id": f"s{number}",
            "case_open_id": f"{number:026d}",
            "customer_id": sender,
            "case_id": case["id"],
            "received_at": at,
            "seen_at": at,
            "conversation_key": None,
            "fingerprint": None,
            "verdict": verdict,
            "reason": "generated",
            "target_queue": case["queue"],
            "forwarded": True,
            "repeats": 0,
            "body": body,
            "ack": None,
        }
    )


def _helpdesk(traffic: Traffic, rng: random.Random, case: dict[str, Any]) -> None:
    """Answer most cases (some late), then resolve and close, close without resolving, or
    close and reopen."""
    at = case["opened_at"]
    if rng.random() < 0.15:
        return  # never answered
    at += timedelta(hours=rng.expovariate(1 / TARGET_H[case["priority"]]))
    _event(traffic, case, rng.choice(("responded", "responded", "resolved")), at)
    case["first_response_at"] = at  # as the dispatcher keeps it when the event arrives
    fate = rng.random()
    if fate < 0.3:
        return
    at += timedelta(hours=rng.uniform(1, 72))
    if fate < 0.45:  # closed without a resolution
        _event(traffic, case, "closed", at)
        case["status"], case["closed_at"] = "closed", at
        return
    _event(traffic, case, "resolved", at)
    _event(traffic, case, "closed", at + timedelta(hours=1))
    case["status"], case["closed_at"] = "closed", at + timedelta(hours=1)
    if fate > 0.85:
        _event(traffic, case, "reopened", at + timedelta(days=rng.uniform(1, 5)), helpdesk=False)
        case["status"], case["closed_at"] = "open", None


def _event(
    traffic: Traffic, case: dict[str, Any], kind: str, at: datetime, helpdesk: bool = True
) -> None:
    number = len(traffic.events) + 1
    traffic.events.append(
        {
            "id": number,
            "case_id": case["id"],
            "kind": kind,
            "at": at,
            "external_id": f"hd-{number}" if helpdesk else None,
            "case_open_id": None,
            "detail": None,
        }
    )


def _incidents(traffic: Traffic, rng: random.Random, count: int) -> None:
    """`count` incidents, each a run of 5 to 12 messages next to each other in time (so some
    straddle the period's edges); the last merged into the one before it. One member in
    ten names a message no longer kept, and one message in ten before a run was compared
    and joined no incident."""
    in_time = sorted(traffic.messages, key=lambda m: m["received_at"])
    compared: set[str] = set()
    for number in range(1, count + 1):
        size = rng.randint(5, 12)
        start = rng.randrange(1, len(in_time) - size)
        run = in_time[start : start + size]
        merged = number - 1 if number == count and number > 1 else None
        traffic.incidents.append(
            {
                "id": number,
                "status": "merged" if merged else "formed",
                "first_seen": run[0]["received_at"],
                "last_seen": run[-1]["received_at"],
                "formed_at": run[min(4, size - 1)]["received_at"],
                "size": size,
                "customers": len({m["customer_id"] for m in run}),
                "sample_subject": _subject(traffic, run[0]),
                "merged_into": merged,
            }
        )
        members = [(m, number) for m in run] + [(in_time[start - 1], None)]
        for message, incident in members:
            gone = rng.random() < 0.1
            if message["case_open_id"] in compared:
                continue  # in an earlier run already
            compared.add(message["case_open_id"])
            traffic.incident_messages.append(
                {
                    "case_open_id": f"gone{len(traffic.incident_messages):022d}"
                    if gone
                    else message["case_open_id"],
                    "customer_id": message["customer_id"],
                    "received_at": message["received_at"],
                    "signature": b"\x00" * 8,
                    "incident_id": incident,
                    "subject": _subject(traffic, message),
                }
            )


def _subject(traffic: Traffic, message: dict[str, Any]) -> str | None:
    subject: str | None = traffic.cases[message["case_id"] - 1]["subject"]
    return subject


def _knowledge_base(traffic: Traffic, rng: random.Random, days: int) -> None:
    """Each article's showings, suggestions and deflections per UTC day, from before the
    span to its end; one deflection row for each deflection counted."""
    first = UNTIL.date() - timedelta(days=days + 3)
    for offset in range((UNTIL.date() - first).days + 1):  # the day after too: not counted
        day = first + timedelta(days=offset)
        for article in ARTICLES:
            shown = rng.choice((0, 0, 1, 2, 3, 5))
            accepted = sum(1 for _ in range(shown) if rng.random() < 0.4)
            suggested = rng.choice((0, 1, 2, 4))
            for kind, count in (("shown", shown), ("accepted", accepted), ("suggested", suggested)):
                if count:
                    traffic.kb_counts.append(
                        {"article_id": article, "kind": kind, "day": day, "count": count}
                    )
            for _ in range(accepted):
                _deflection(traffic, rng, article, day)


def _deflection(traffic: Traffic, rng: random.Random, article: str, day: date) -> None:
    number = len(traffic.deflections) + 1
    at = datetime.combine(day, time(), UTC) + timedelta(seconds=rng.uniform(0, 86399))
    traffic.deflections.append(
        {
            "id": number,
            "event_id": f"{number:026d}",
            "at": at,
            "article_id": article,
            "language": rng.choice(("en", "da")),
            "touchpoint": "contact-form",
            "answer": rng.choice(ANSWERS),
        }
    )


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]
