"""The email normaliser: raw RFC 5322 bytes in, a case-open and the attachment blobs out.

Pure: no I/O, no clock, no randomness; the same bytes and arguments give the same result.
It raises nothing but UnprocessableMail for any bytes. The message is parsed with the
standard library's modern policy; should the parser or a header object trip over broken
input, the mail is parsed again with compat32, whose headers are plain strings, and as a
last resort as headers plus one body text. Header text is always decoded here from the raw
values (see headers.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from functools import lru_cache

from normalizer.blobs import Blob
from normalizer.mail.addresses import sender as parse_sender
from normalizer.mail.attachments import attachments
from normalizer.mail.body import compose
from normalizer.mail.headers import (
    MAX_ID,
    all_headers,
    header_text,
    message_ids,
    raw_first,
    raw_values,
)
from normalizer.mail.headers import sent_at as parse_date
from normalizer.mail.mime import declared_charsets, read
from normalizer.mail.noise import flags
from normalizer.model import CaseOpen, Thread, Touchpoint
from normalizer.text import clean_line

__all__ = ["NormalizedMail", "UnprocessableMail", "normalize_mail"]

DEFAULT_CASE_REF = r"\[#(C-\d+)\]"
NO_SENDER = "no sender address (From)"


class UnprocessableMail(ValueError):
    """The bytes cannot become a case-open (e.g. no usable sender address); str() is the reason."""


@dataclass(frozen=True, slots=True)
class NormalizedMail:
    """The case-open and the bytes to store for its attachments (not the raw original)."""

    case: CaseOpen
    blobs: list[Blob]


@dataclass(frozen=True, slots=True)
class _Call:
    case_id: str
    received_at: datetime
    adapter: str
    touchpoints: list[Touchpoint]
    raw_ref: str
    case_ref: re.Pattern[str] | None


def normalize_mail(
    raw: bytes,
    *,
    case_id: str,
    received_at: datetime,
    adapter: str,
    touchpoints: Sequence[str],
    raw_ref: str,
    case_ref_pattern: str | None = DEFAULT_CASE_REF,
) -> NormalizedMail:
    """Turn one received mail into a case-open (see the module docstring for guarantees).

    Arguments are the caller's to get right: empty touchpoints or a naive `received_at` are
    programming errors and raise ValueError, not UnprocessableMail.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    points = _touchpoints(touchpoints)
    call = _Call(case_id, received_at, adapter, points, raw_ref, _compile(case_ref_pattern))
    raw = bytes(raw)
    failure: Exception | None = None
    for parse in _PARSES:
        try:
            return _normalize(parse(raw), raw, call)
        except UnprocessableMail:
            raise
        except Exception as error:  # the parser or a header object failed: next way
            failure = error
    raise UnprocessableMail(f"unparseable mail ({type(failure).__name__})") from failure


def _modern(raw: bytes) -> Message:
    return BytesParser(policy=policy.default).parsebytes(raw)


def _compat(raw: bytes) -> Message:
    """Headers as plain strings: nothing to trip over in header objects."""
    return BytesParser(policy=policy.compat32).parsebytes(raw)


def _headers_only(raw: bytes) -> Message:
    """For structure the parser cannot walk (nesting deeper than its recursion allows):
    the headers, and the whole body kept as one text rather than losing the mail."""
    return BytesHeaderParser(policy=policy.compat32).parsebytes(raw)


_PARSES: tuple[Callable[[bytes], Message], ...] = (_modern, _compat, _headers_only)


def _normalize(message: Message, raw: bytes, call: _Call) -> NormalizedMail:
    hints = declared_charsets(message)
    sender = parse_sender(message, hints)
    if sender is None:
        raise UnprocessableMail(NO_SENDER)
    subject = header_text(message, "subject", hints)
    content = read(message, hints)
    text, full_text = compose(content, subject)
    listed, blobs = attachments(content.files)
    thread = Thread(
        in_reply_to=next(iter(message_ids(raw_first(message, "in-reply-to"))), None),
        references=message_ids(" ".join(raw_values(message, "references"))),
        case_ref=_case_ref(call.case_ref, subject, text, full_text),
    )
    case = CaseOpen(
        id=call.case_id,
        received_at=call.received_at,
        sent_at=parse_date(raw_first(message, "date")),
        channel="email",
        adapter=call.adapter,
        source_id=_source_id(message, raw),
        touchpoints=call.touchpoints,
        sender=sender,
        subject=subject,
        text=text,
        thread=thread,
        attachments=listed,
        flags=flags(message, sender.address, subject),
        raw_ref=call.raw_ref,
        controls=_controls(message, hints),
        headers=all_headers(message, hints),
    )
    return NormalizedMail(case, blobs)


def _controls(message: Message, hints: Iterable[str]) -> dict[str, str]:
    """X-Ingest-Priority, -Queue and -Tags, as given; triage decides whether to obey them."""
    found = {}
    for name in CONTROL_FIELDS:
        value = header_text(message, f"x-ingest-{name}", hints)
        if value:
            found[name] = value.strip()[:MAX_CONTROL]
    return found


CONTROL_FIELDS = ("priority", "queue", "tags")
MAX_CONTROL = 200


def _source_id(message: Message, raw: bytes) -> str:
    """The Message-ID without brackets; without one, the sha256 of the bytes, so that a
    retried delivery of the same bytes is still recognised."""
    ids = message_ids(raw_first(message, "message-id"), loose=True)
    if ids and len(ids[0]) <= MAX_ID:
        return ids[0]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _case_ref(
    pattern: re.Pattern[str] | None, subject: str | None, text: str, full_text: str
) -> str | None:
    """The first case reference in the subject, else the new text, else the quoted history
    (our own earlier reply, quoted back, still names the case)."""
    if pattern is None:
        return None
    for place in (subject or "", text, full_text):
        match = pattern.search(place)
        if match:
            found = match.group(1) if pattern.groups and match.group(1) else match.group(0)
            return clean_line(found) or None
    return None


def _touchpoints(addresses: Sequence[str]) -> list[Touchpoint]:
    unique = dict.fromkeys(a.strip().lower() for a in addresses if a and a.strip())
    if not unique:
        raise ValueError("touchpoints must name at least one address")
    return [Touchpoint(kind="mailbox", address=address) for address in unique]


@lru_cache(maxsize=32)
def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None
