"""The acknowledgement/1 request: what it accepts, what it refuses, and its committed schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from channels.replies.mail import compose
from normalizer.acks import AckRequest
from normalizer.model import CaseOpen, Identity, Sender, Touchpoint
from normalizer.schema import ACK_SCHEMA_FILE, render_schema

BASE = {
    "case_id": "01JCZ5Q2X7K9V3M4N5P6Q7R8S9",
    "channel": "email",
    "to": "ann@example.org",
    "via": "support@example.com",
    "source_id": "orig-1@mail.example.org",
    "language": "da",
    "text": "Tak for din besked. Din reference: 01JCZ5Q2X7K9V3M4N5P6Q7R8S9",
}


def test_committed_schema_is_current() -> None:
    committed = ACK_SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == render_schema("acknowledgement/1"), "run `ingest schema --write`"
    schema = json.loads(committed)
    assert schema["$id"] == "acknowledgement/1"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "case_id", "channel", "to", "via", "source_id", "language", "text"
    }  # fmt: skip


def test_a_request_round_trips_through_json_with_its_schema_name() -> None:
    ack = AckRequest.model_validate(BASE | {"to": " Ann@Example.ORG ", "subject": "Modtaget"})
    wire = json.loads(ack.to_json())
    assert wire["schema"] == "acknowledgement/1"
    assert wire["to"] == "ann@example.org", "email addresses are lower-cased"
    assert AckRequest.model_validate_json(ack.to_json()) == ack


@pytest.mark.parametrize(
    ("channel", "to"),
    [
        ("email", "ann@example.org"),
        ("sms", "+4915112345678"),
        ("whatsapp", "+4915112345678"),
        ("voice", "+442079460958"),
        ("chat", "381000042"),
        ("chat", "-1001234567890"),
        ("web", "bob@example.org"),
        ("logged", "+4530123456"),
    ],
)
def test_every_channel_takes_its_kind_of_address(channel: str, to: str) -> None:
    assert AckRequest.model_validate(BASE | {"channel": channel, "to": to}).to == to


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"channel": "sms", "to": "ann@example.org"}, "sms replies go to an E.164 number"),
        ({"channel": "email", "to": "+4915112345678"}, "email replies go to an email address"),
        ({"channel": "chat", "to": "@ann_lee"}, "chat replies go to a Telegram chat id"),
        ({"channel": "fax"}, "channel"),
        ({"text": ""}, "text"),
        ({"schema": "acknowledgement/2"}, "schema"),
        ({"priority": "P1"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(changes: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        AckRequest.model_validate(BASE | changes)


def test_a_request_cannot_be_changed_once_made() -> None:
    ack = AckRequest.model_validate(BASE)
    with pytest.raises(ValidationError):
        ack.text = "changed"  # type: ignore[misc]


def test_the_mail_threads_on_a_message_id_but_never_on_a_hash_or_another_channel_id() -> None:
    threaded = compose(AckRequest.model_validate(BASE), "support@example.com")
    assert threaded["In-Reply-To"] == "<orig-1@mail.example.org>"
    hashed = AckRequest.model_validate(BASE | {"source_id": "sha256:" + "0" * 64})
    assert compose(hashed, "support@example.com")["In-Reply-To"] is None
    web = AckRequest.model_validate(BASE | {"channel": "web", "source_id": "order-7"})
    assert compose(web, "support@example.com")["References"] is None
    assert compose(web, "support@example.com")["Subject"] == f"Your request {BASE['case_id']}"


def case_open(channel: str, sender: Sender, source_id: str, touchpoint: Touchpoint) -> CaseOpen:
    return CaseOpen(
        id=BASE["case_id"],
        received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        channel=channel,  # type: ignore[arg-type]
        adapter="test",
        source_id=source_id,
        touchpoints=[touchpoint],
        sender=sender,
        text="Hello",
    )


@pytest.mark.parametrize(
    ("case", "to", "via"),
    [
        (
            case_open(
                "email",
                Sender(kind="email", address="ann@example.org"),
                "orig-1@mail.example.org",
                Touchpoint(kind="mailbox", address="support@example.com"),
            ),
            "ann@example.org",
            "support@example.com",
        ),
        (
            case_open(
                "whatsapp",
                Sender(kind="phone", address="+4915112345678"),
                "SM" + "a" * 32,
                Touchpoint(kind="number", address="+14155550100"),
            ),
            "+4915112345678",
            "+14155550100",
        ),
        (
            case_open(
                "chat",
                Sender(kind="telegram", address="381000042"),
                "-100123:77",
                Touchpoint(kind="bot", address="@support_test_bot"),
            ),
            "-100123",
            "@support_test_bot",
        ),
        (
            case_open(
                "web",
                Sender(
                    kind="phone",
                    address="+4530123456",
                    alternates=[Identity(kind="email", address="bob@example.org")],
                ),
                "order-7",
                Touchpoint(kind="api", address="api"),
            ),
            "bob@example.org",
            "api",
        ),
    ],
)
def test_a_request_answers_a_case_where_it_came_from(case: CaseOpen, to: str, via: str) -> None:
    ack = AckRequest.answering(case, language="en", text="Thanks", subject="Re")
    assert (ack.case_id, ack.channel, ack.to, ack.via) == (case.id, case.channel, to, via)
    assert ack.source_id == case.source_id
