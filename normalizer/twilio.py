"""Twilio messages (SMS, MMS, WhatsApp) and calls (voicemail, callback requests) to case-opens.

The payloads keep what Twilio posted, unchanged, so that quarantine can keep it and a replay
normalises it again; numbers become E.164 here, and a sender number that is not one makes the
input unprocessable (a withheld caller id, a SIP or client address).
"""

from __future__ import annotations

import mimetypes
import re
from datetime import datetime
from typing import Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field

from normalizer.blobs import Blob
from normalizer.errors import Unprocessable
from normalizer.model import Attachment, CaseOpen, Flags, Sender, Thread, Touchpoint
from normalizer.phone import InvalidPhoneNumber, to_e164
from normalizer.text import clean_line, clean_text

WHATSAPP_PREFIX = "whatsapp:"
RECORDING_MEDIA_TYPE = "audio/x-wav"
"""What Twilio serves at a RecordingUrl without an extension."""


class UnusableNumber(Unprocessable):
    """The sender's number is not a phone number; str() says which and why."""


class TwilioMedia(BaseModel):
    """One MMS or WhatsApp media item: Twilio's URL and the media type it announced."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://", max_length=2048)
    media_type: str = Field(max_length=255)
    content: Base64Bytes | None = Field(
        default=None, description="The bytes, when the channel fetched them from Twilio."
    )


class TwilioMessage(BaseModel):
    """An SMS, MMS or WhatsApp message as posted to `/twilio/sms` (the fields we use)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    message_sid: str = Field(min_length=1, max_length=64)
    sender: str = Field(max_length=128, description="From, with its `whatsapp:` prefix if any.")
    recipient: str = Field(max_length=128, description="To: our number.")
    body: str = Field(default="", max_length=100_000)
    profile_name: str | None = Field(default=None, max_length=256)
    media: list[TwilioMedia] = Field(default_factory=list, max_length=10)


class TwilioCall(BaseModel):
    """A finished call to our number: the voicemail left, or none (a callback request)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    call_sid: str = Field(min_length=1, max_length=64)
    caller: str = Field(max_length=128)
    called: str = Field(max_length=128)
    recording_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    recording_sid: str | None = Field(default=None, max_length=64)
    duration_s: float | None = Field(default=None, ge=0)
    transcript: str | None = Field(default=None, max_length=100_000)


def message_channel(sender: str) -> Literal["sms", "whatsapp"]:
    """WhatsApp when Twilio prefixed the sender so, SMS (or MMS) otherwise."""
    return "whatsapp" if sender.lower().startswith(WHATSAPP_PREFIX) else "sms"


def bare_number(address: str) -> str:
    """The number without Twilio's `whatsapp:` prefix."""
    if address.lower().startswith(WHATSAPP_PREFIX):
        return address[len(WHATSAPP_PREFIX) :]
    return address


def sender_number(address: str) -> str:
    """The sender's number in E.164; UnusableNumber when it is none."""
    try:
        return to_e164(bare_number(address).strip())
    except InvalidPhoneNumber as error:
        raise UnusableNumber(f"the sender {address!r} is not a phone number: {error}") from None


def normalize_message(
    message: TwilioMessage,
    *,
    case_id: str,
    received_at: datetime,
    case_ref_pattern: str | None = None,
) -> CaseOpen:
    """An SMS, MMS or WhatsApp message as a case-open; media fetched by the channel are
    stored (with their link kept), the others stay links to Twilio."""
    text = clean_text(message.body)
    name = clean_line(message.profile_name) if message.profile_name else None
    return CaseOpen(
        id=case_id,
        received_at=received_at,
        channel=message_channel(message.sender),
        adapter="twilio",
        source_id=message.message_sid,
        touchpoints=[_our_number(message.recipient)],
        sender=Sender(kind="phone", address=sender_number(message.sender), name=name or None),
        text=text,
        thread=Thread(case_ref=_case_ref(case_ref_pattern, text)),
        attachments=[_media_attachment(item) for item in message.media],
    )


def normalize_call(call: TwilioCall, *, case_id: str, received_at: datetime) -> CaseOpen:
    """A call as a case-open: the voicemail with its transcript, or a callback request."""
    caller = sender_number(call.caller)
    attachments = []
    if call.recording_url:
        attachments.append(
            Attachment(
                name=f"voicemail-{call.recording_sid or call.call_sid}.wav",
                media_type=RECORDING_MEDIA_TYPE,
                url=call.recording_url,
                duration_s=call.duration_s,
            )
        )
    return CaseOpen(
        id=case_id,
        received_at=received_at,
        channel="voice",
        adapter="twilio",
        source_id=call.call_sid,
        touchpoints=[_our_number(call.called)],
        sender=Sender(kind="phone", address=caller),
        subject=f"Voicemail from {caller}" if attachments else f"Callback requested by {caller}",
        text=clean_text(call.transcript or ""),
        attachments=attachments,
        flags=Flags(callback_requested=not attachments),
    )


def _our_number(address: str) -> Touchpoint:
    """Our number in E.164; a short code or other non-number is kept as Twilio wrote it."""
    bare = bare_number(address).strip()
    try:
        return Touchpoint(kind="number", address=to_e164(bare))
    except InvalidPhoneNumber:
        return Touchpoint(kind="number", address=bare or "unknown")


def _media_attachment(media: TwilioMedia) -> Attachment:
    media_type = media.media_type.strip().lower() or "application/octet-stream"
    item_sid = media.url.rstrip("/").rsplit("/", 1)[-1] or "media"
    extension = mimetypes.guess_extension(media_type.split(";")[0]) or ""
    name = item_sid + extension
    if media.content is None:
        return Attachment(name=name, media_type=media_type, url=media.url)
    blob = Blob.of(media.content)
    return Attachment(
        name=name,
        media_type=media_type,
        size=len(media.content),
        sha256=blob.sha256,
        ref=blob.ref,
        url=media.url,
    )


def media_blobs(message: TwilioMessage) -> list[Blob]:
    """The fetched media bytes, to be stored before the case-open is published."""
    return [Blob.of(item.content) for item in message.media if item.content is not None]


def _case_ref(pattern: str | None, text: str) -> str | None:
    if pattern is None:
        return None
    match = re.search(pattern, text)
    if match is None:
        return None
    found = match.group(1) if match.re.groups and match.group(1) else match.group(0)
    return clean_line(found) or None
