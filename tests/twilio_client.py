"""Posting to the Twilio webhooks as Twilio does: form-encoded, signed with the package's own
RequestValidator over the public URL (not the loopback address the test really calls)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from tests.daemon import DaemonBase

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
PUBLIC_URL = "https://support.example.com/hooks"
ACCOUNT_SID = "AC" + "0" * 32
OUR_NUMBER = "+14155550100"
FORM = "application/x-www-form-urlencoded; charset=utf-8"

Fields = dict[str, str] | Sequence[tuple[str, str]]


def twilio_settings(**overrides: object) -> str:
    """The `[channels.twilio]` section for a test daemon: short waits, two languages."""
    values: dict[str, object] = {
        "enabled": "true",
        "public_url": f'"{PUBLIC_URL}"',
        "transcript_wait_s": "2",
        "recording_wait_s": "1",
        "voice_max_recording_s": "30",
        "voice_language": '"en-GB"',
        "acknowledgement": '{en = "Thanks! Ref {reference}", de = "Danke! Ref {reference}"}',
        "region_languages": '{DE = "de", AT = "de"}',
        "max_body_bytes": "4096",
    } | {key: str(value) for key, value in overrides.items()}
    lines = "\n".join(f"{key} = {value}" for key, value in values.items())
    return f"\n[channels.twilio]\n{lines}\n"


TOKEN_ENV = {"INGEST_CHANNELS__TWILIO__AUTH_TOKEN": AUTH_TOKEN}


def new_sid(prefix: str) -> str:
    """A fresh Twilio SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def signature(path: str, fields: Fields, token: str = AUTH_TOKEN, base: str = PUBLIC_URL) -> str:
    """X-Twilio-Signature exactly as Twilio computes it."""
    params: dict[str, str] = dict(fields)
    return RequestValidator(token).compute_signature(base + path, params)


async def post(
    daemon: DaemonBase,
    path: str,
    fields: Fields,
    *,
    signed: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a form to the daemon, signed for the public URL unless `signed` is False."""
    sent = {"Content-Type": FORM}
    if signed:
        sent["X-Twilio-Signature"] = signature(path, fields)
    async with daemon.client() as client:
        return await client.post(path, content=urlencode(fields), headers=sent | (headers or {}))


def sms(
    sender: str = "+4915112345678",
    body: str = "Hallo, mein Paket fehlt.",
    message_sid: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The fields of an inbound SMS webhook."""
    sid = message_sid or new_sid("SM")
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    } | extra


def call_fields(call_sid: str, caller: str = "+442079460958", **extra: str) -> dict[str, str]:
    """The fields Twilio posts about a call (every voice request carries them)."""
    return {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": caller,
        "To": OUR_NUMBER,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    } | extra


def recording_fields(call_sid: str, recording_sid: str, duration: str = "14") -> dict[str, str]:
    """A recording status callback (it carries no caller number)."""
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": call_sid,
        "RecordingSid": recording_sid,
        "RecordingUrl": recording_url(recording_sid),
        "RecordingStatus": "completed",
        "RecordingDuration": duration,
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }


def transcription_fields(
    call_sid: str, recording_sid: str, text: str, status: str = "completed"
) -> dict[str, str]:
    """A transcription callback."""
    return call_fields(call_sid, CallStatus="completed") | {
        "TranscriptionSid": new_sid("TR"),
        "TranscriptionText": text,
        "TranscriptionStatus": status,
        "RecordingSid": recording_sid,
        "RecordingUrl": recording_url(recording_sid),
    }


def recording_url(recording_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{recording_sid}"
