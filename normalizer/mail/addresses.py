"""Sender addresses: parsed from the raw header, so encoded display names with commas or
quotes cannot split an address, then normalised (lower-case) and their names decoded."""

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
_FOUND = re.compile(r"[^@\s<>()\[\],;:\"']+@[^@\s<>()\[\],;:\"']+")
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"))


def sender(message: Message, hints: Iterable[str] = ()) -> Sender | None:
    """The first usable From address with its name, Reply-To and Sender as alternates."""
    hints = tuple(hints)
    first = next(_mailboxes(raw_values(message, "from"), hints), None)
    if first is None:
        return None
    address, name = first
    alternates: dict[str, None] = {}
    for header in ("reply-to", "sender"):
        for other, _name in _mailboxes(raw_values(message, header), hints):
            if other != address:
                alternates.setdefault(other)
    return Sender(
        kind="email",
        address=address,
        name=name,
        alternates=[Identity(kind="email", address=other) for other in alternates],
    )


def mailboxes(values: list[str], hints: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """Every usable (address, display name) in raw header values, in order."""
    return list(_mailboxes(values, tuple(hints)))


def _mailboxes(values: list[str], hints: tuple[str, ...]) -> Iterator[tuple[str, str | None]]:
    for value in values:
        found = False
        for raw_name, raw_address in _parse(value):
            address = normalise(raw_address)
            if address:
                found = True
                yield address, _name(raw_name, address, hints)
        if not found:  # not parseable as a list of addresses: anything that looks like one
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


def _name(raw: str, address: str, hints: tuple[str, ...]) -> str | None:
    name = clean_line(decode_header_text(raw, hints))
    for pair in _QUOTES:
        if len(name) >= 2 and name[0] == pair[0] and name[-1] == pair[1]:
            name = clean_line(name[1:-1])
    if not name or name.lower().strip("<>") == address:
        return None
    return name
