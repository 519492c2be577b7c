"""Header values: read raw from the parsed message and decoded here, so that broken headers,
unknown charsets and 8-bit bytes never reach the parser's header objects, which can raise or
turn such bytes into surrogate escapes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from normalizer.mail.charsets import decode
from normalizer.mail.encoded_words import decode_header_text
from normalizer.mail.transfer import to_bytes
from normalizer.model import MAX_HEADERS, Header
from normalizer.text import clean_line

_BRACKETED = re.compile(r"<([^<>]*)>")
_TOKEN = re.compile(r"^[a-z0-9!#$%&'*+.^_`{|}~-]+/[a-z0-9!#$%&'*+.^_`{|}~-]+$")
MAX_ID = 998
MAX_HEADER_VALUE = 2000


def raw_values(message: Message, name: str) -> list[str]:
    """Every raw value of a header, in order, exactly as the parser split them."""
    name = name.lower()
    return [str(value) for key, value in message.raw_items() if key.lower() == name]


def raw_first(message: Message, name: str) -> str | None:
    values = raw_values(message, name)
    return values[0] if values else None


def has(message: Message, name: str) -> bool:
    return bool(raw_values(message, name))


def header_text(message: Message, name: str, hints: Iterable[str] = ()) -> str | None:
    """The first value of a header, decoded and cleaned to one line; None if empty."""
    raw = raw_first(message, name)
    if raw is None:
        return None
    return clean_line(decode_header_text(raw, hints)) or None


def all_headers(message: Message, hints: Iterable[str] = ()) -> list[Header]:
    """The top-level headers in order, decoded and cleaned to one line each, the first
    MAX_HEADERS of them, each value cut to what the model holds."""
    found = []
    for key, value in message.raw_items():
        name = clean_line(str(key))[:200]
        if name and len(found) < MAX_HEADERS:
            text = clean_line(decode_header_text(str(value), hints))[:MAX_HEADER_VALUE]
            found.append(Header(name=name, value=text))
    return found


def token(message: Message, name: str) -> str:
    """A header used as a lower-case keyword ("auto-replied", "bulk"): first word, no params."""
    raw = raw_first(message, name) or ""
    return clean_line(decode_header_text(raw)).split(";", 1)[0].strip().lower()


def content_type(part: Message) -> str:
    """The part's media type; the parser's answer, or ours from the raw header if it fails."""
    try:
        value = part.get_content_type()
    except Exception:  # the modern header parser can fail on broken values
        value = _compat(part).get_content_type()
    value = value.lower()
    return value if _TOKEN.match(value) else "application/octet-stream"


def disposition(part: Message) -> str | None:
    """The disposition, lower-cased: "inline", "attachment" or None."""
    try:
        value = part.get_content_disposition()
    except Exception:  # as above
        value = _compat(part).get_content_disposition()
    return value.lower() if value else None


def param(part: Message, header: str, name: str, hints: Iterable[str] = ()) -> str | None:
    """A parameter of Content-Type or Content-Disposition, decoded: RFC 2231 values in their
    charset, RFC 2047 words inside quotes (not standard, but common), raw 8-bit bytes."""
    try:
        value = _compat(part).get_param(name, None, header)
    except Exception:  # compat32 parsing is plain string work, but stay safe
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _language, text = value
        return clean_line(decode(to_bytes(text), charset or None, hints)) or None
    return clean_line(decode_header_text(value, hints)) or None


def _compat(part: Message) -> Message:
    """A compat32 message holding only the part's raw content headers: string work only.
    8-bit bytes go in as Latin-1 characters (compat32 would turn surrogate escapes into
    U+FFFD) and come back out through to_bytes()."""
    compat = Message()
    for key, value in part.raw_items():
        if key.lower() in ("content-type", "content-disposition"):
            compat[key] = to_bytes(str(value)).decode("latin-1")
    return compat


def message_ids(raw: str | None, *, loose: bool = False) -> list[str]:
    """Message-IDs without angle brackets. Without brackets: tokens holding an "@", or with
    `loose` (a Message-ID header) the whole value."""
    if not raw:
        return []
    text = clean_line(decode_header_text(raw))
    found = _BRACKETED.findall(text)
    if not found:
        found = [text] if loose else [t for t in text.replace(",", " ").split() if "@" in t]
    ids = ("".join(value.split()) for value in found)
    return list(dict.fromkeys(value for value in ids if 0 < len(value) <= MAX_ID))


def sent_at(raw: str | None) -> datetime | None:
    """The Date header as an aware datetime; a date without a zone is taken as UTC."""
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(clean_line(decode_header_text(raw)))
    except Exception:  # the stdlib parser raises several types on junk; junk means no date
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
