"""The email normaliser: raw RFC 5322 bytes in, a case-open and the attachment blobs out.

Pure: no I/O, no clock, no randomness; the same bytes and arguments give the same result.
It raises nothing but UnprocessableMail for any bytes. The message is parsed with the
standard library's compat32 policy, whose headers are plain strings: header text is always
decoded here from the raw values (see headers.py), so the modern policy's header objects,
which the parser builds for every header it looks at (most of the time of a many-part mail),
would buy nothing. Should the parser still trip over broken input, the mail is parsed again
with the modern policy, and as a last resort as headers plus one body text. The bytes are
fed to the parser in slices, so that a large mail is never held again as one string.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from functools import lru_cache

from normalizer.blobs import Blob
from normalizer.errors import Unprocessable
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
FEED_BYTES = 1 << 16


class UnprocessableMail(Unprocessable):
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
    envelope_sender: str | None


def normalize_mail(
    raw: bytes,
    *,
    case_id: str,
    received_at: datetime,
    adapter: str,
    touchpoints: Sequence[str],
    raw_ref: str,
    case_ref_pattern: str | None = DEFAULT_CASE_REF,
    envelope_sender: str | None = None,
) -> NormalizedMail:
    """Turn one received mail into a case-open (see the module docstring for guarantees).

    `envelope_sender` is the SMTP MAIL FROM when the caller received the mail itself: the
    sender of last resort for a mail that names none in its headers.
    Arguments are the caller's to get right: empty touchpoints or a naive `received_at` are
    programming errors and raise ValueError, not UnprocessableMail.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    points = _touchpoints(touchpoints)
    call = _Call(
        case_id, received_at, adapter, points, raw_ref, _compile(case_ref_pattern), envelope_sender
    )
    raw = without_junk(bytes(raw))
    failure: Exception | None = None
    for parse in _PARSES:
        try:
            return _normalize(parse(raw), raw, call)
        except UnprocessableMail:
            raise
        except Exception as error:  # the parser or a header object failed: next way
            failure = error
    raise UnprocessableMail(f"unparseable mail ({type(failure).__name__})") from failure


def _compat(raw: bytes) -> Message:
    """Headers as plain strings: nothing to trip over in header objects."""
    return _fed(BytesFeedParser(policy=policy.compat32), raw)


def _modern(raw: bytes) -> Message:
    return _fed(BytesFeedParser(policy=policy.default), raw)


def _fed(parser: BytesFeedParser, raw: bytes) -> Message:
    """The parse of `raw`, fed in slices (the parser decodes what it is fed to text: a slice
    at a time, rather than a copy of the whole mail, and a UCS-4 one in `parsebytes`)."""
    for start in range(0, len(raw), FEED_BYTES):
        parser.feed(raw[start : start + FEED_BYTES])
    return parser.close()


def _headers_only(raw: bytes) -> Message:
    """For structure the parser cannot walk (nesting deeper than its recursion allows):
    the headers, and the whole body kept as one text rather than losing the mail."""
    return BytesHeaderParser(policy=policy.compat32).parsebytes(raw)


_PARSES: tuple[Callable[[bytes], Message], ...] = (_compat, _modern, _headers_only)


def _normalize(message: Message, raw: bytes, call: _Call) -> NormalizedMail:
    hints = declared_charsets(message)
    found = parse_sender(message, hints, call.envelope_sender)
    if found is None:
        raise UnprocessableMail(NO_SENDER)
    sender, inferred = found
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
        flags=flags(message, sender.address, subject, sender_inferred=inferred),
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
    """The Message-ID without brackets; without one, the sha256 of the mail's canonical form,
    so that a retried delivery is still recognised whether it came over SMTP (CRLF line
    ends), from a file or over IMAP (often LF), with or without a last line break."""
    ids = message_ids(raw_first(message, "message-id"), loose=True)
    if ids and len(ids[0]) <= MAX_ID:
        return ids[0]
    digest = hashlib.sha256()
    for line in _LINE_END.split(raw.rstrip(b"\r\n")):
        digest.update(line)
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


_LINE_END = re.compile(rb"\r\n|\r|\n")


def without_junk(raw: bytes) -> bytes:
    """The mail without lines before its header block that are no header: an mbox "From "
    line, a "---- Original message ----" line a client put above a pasted mail, a blank
    line. Only when a header line follows; at most a few lines are looked at."""
    start = 0
    for _ in range(_MAX_JUNK):
        end = raw.find(b"\n", start)
        if end < 0:
            return raw
        line = raw[start:end]
        if _HEADER_LINE.match(line) or line[:1] in (b" ", b"\t"):
            break
        start = end + 1
    if start and _HEADER_LINE.match(raw, start):
        return raw[start:]
    return raw


_MAX_JUNK = 3
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")


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
