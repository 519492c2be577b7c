"""uuencoded files: a `Content-Transfer-Encoding: x-uuencode` part, and `begin 644 name`
blocks pasted into plain text by older mailers. Decoded line by line with binascii (the
standard library's `uu` module is deprecated and gone in Python 3.13); a damaged line loses
only itself."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable

ENCODINGS = ("x-uuencode", "uuencode", "x-uue", "uue")
_BEGIN = re.compile(r"^begin +([0-7]{3,4}) +(\S[^\r\n]*?)[ \t]*$", re.MULTILINE)
_BEGIN_BYTES = re.compile(rb"^begin +[0-7]{3,4} +(\S[^\r\n]*?)[ \t]*\r?$", re.MULTILINE)
_END = re.compile(r"^end[ \t]*$", re.MULTILINE)
_MAX_LINE = 62  # one length character and at most 60 encoded for 45 bytes, a pad or two


def decode_part(data: bytes) -> tuple[bytes, str | None]:
    """A uuencoded part's bytes and the file name its `begin` line gives; without a `begin`
    line the part is taken as encoded lines from its start."""
    begin = _BEGIN_BYTES.search(data)
    name = begin[1].decode("utf-8", "replace") if begin else None
    body = data[begin.end() :] if begin else data
    return _decode_lines(body.split(b"\n")), name


def split_text(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Plain text without its uuencoded blocks, and each block as (file name, bytes). A
    `begin` line without its `end` is left in the text: it was not a block."""
    if "begin " not in text:
        return text, []
    files: list[tuple[str, bytes]] = []
    kept: list[str] = []
    position = 0
    for begin in _BEGIN.finditer(text):
        if begin.start() < position:
            continue
        end = _END.search(text, begin.end())
        if end is None:
            break
        lines = text[begin.end() : end.start()].strip("\r\n").split("\n")
        if not all(_looks_encoded(line.rstrip("\r")) for line in lines):
            continue
        kept.append(text[position : begin.start()])
        files.append((begin[2], _decode_lines(line.encode("latin-1") for line in lines)))
        position = end.end()
    if not files:
        return text, []
    kept.append(text[position:])
    return "".join(kept), files


def _looks_encoded(line: str) -> bool:
    return not line or (len(line) <= _MAX_LINE and all(" " <= c <= "`" for c in line))


def _decode_lines(lines: Iterable[bytes]) -> bytes:
    out = bytearray()
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line or line.startswith(b"end"):
            if line.startswith(b"end"):
                break
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders drop trailing spaces; pad to the length the first byte declares.
            count = (line[0] - 32) & 63
            try:
                out += binascii.a2b_uu(line.ljust((count + 2) // 3 * 4 + 1))
            except binascii.Error:
                continue
    return bytes(out)
