"""Contacts an agent logs through the JSON API: same flow as any message, channel "logged"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import DaemonBase
from tests.test_web_api import MESSAGE, submit

WALK_IN = {
    "channel": "logged",
    "via": "walk-in",
    "agent_id": "agent-17",
    "occurred_at": "2026-11-20T09:30:00+01:00",
    "sender": {"phone": "+44 20 7946 0958", "name": "Ann Lee"},
    "subject": "Returned a kettle at the counter",
    "text": "Customer brought back kettle from order 1234; wants a refund.",
}


async def test_a_logged_contact_enters_the_same_flow(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    logged = await submit(daemon, WALK_IN, **{"Idempotency-Key": "desk-2026-11-20-001"})
    plain = await submit(daemon)
    assert (logged.status_code, plain.status_code) == (202, 202), logged.text

    forwarded = {case["id"]: case for case in bodies(await collect(amqp, daemon.names.default, 2))}
    case = forwarded[logged.json()["id"]]
    assert (case["channel"], case["adapter"], case["source_id"]) == (
        "logged",
        "web-api",
        "desk-2026-11-20-001",
    )
    assert case["touchpoints"] == [
        {"kind": "agent", "address": "agent-17"},
        {"kind": "api", "address": "api"},
    ]
    assert case["logged"] == {"via": "walk-in", "agent_id": "agent-17"}
    assert case["sent_at"] == "2026-11-20T09:30:00+01:00"  # the offset as given, like mail
    assert case["sender"]["address"] == "+442079460958"
    assert case["dedup"]["verdict"] == "new"

    web = forwarded[plain.json()["id"]]
    assert (web["channel"], web["logged"], web["sent_at"]) == ("web", None, None)
    assert web["touchpoints"] == [{"kind": "api", "address": "api"}]


async def test_every_way_of_logging_is_accepted(daemon: DaemonBase, amqp: AbstractChannel) -> None:
    ways = ["phone-call", "walk-in", "letter", "social"]
    for via in ways:
        answer = await submit(daemon, {**WALK_IN, "via": via, "text": f"Logged by {via}."})
        assert answer.status_code == 202, answer.text
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=len(ways)))
    assert sorted(case["logged"]["via"] for case in forwarded) == sorted(ways)


async def test_bad_logged_contacts_get_clear_errors(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    without = {k: v for k, v in WALK_IN.items() if k not in ("via", "agent_id")}
    cases = [
        (
            without,
            {
                "via": 'Value error, required for channel "logged"',
                "agent_id": 'Value error, required for channel "logged"',
            },
        ),
        ({**WALK_IN, "via": "pigeon"}, {"via": None}),
        ({**WALK_IN, "agent_id": ""}, {"agent_id": None}),
        ({**WALK_IN, "occurred_at": future}, {"occurred_at": "Value error, lies in the future"}),
        ({**WALK_IN, "occurred_at": "2026-11-20T09:30:00"}, {"occurred_at": None}),
        ({**MESSAGE, "via": "letter"}, {"via": 'Value error, only for channel "logged"'}),
        (
            {**MESSAGE, "agent_id": "agent-17"},
            {"agent_id": 'Value error, only for channel "logged"'},
        ),
        ({**WALK_IN, "channel": "fax"}, {"channel": None}),
    ]
    for body, expected in cases:
        answer = await submit(daemon, body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        errors = {e["field"]: e["message"] for e in answer.json()["errors"]}
        assert set(errors) == set(expected), (body, errors)
        for field, message in expected.items():
            if message is not None:
                assert errors[field] == message
    assert await collect(amqp, daemon.names.default, expected=0) == []
