"""The Twilio channel's pure parts: normalising, when a call is due, settings, linked files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.settings import TwilioChannelSettings
from channels.twilio.calls import GREETING_ALLOWANCE_S, PendingCall, due_at
from ingest.settings import load_settings
from normalizer.envelope import PAYLOAD_KINDS, Envelope, kind_of, normalize
from normalizer.errors import Unprocessable
from normalizer.model import Attachment
from normalizer.twilio import TwilioCall, TwilioMessage, normalize_call, normalize_message

CASE_ID = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = TwilioChannelSettings(
    transcript_wait_s=30, recording_wait_s=10, voice_max_recording_s=60
)


def test_a_short_code_touchpoint_is_kept_as_written_and_text_cleaned() -> None:
    message = TwilioMessage(
        message_sid="SM" + "1" * 32,
        sender="+1 (202) 555-0143",
        recipient="55555",
        body="  caf\u0065\u0301 \u202e\r\nok  ",
        profile_name="  ",
    )
    case = normalize_message(message, case_id=CASE_ID, received_at=AT)
    assert case.channel == "sms"
    assert case.sender.address == "+12025550143"
    assert case.sender.name is None
    assert [t.address for t in case.touchpoints] == ["55555"]
    assert case.text == "caf\u00e9\nok"


def test_an_unusable_sender_is_unprocessable_and_the_payload_round_trips() -> None:
    message = TwilioMessage(message_sid="SM" + "2" * 32, sender="client:anna", recipient="+1")
    envelope = Envelope("sms", "twilio", "+1", AT, message, message.message_sid)
    with pytest.raises(Unprocessable, match="not a phone number"):
        normalize(envelope, CASE_ID)
    kind = kind_of(message)
    assert kind is PAYLOAD_KINDS["twilio-message"]
    assert kind.decode(kind.encode(message), ("+1",)) == message
    call = TwilioCall(call_sid="CA" + "3" * 32, caller="+442079460958", called="+1")
    assert (
        PAYLOAD_KINDS["twilio-call"].decode(PAYLOAD_KINDS["twilio-call"].encode(call), ()) == call
    )


def test_a_call_without_recording_is_a_callback_request() -> None:
    call = TwilioCall(call_sid="CA" + "4" * 32, caller="+442079460958", called="+14155550100")
    case = normalize_call(call, case_id=CASE_ID, received_at=AT)
    assert case.flags.callback_requested
    assert case.attachments == []
    assert case.text == ""


def pending(**fields: object) -> PendingCall:
    return PendingCall.model_validate({"call_sid": "CA" + "5" * 32, "started_at": AT} | fields)


@pytest.mark.parametrize(
    ("fields", "due"),
    [
        ({}, AT + timedelta(seconds=60 + GREETING_ALLOWANCE_S + 10)),
        ({"ended_at": AT + timedelta(seconds=5)}, AT + timedelta(seconds=15)),
        ({"ended_at": AT, "recording_absent": True}, AT),
        ({"recording_at": AT}, AT + timedelta(seconds=30)),
        ({"transcript_at": AT}, AT + timedelta(seconds=30)),
        (
            {"recording_at": AT, "transcript_at": AT + timedelta(seconds=3)},
            AT + timedelta(seconds=3),
        ),
        ({"recording_at": AT, "retry_at": AT + timedelta(seconds=40)}, AT + timedelta(seconds=40)),
        ({"recording_at": AT, "opened_id": CASE_ID}, None),
    ],
)
def test_when_a_call_is_due(fields: dict[str, object], due: datetime | None) -> None:
    assert due_at(pending(**fields), SETTINGS) == due


def test_without_transcription_a_recording_is_due_at_once() -> None:
    settings = SETTINGS.model_copy(update={"transcribe": False})
    assert due_at(pending(recording_at=AT), settings) == AT


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"enabled": True, "public_url": "https://x.example"}, "auth_token is needed"),
        ({"enabled": True, "auth_token": "t"}, "public_url is needed"),
        ({"public_url": "https://x.example/?a=1"}, "without query"),
        ({"acknowledgement": {"en": "Ref {case}"}}, "only {reference}"),
        ({"acknowledgement": {"en": "Ref {"}}, "en:"),
        ({"acknowledgement": {"de": "Danke"}}, "default_language"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("?", r"\?")):
        TwilioChannelSettings.model_validate(values)


def test_the_shipped_settings_document_the_defaults() -> None:
    shipped = load_settings(Path(__file__).parent.parent / "settings.toml")
    assert shipped.channels.twilio == TwilioChannelSettings()


def test_the_reply_language_follows_the_senders_region() -> None:
    settings = TwilioChannelSettings(
        acknowledgement={"en": "Thanks {reference}", "de": "Danke {reference}"},
        region_languages={"de": "de", "fr": "fr"},
        public_url="https://x.example/base/",
    )
    assert settings.acknowledgement_for("DE") == "Danke {reference}"
    assert settings.acknowledgement_for("FR") == "Thanks {reference}"  # no French text
    assert settings.acknowledgement_for(None) == "Thanks {reference}"
    assert settings.url("/twilio/sms") == "https://x.example/base/twilio/sms"
    assert TwilioChannelSettings(acknowledgement={}).acknowledgement_for("DE") is None


def test_an_attachment_is_stored_or_linked() -> None:
    linked = Attachment(name="a.jpg", media_type="image/jpeg", url="https://x.example/a")
    assert linked.sha256 is None
    stored = Attachment(name="a", media_type="text/plain", size=1, sha256="0" * 64, ref="sha256:0")
    assert stored.url is None
    with pytest.raises(ValidationError, match="needs size, sha256 and ref"):
        Attachment(name="a", media_type="text/plain")
    with pytest.raises(ValidationError, match="go together"):
        Attachment(name="a", media_type="text/plain", url="https://x.example/a", sha256="0" * 64)
    with pytest.raises(ValidationError):
        Attachment(name="a", media_type="text/plain", url="file:///etc/passwd")
