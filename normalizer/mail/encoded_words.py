"""Header text to str: RFC 2047 encoded words in any charset, raw 8-bit bytes, broken words."""

from __future__ import annotations

import re
from collections.abc import Iterable

from normalizer.mail.charsets import decode, decode_undeclared
from normalizer.mail.transfer import b64decode_lenient, qdecode_header, to_bytes

# Lenient on purpose: a payload may hold spaces (broken encoders) and a word cut off by the
# end of the header still counts; the RFC 2231 language suffix ("utf-8*en") is allowed.
_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]*)(?:\?=|$)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BREAK = re.compile(r"[\r\n]+")


def decode_header_text(raw: str, hints: Iterable[str] = ()) -> str:
    """Decode a raw (unfolded or folded) header value as the parser gave it.

    Adjacent encoded words in one charset are joined as bytes before decoding, because
    encoders split multi-byte characters across words; white space between encoded words
    is dropped (RFC 2047, section 6.2). Text outside encoded words is undeclared 8-bit.
    """
    raw = _BREAK.sub(" ", _FOLD.sub("", raw))
    if "=?" not in raw:
        if raw.isascii() and "\x1b" not in raw:  # ESC: raw ISO-2022-JP, not ASCII
            return raw
        return decode_undeclared(to_bytes(raw), hints)
    pieces: list[tuple[str | None, bytes]] = []
    position = 0
    for word in _WORD.finditer(raw):
        gap = raw[position : word.start()]
        if gap and not (gap.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, to_bytes(gap)))
        charset = word[1].split("*", 1)[0].lower()
        payload = to_bytes(word[3])
        data = b64decode_lenient(payload) if word[2] in "bB" else qdecode_header(payload)
        if pieces and pieces[-1][0] == charset:
            pieces[-1] = (charset, pieces[-1][1] + data)
        else:
            pieces.append((charset, data))
        position = word.end()
    if position < len(raw):
        pieces.append((None, to_bytes(raw[position:])))
    hints = tuple(hints)
    return "".join(
        decode(data, charset, hints) if charset else decode_undeclared(data, hints)
        for charset, data in pieces
    )
