"""The raw envelope a channel hands to the pipeline, and the one entry point that normalises it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from normalizer.blobs import Blob
from normalizer.mail import UnprocessableMail, normalize_mail
from normalizer.model import CaseOpen
from normalizer.web import WebMessage, normalize_web


@dataclass(frozen=True, slots=True)
class RawMail:
    """A mail as it came off the wire, with our addresses it was delivered to (in order)."""

    data: bytes
    recipients: tuple[str, ...]


Payload = WebMessage | RawMail


@dataclass(frozen=True, slots=True)
class Envelope:
    """What arrived, as the source gave it, with the source's own id when it has one."""

    channel: str
    adapter: str
    touchpoint: str
    received_at: datetime
    payload: Payload
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """Settings the normalisers need; the pipeline passes them in."""

    case_ref_pattern: str | None = r"\[#(C-\d+)\]"


@dataclass(frozen=True, slots=True)
class Normalized:
    """The case-open and the bytes to store before it is published (original, attachments)."""

    case: CaseOpen
    blobs: list[Blob] = field(default_factory=list)


class Unprocessable(ValueError):
    """The input cannot become a case-open; str() is the reason. The original must be kept."""


def normalize(envelope: Envelope, case_id: str, options: Options = Options()) -> Normalized:
    """Turn an envelope into a case-open. A source without an id gets the case id as its id."""
    payload = envelope.payload
    if isinstance(payload, RawMail):
        return _normalize_mail(envelope, payload, case_id, options)
    case = normalize_web(
        payload,
        case_id=case_id,
        source_id=envelope.source_id or case_id,
        received_at=envelope.received_at,
        touchpoint=envelope.touchpoint,
    )
    return Normalized(case)


def _normalize_mail(
    envelope: Envelope, mail: RawMail, case_id: str, options: Options
) -> Normalized:
    original = Blob.of(mail.data)
    try:
        result = normalize_mail(
            mail.data,
            case_id=case_id,
            received_at=envelope.received_at,
            adapter=envelope.adapter,
            touchpoints=mail.recipients,
            raw_ref=original.ref,
            case_ref_pattern=options.case_ref_pattern,
        )
    except UnprocessableMail as error:
        raise Unprocessable(str(error)) from None
    return Normalized(result.case, [original, *result.blobs])
