"""The web submission: validation in the API's terms, normalisation to case-open."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from normalizer.text import clean_line, clean_text
from normalizer.web import WebMessage, normalize_web

CASE_ID = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"


def parse(payload: dict[str, object], region: str | None = None) -> WebMessage:
    return WebMessage.model_validate_json(
        json.dumps(payload), context={"default_phone_region": region}
    )


def normalize(message: WebMessage):
    return normalize_web(
        message,
        case_id=CASE_ID,
        source_id="key-1",
        received_at=datetime(2026, 11, 23, tzinfo=UTC),
        touchpoint="api",
    )


def test_sender_addresses_are_normalised() -> None:
    message = parse(
        {
            "sender": {"email": "Ann.Lee@Example.COM", "phone": "+49 30 901820", "name": " Ann "},
            "subject": "Invoice    question",
            "text": "Cafe\u0301 \u202eplease\u0007 help\r\n\r\n\r\n\r\nthanks  ",
        }
    )
    case = normalize(message)
    assert (case.sender.kind, case.sender.address, case.sender.name) == (
        "email",
        "ann.lee@example.com",
        "Ann",
    )
    assert [(i.kind, i.address) for i in case.sender.alternates] == [("phone", "+4930901820")]
    assert case.subject == "Invoice question"
    assert case.text == "Caf\u00e9 please help\n\nthanks"
    assert (case.channel, case.adapter, case.source_id) == ("web", "web-api", "key-1")


def test_a_national_number_needs_a_region() -> None:
    with pytest.raises(ValidationError, match="country code"):
        parse({"sender": {"phone": "030 901820"}, "text": "hi"})
    message = parse({"sender": {"phone": "030 901820"}, "text": "hi"}, region="DE")
    assert normalize(message).sender.address == "+4930901820"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"sender": {"name": "Only a name"}, "text": "hi"}, "sender"),
        ({"sender": {"email": "not-an-address"}, "text": "hi"}, "sender.email"),
        ({"sender": {"phone": "+1 555"}, "text": "hi"}, "sender.phone"),
        ({"sender": {"email": "a@example.com"}, "text": " \u0000 "}, "text"),
        ({"sender": {"email": "a@example.com"}}, "text"),
        ({"sender": {"email": "a@example.com"}, "text": "hi", "colour": "red"}, "colour"),
    ],
)
def test_invalid_submissions_name_the_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse(payload)
    fields = {".".join(str(p) for p in e["loc"]) for e in raised.value.errors()}
    assert field in fields


def test_clean_text_keeps_scripts_and_emoji_joiners() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert clean_text(f"お問い合わせ {family}") == f"お問い合わせ {family}"
    assert clean_line("  a \t b\n c ") == "a b c"


def test_structured_fields_are_carried_as_text() -> None:
    message = parse(
        {
            "sender": {"email": "a@example.com"},
            "text": "hi",
            "fields": {"order": " A-1 ", "seats": 20, "trial": True, "plan.tier": "gold"},
        }
    )
    assert normalize(message).fields == {
        "order": "A-1",
        "seats": "20",
        "trial": "true",
        "plan.tier": "gold",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"1st": "x"},
        {"with space": "x"},
        {"long": "x" * 1001},
        {"nested": {"a": 1}},
        {"order": "A-1\u0000"},
        {"order": "A-1\r\nX-Injected: yes"},
    ],
)
def test_bad_structured_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as raised:
        parse({"sender": {"email": "a@example.com"}, "text": "hi", "fields": fields})
    assert {e["loc"][0] for e in raised.value.errors()} == {"fields"}
