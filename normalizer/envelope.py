"""The raw envelope a channel hands to the pipeline, and the one entry point that normalises it.

Every kind of payload is listed once in `PAYLOAD_KINDS`: how to normalise it, and how to turn
it into bytes and back, so that quarantine can keep it and `ingest quarantine replay` can feed
it through again. A new channel adds its payload type and one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from normalizer.blobs import Blob
from normalizer.contact import ContactSubmission, normalize_contact
from normalizer.language import detect_language
from normalizer.model import CaseOpen
from normalizer.telegram import TelegramPayload, normalize_telegram
from normalizer.twilio import (
    TwilioCall,
    TwilioMessage,
    media_blobs,
    normalize_call,
    normalize_message,
)
from normalizer.web import WebMessage, normalize_web


@dataclass(frozen=True, slots=True)
class RawMail:
    """A mail as it came off the wire, with our addresses it was delivered to (in order)."""

    data: bytes
    recipients: tuple[str, ...]
    file: Path | None = None
    """A large mail was written to this file as it arrived and `data` is empty: whoever
    normalises it reads it from there first (the normaliser itself does no I/O)."""
    mail_from: str | None = None
    """The SMTP envelope sender (MAIL FROM) when our own listener received the mail: the
    sender of last resort for a mail whose headers name none."""


Payload = WebMessage | RawMail | TwilioMessage | TwilioCall | TelegramPayload | ContactSubmission


@dataclass(frozen=True, slots=True)
class Envelope:
    """What arrived, as the source gave it, with the source's own id when it has one."""

    channel: str
    adapter: str
    touchpoint: str
    received_at: datetime
    payload: Payload
    source_id: str | None = None
    case_id: str | None = None
    """Set when the channel had to name the case-open before emitting it (a reply that
    quotes the reference was sent first); otherwise the pipeline assigns one."""


@dataclass(frozen=True, slots=True)
class Options:
    """Settings the normalisers need; the pipeline passes them in."""

    case_ref_pattern: str | None = r"\[#(C-\d+)\]"
    languages: tuple[str, ...] = ()
    """Candidates for language detection when the source did not say; empty: no detection."""
    model_cache: Path | None = None
    """Where a short-lived process keeps the detection model unpacked (see language.py)."""


@dataclass(frozen=True, slots=True)
class Normalized:
    """The case-open and the bytes to store before it is published (original, attachments)."""

    case: CaseOpen
    blobs: list[Blob] = field(default_factory=list)


Normalizer = Callable[[Envelope, Any, str, Options], Normalized]


@dataclass(frozen=True, slots=True)
class PayloadKind:
    """How one payload type is normalised, kept as bytes, and read back for a replay."""

    name: str
    type: type
    normalize: Normalizer
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes, tuple[str, ...]], Any]
    """Read the kept bytes back, given the touchpoints the message reached."""
    slow: bool = False
    """Parsing may take milliseconds: the pipeline runs it off the event loop."""


def normalize(envelope: Envelope, case_id: str, options: Options = Options()) -> Normalized:
    """Turn an envelope into a case-open. A source without an id gets the case id as its id."""
    normalized = kind_of(envelope.payload).normalize(envelope, envelope.payload, case_id, options)
    case = with_language(normalized.case, options)
    return normalized if case is normalized.case else replace(normalized, case=case)


def with_language(case: CaseOpen, options: Options) -> CaseOpen:
    """The case with its language detected among `options.languages` when the source did
    not say one (the same case when it did, or when nothing could be told)."""
    if case.language is not None or not options.languages:
        return case
    text = f"{case.subject or ''}\n{case.text}"
    language = detect_language(text, options.languages, options.model_cache)
    return case if language is None else case.model_copy(update={"language": language})


def kind_of(payload: object) -> PayloadKind:
    """The entry of this payload's type; TypeError for a type no one registered."""
    for kind in PAYLOAD_KINDS.values():
        if isinstance(payload, kind.type):
            return kind
    raise TypeError(f"no payload kind for {type(payload).__name__}")


def _normalize_mail(
    envelope: Envelope, mail: RawMail, case_id: str, options: Options
) -> Normalized:
    # Imported with the first mail rather than with this module: the quick tools that never
    # see one start without it, and the parsing workers load it while warming up (workers.py).
    from normalizer.mail import normalize_mail

    original = Blob.of(mail.data)
    result = normalize_mail(
        mail.data,
        case_id=case_id,
        received_at=envelope.received_at,
        adapter=envelope.adapter,
        touchpoints=mail.recipients,
        raw_ref=original.ref,
        case_ref_pattern=options.case_ref_pattern,
        envelope_sender=mail.mail_from,
    )
    return Normalized(result.case, [original, *result.blobs])


def _normalize_web(
    envelope: Envelope, message: WebMessage, case_id: str, options: Options
) -> Normalized:
    case = normalize_web(
        message,
        case_id=case_id,
        source_id=envelope.source_id or case_id,
        received_at=envelope.received_at,
        touchpoint=envelope.touchpoint,
    )
    return Normalized(case)


def _normalize_twilio_message(
    envelope: Envelope, message: TwilioMessage, case_id: str, options: Options
) -> Normalized:
    case = normalize_message(
        message,
        case_id=case_id,
        received_at=envelope.received_at,
        case_ref_pattern=options.case_ref_pattern,
    )
    return Normalized(case, media_blobs(message))


def _normalize_twilio_call(
    envelope: Envelope, call: TwilioCall, case_id: str, options: Options
) -> Normalized:
    case = normalize_call(call, case_id=case_id, received_at=envelope.received_at)
    return Normalized(case)


def _normalize_telegram(
    envelope: Envelope, payload: TelegramPayload, case_id: str, options: Options
) -> Normalized:
    result = normalize_telegram(
        payload,
        case_id=case_id,
        received_at=envelope.received_at,
        touchpoint=envelope.touchpoint,
    )
    return Normalized(result.case, result.blobs)


def _normalize_contact(
    envelope: Envelope, submission: ContactSubmission, case_id: str, options: Options
) -> Normalized:
    case, blobs = normalize_contact(
        submission,
        case_id=case_id,
        source_id=envelope.source_id or case_id,
        received_at=envelope.received_at,
        touchpoint=envelope.touchpoint,
    )
    return Normalized(case, blobs)


def _json_kind(name: str, model: type[BaseModel], normalize: Normalizer) -> PayloadKind:
    """A payload that is a pydantic model, kept as its JSON."""
    return PayloadKind(
        name,
        model,
        normalize,
        encode=lambda payload: payload.model_dump_json().encode(),
        decode=lambda data, _touchpoints: model.model_validate_json(data),
    )


PAYLOAD_KINDS: dict[str, PayloadKind] = {
    kind.name: kind
    for kind in [
        PayloadKind(
            "mail",
            RawMail,
            _normalize_mail,
            encode=lambda mail: mail.data,
            decode=lambda data, touchpoints: RawMail(data, touchpoints),
            slow=True,
        ),
        _json_kind("web", WebMessage, _normalize_web),
        _json_kind("twilio-message", TwilioMessage, _normalize_twilio_message),
        _json_kind("twilio-call", TwilioCall, _normalize_twilio_call),
        _json_kind("telegram", TelegramPayload, _normalize_telegram),
        _json_kind("contact", ContactSubmission, _normalize_contact),
    ]
}
