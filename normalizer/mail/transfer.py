"""Content-transfer-encodings undone leniently: broken base64 gives what it can, never an error."""

from __future__ import annotations

import base64
import binascii
import quopri
import re

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_PADDING = re.compile(rb"=+")


def to_bytes(text: str) -> bytes:
    """The bytes behind a parsed header or payload string: the parser keeps 8-bit bytes as
    surrogate escapes, and a few code paths hand back Latin-1 or real Unicode text."""
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(_char_bytes(char) for char in text)


def _char_bytes(char: str) -> bytes:
    if "\udc80" <= char <= "\udcff":
        return bytes([ord(char) - 0xDC00])
    if char <= "\xff":
        return bytes([ord(char)])
    return char.encode("utf-8", "replace")


def b64decode_lenient(data: bytes | str) -> bytes:
    """Decode base64, skipping junk characters, honouring padding between concatenated chunks
    and dropping a dangling last character, so that a damaged attachment keeps its good part.

    Well-formed base64 (padding only at the end) is decoded in one pass without copies (an
    ASCII str too, as the parser keeps a body); the careful way below is for the rest."""
    if _padded_at_end(data):
        try:
            return binascii.a2b_base64(data)  # skips line breaks and other junk characters
        except binascii.Error:
            pass  # a dangling character or bad padding: the careful way
    if isinstance(data, str):
        data = to_bytes(data)
    out = bytearray()
    for chunk in _PADDING.split(data):
        chunk = _NOT_BASE64.sub(b"", chunk)
        chunk = chunk[: len(chunk) - len(chunk) % 4] + _tail(chunk)
        try:
            out += base64.b64decode(chunk)
        except (binascii.Error, ValueError):
            continue
    return bytes(out)


def _padded_at_end(data: bytes | str) -> bool:
    """No "=" but at the end (among line breaks): what a one-pass decoder reads right."""
    if isinstance(data, str):
        at = data.find("=")
        return at < 0 or not data[at:].strip("=\r\n\t ")
    at = data.find(b"=")
    return at < 0 or not data[at:].strip(b"=\r\n\t ")


def _tail(chunk: bytes) -> bytes:
    """The incomplete last quantum, padded; one lone character carries no whole byte."""
    rest = chunk[len(chunk) - len(chunk) % 4 :]
    return rest + b"=" * (4 - len(rest)) if len(rest) >= 2 else b""


def qdecode_header(data: bytes) -> bytes:
    """RFC 2047 "Q": underscores are spaces, =XX are bytes, a broken escape stays as it is."""
    return quopri.decodestring(data.replace(b"_", b" "))
