"""Sender addresses: parsed from the raw header, so encoded display names with commas or
quotes cannot split an address, then normalised (lower-case) and their names decoded.

A mail without a usable From still has a sender when anything else names one: Sender,
Reply-To, or the envelope sender a delivering server recorded as Return-Path; such a sender
is marked inferred. Malformed addresses are repaired rather than refused: a quoted display
name glued to the domain (`"Ann Lee"@example.com>`) and spaces inside the local part give
the quoted local part RFC 5321 allows (`"ann lee"@example.com`), the words as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from email.message import Message
from email.utils import getaddresses

from normalizer.mail.charsets import decode_undeclared
from normalizer.mail.encoded_words import decode_header_text
from normalizer.mail.headers import raw_values
from normalizer.mail.transfer import to_bytes
from normalizer.model import Identity, Sender
from normalizer.text import clean_line

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")
_DOMAIN = re.compile(r"^[^@\s<>()\[\],;:\"]+$")
# A local part with spaces or in quotes: `"ann lee"`, `ann lee`, `ann . lee` (obsolete form).
_SPACED_LOCAL = re.compile(r'^"?([^"@<>()\[\],;:\\]{1,64}?)"?$')
_DOT_SPACES = re.compile(r"\s*\.\s*")
_GLUED = re.compile(r'"([^"]{1,64})"\s*@\s*([^@\s<>()\[\],;:"]+)')
# The envelope sender as a delivering server records it, and the headers tried without From.
_ENVELOPE = "return-path"
_STAND_INS = ("sender", "reply-to")
_FOUND = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+")
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"))


def sender(
    message: Message, hints: Iterable[str] = (), envelope: str | None = None
) -> tuple[Sender, bool] | None:
    """The first usable From address with its name, Reply-To and Sender as alternates; without
    one, the first of Sender, Reply-To, Return-Path and the SMTP envelope sender (MAIL FROM,
    when the caller received the mail itself), with the From's display name if it had one.
    With whether the sender was inferred so; None if nothing names an address."""
    hints = tuple(hints)
    found = next(_mailboxes(raw_values(message, "from"), hints), None)
    inferred = found is None
    if found is None:
        found = _stand_in(message, hints, envelope)
        if found is None:
            return None
        if found[1] is None:
            found = (found[0], _name_only(raw_values(message, "from"), hints))
    address, name = found
    alternates: dict[str, None] = {}
    for header in ("reply-to", "sender"):
        for other, _name in _mailboxes(raw_values(message, header), hints):
            if other != address:
                alternates.setdefault(other)
    found_sender = Sender(
        kind="email",
        address=address,
        name=name,
        alternates=[Identity(kind="email", address=other) for other in alternates],
    )
    return found_sender, inferred


def _stand_in(
    message: Message, hints: tuple[str, ...], envelope: str | None
) -> tuple[str, str | None] | None:
    for header in _STAND_INS:
        found = next(_mailboxes(raw_values(message, header), hints), None)
        if found is not None:
            return found
    # The Return-Path a delivering server recorded (the last one is the final delivery's).
    for value in ((raw_values(message, _ENVELOPE) or [""])[-1], envelope or ""):
        address = normalise(value) if value.strip() not in ("", "<>") else None
        if address:
            return address, None
    return None


def _name_only(values: list[str], hints: tuple[str, ...]) -> str | None:
    """A From that holds a display name but no address ("Karin Berg"): the name."""
    if len(values) != 1 or any(c in values[0] for c in "@:;"):  # not an address, not a group
        return None
    return _name(values[0], "", hints)


def mailboxes(values: list[str], hints: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """Every usable (address, display name) in raw header values, in order."""
    return list(_mailboxes(values, tuple(hints)))


def _mailboxes(values: list[str], hints: tuple[str, ...]) -> Iterator[tuple[str, str | None]]:
    for value in values:
        found = False
        for raw_name, raw_address in _parse(value):
            address = normalise(raw_address)
            if address is None and ("<" in value or raw_address.startswith('"')):
                address = _repaired(raw_address)
            if address:
                found = True
                yield address, _name(raw_name or _quoted_name(raw_address), address, hints)
        if not found:  # not parseable as a list of addresses: anything that looks like one
            glued = _GLUED.search(value)
            if glued and (address := _repaired(f'"{glued[1]}"@{glued[2]}')):
                yield address, _name(glued[1], address, hints)
            for match in _FOUND.finditer(value):
                address = normalise(match[0])
                if address:
                    yield address, None


def _parse(value: str) -> list[tuple[str, str]]:
    try:
        return getaddresses([value.replace("\r", " ").replace("\n", " ")])
    except Exception:  # a stdlib parser on hostile input: fall back to the pattern
        return []


def normalise(raw: str) -> str | None:
    """local@domain lower-cased, or None if it is not an address."""
    text = decode_undeclared(to_bytes(raw)).strip().strip("<>").strip()
    text = clean_line(text).lower().rstrip(".")
    if not _ADDRESS.match(text) or len(text) > 320:
        return None
    local, domain = text.rsplit("@", 1)
    if not local or not domain or domain.startswith(".") or ".." in domain:
        return None
    return text


def _repaired(raw: str) -> str | None:
    """An address in angle brackets or with a quoted local part, written with spaces or
    quotes, as the quoted local part it stands for (a quoted one without spaces: plain)."""
    text = clean_line(decode_undeclared(to_bytes(raw))).lower().strip().rstrip(".")
    if len(text) > 320:
        return None
    local, at, domain = text.rpartition("@")
    domain = domain.strip().rstrip(">").strip()
    if not at or not _DOMAIN.match(domain) or domain.startswith(".") or ".." in domain:
        return None
    match = _SPACED_LOCAL.match(local.strip().lstrip("<").strip())
    if match is None:
        return None
    words = " ".join(_DOT_SPACES.sub(".", match[1]).split())
    if not words:
        return None
    return f"{words}@{domain}" if _ADDRESS.match(f"{words}@{domain}") else f'"{words}"@{domain}'


def _quoted_name(raw_address: str) -> str:
    """The display name a quoted local part stands for (`"Ann Lee"@example.com`)."""
    local = raw_address.rpartition("@")[0].strip()
    return local if len(local) >= 2 and local[0] == local[-1] == '"' else ""


def _name(raw: str, address: str, hints: tuple[str, ...]) -> str | None:
    name = clean_line(decode_header_text(raw, hints))
    for pair in _QUOTES:
        if len(name) >= 2 and name[0] == pair[0] and name[-1] == pair[1]:
            name = clean_line(name[1:-1])
    if not name or name.lower().strip("<>") == address:
        return None
    return name
