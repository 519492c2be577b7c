"""Every normaliser refuses through one base, `Unprocessable`, with its own reason unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from normalizer.envelope import Envelope, Payload, RawMail, normalize
from normalizer.errors import Unprocessable
from normalizer.mail import NO_SENDER, UnprocessableMail
from normalizer.telegram import TelegramPayload, UnprocessableUpdate
from normalizer.twilio import TwilioCall, TwilioMessage, UnusableNumber

CASE_ID = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NOT_A_NUMBER = "the sender 'client:anna' is not a phone number: not a phone number"


@pytest.mark.parametrize(
    ("channel", "adapter", "payload", "error", "reason"),
    [
        (
            "email",
            "smtp",
            RawMail(b"Subject: hello\r\n\r\nno sender at all\r\n", ("help@example.org",)),
            UnprocessableMail,
            NO_SENDER,
        ),
        (
            "sms",
            "twilio",
            TwilioMessage(message_sid="SM" + "2" * 32, sender="client:anna", recipient="+1"),
            UnusableNumber,
            NOT_A_NUMBER,
        ),
        (
            "voice",
            "twilio",
            TwilioCall(call_sid="CA" + "3" * 32, caller="client:anna", called="+1"),
            UnusableNumber,
            NOT_A_NUMBER,
        ),
        (
            "chat",
            "telegram",
            TelegramPayload(update={"update_id": 1}),
            UnprocessableUpdate,
            "the update holds no message",
        ),
    ],
)
def test_each_refusal_is_an_unprocessable_with_the_normalisers_own_reason(
    channel: str, adapter: str, payload: Payload, error: type[Exception], reason: str
) -> None:
    envelope = Envelope(channel, adapter, "help@example.org", AT, payload, "source-1")
    with pytest.raises(Unprocessable) as raised:
        normalize(envelope, CASE_ID)
    assert type(raised.value) is error
    assert str(raised.value) == reason  # the quarantine keeps this text as the reason
