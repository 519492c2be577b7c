"""The committed JSON Schema matches the model, and messages round-trip through it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from normalizer.model import CaseOpen, Sender, Touchpoint
from normalizer.schema import SCHEMA_FILE, render_schema


def test_committed_schema_is_current() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == render_schema(), "run `ingest schema --write` and commit the file"


def test_schema_names_the_wire_fields() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$id"] == "case-open/1"
    assert schema["properties"]["schema"]["const"] == "case-open/1"
    required = set(schema["required"])
    assert {"id", "received_at", "channel", "adapter", "source_id", "touchpoints", "sender"} <= (
        required
    )


def test_a_message_round_trips_through_json() -> None:
    case = CaseOpen(
        id="01JCZ5Q2X7K9V3M4N5P6Q7R8S9",
        received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        channel="web",
        adapter="web-api",
        source_id="order-1",
        touchpoints=[Touchpoint(kind="api", address="api")],
        sender=Sender(kind="email", address="a@example.com", name="Ann"),
        text="Hello",
    )
    wire = json.loads(case.to_json())
    assert wire["schema"] == "case-open/1"
    assert CaseOpen.model_validate(wire) == case
