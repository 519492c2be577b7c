"""Bytes to text for mail: declared charsets read as their real-world supersets, with fallbacks."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from functools import lru_cache

from normalizer.mail.guess import guess, plausibility
from normalizer.mail.jis import decode_iso2022jp_as_cp932

# Labels a sender declares, read as the superset mailers actually write (the WHATWG choice):
# GB2312 mail is GBK or GB18030, Shift_JIS is Windows-31J, EUC-KR is UHC, Latin-1 is 1252.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "cp932": ("cp932", "shift_jis_2004"),
    "euc_jp": ("euc_jp", "euc_jis_2004"),
    "iso2022_jp": ("iso2022_jp", "x-cp50220", "iso2022_jp_2004"),
    "iso2022_jp_1": ("iso2022_jp_1", "x-cp50220"),
    "euc_kr": ("cp949",),
    "big5": ("cp950", "big5hkscs"),
    "cp950": ("cp950", "big5hkscs"),
    "ascii": ("x-western",),
    "iso8859-1": ("x-western",),
    "cp1252": ("x-western",),
    "iso8859-9": ("cp1254",),
    "tis-620": ("cp874",),
    "iso8859-11": ("cp874",),
}
# Labels seen in mail that Python does not know.
_LABELS = {
    "x-sjis": "shift_jis",
    "windows-31j": "cp932",
    "x-gbk": "gbk",
    "x-euc-jp": "euc_jp",
    "x-euc-cn": "gb2312",
    "ks_c_5601": "euc_kr",
    "x-windows-949": "cp949",
    "utf8mb4": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "iso-8859-8-i": "iso8859-8",
    "x-mac-roman": "mac_roman",
}
# Text codecs that are not charsets: never apply them because a header names them.
_REFUSED = {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs", "oem"}
# Codecs whose bytes are multi-byte or 7-bit stateful: a declaration of these is trusted first.
_MULTIBYTE = (
    "utf",
    "iso2022",
    "x-cp50220",
    "hz",
    "gb18030",
    "cp9",
    "big5",
    "euc",
    "shift_jis",
    "johab",
)
_STATEFUL = ("utf-7", "utf-16", "utf-32", "iso2022", "x-cp50220", "hz")
# At most this many 8-bit bytes is "a handful": too few for a statistical guess.
_FEW_BYTES = 16
_SEVEN_BIT = bytes(range(0x80))
_PLAUSIBLE = 0.95
_LABEL_JUNK = re.compile(r"[^a-z0-9._:+-].*$", re.DOTALL)
_SURROGATES = re.compile("[\ud800-\udfff]")
# Windows-1252 where it defines a character, Latin-1 (a C1 control) where it does not.
_CP1252 = {b: bytes([b]).decode("cp1252", "replace") for b in range(0x80, 0xA0)}
_WESTERN = str.maketrans({b: (c if c != "\ufffd" else chr(b)) for b, c in _CP1252.items()})


def decode(data: bytes, declared: str | None = None, hints: Iterable[str] = ()) -> str:
    """Decode body or header bytes: the declared charset if it fits, else a best guess.

    Valid UTF-8 with 8-bit bytes wins over a declared single-byte charset: those never fail
    to decode, so a UTF-8 body mislabelled ISO-8859-1 would otherwise turn to mojibake, and
    genuine single-byte text is practically never valid UTF-8. A declared single-byte
    charset that turns the bytes to mojibake yields to another one the mail declares that
    reads them as text; 7-bit bytes with ISO-2022-JP escapes are read as such whatever the
    label.
    """
    candidates = codecs_for(declared)
    if data.isascii() and not (candidates and candidates[0].startswith(_STATEFUL)):
        return _ascii(data)
    if candidates and not candidates[0].startswith(_MULTIBYTE):
        text = _strict(data, "utf-8")
        if text is None:
            text = _declared_or_hinted(data, candidates[0], hints)
        if text is not None:
            return text
    for codec in candidates:
        text = _strict(data, codec)
        if text is not None:
            return text
    if candidates:
        text = _nearly(data, candidates[0])
        if text is not None:
            return text
    return decode_undeclared(data, hints)


def decode_undeclared(data: bytes, hints: Iterable[str] = ()) -> str:
    """Undeclared bytes: 7-bit ones as ISO-2022-JP when they carry its escape sequences, else
    ASCII; 8-bit ones as UTF-8, else a charset the message gives evidence of elsewhere, else
    (a handful of bytes that reads as text so) Windows-1252, else a charset-normalizer guess,
    else Windows-1252/Latin-1 (which always succeeds)."""
    if data.isascii():
        return _ascii(data)
    for codec in ("utf-8", *(c for hint in hints for c in codecs_for(hint))):
        text = _strict(data, codec)
        if text is not None:
            return text
    if len(data.translate(None, _SEVEN_BIT)) <= _FEW_BYTES:  # a handful: Western if it reads so
        text = western(data)
        if plausibility(text, "cp1252") >= _PLAUSIBLE:
            return text
    guessed = guess(data)
    return _scrub(guessed) if guessed is not None else western(data)


def _ascii(data: bytes) -> str:
    """7-bit bytes: ISO-2022-JP when they carry its escape sequences (an undeclared
    Japanese body or header), else ASCII."""
    if b"\x1b$" in data or b"\x1b(" in data:
        for codec in codecs_for("iso-2022-jp"):
            text = _strict(data, codec)
            if text is not None:
                return text
    return data.decode("ascii")


def _declared_or_hinted(data: bytes, codec: str, hints: Iterable[str]) -> str | None:
    """A declared single-byte charset, unless another single-byte charset the mail declares
    elsewhere reads the bytes as real text where the declared one gives mojibake (German
    under a KOI8-R label while the subject says ISO-8859-1)."""
    text = _strict(data, codec)
    if text is None:
        return None
    others = [c for hint in hints for c in codecs_for(hint)[:1] if c != codec]
    others = [c for c in others if not c.startswith(_MULTIBYTE)]
    if not others or plausibility(text, codec) >= _PLAUSIBLE:
        return text
    for other in others:
        better = _strict(data, other)
        if better is not None and plausibility(better, other) >= _PLAUSIBLE:
            return better
    return text


def western(data: bytes) -> str:
    """Windows-1252, with Latin-1 for the five bytes it leaves undefined: never fails."""
    return data.decode("latin-1").translate(_WESTERN)


@lru_cache(maxsize=256)
def codecs_for(label: str | None) -> tuple[str, ...]:
    """The Python codecs to try, in order, for a declared charset label; () if unknown."""
    if not label:
        return ()
    label = _LABEL_JUNK.sub("", label.strip().strip("\"'").lower())
    label = _LABELS.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return ()
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return ()
    return _SUPERSETS.get(info.name, (info.name,))


def _strict(data: bytes, codec: str) -> str | None:
    try:
        if codec == "x-western":
            return western(data)
        if codec == "x-cp50220":
            return decode_iso2022jp_as_cp932(data)
        return _scrub(data.decode(codec))
    except (UnicodeError, LookupError, ValueError):
        return None


def _nearly(data: bytes, codec: str) -> str | None:
    """The declared charset despite a few bad bytes: a cut-off last character (a truncated
    body) or under one bad character in 200 (a stray byte pasted into otherwise fine text)."""
    try:
        data.decode(codec)
    except UnicodeDecodeError as error:
        if error.start >= len(data) - 4 and error.reason in _TRUNCATED:
            text = _strict(data[: error.start], codec)
            if text is not None:
                return text
    except (LookupError, ValueError):
        return None
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError):
        return None
    return _scrub(text) if text.count("\ufffd") <= len(text) // 200 else None


_TRUNCATED = {"unexpected end of data", "incomplete multibyte sequence", "truncated data"}


def _scrub(text: str) -> str:
    """No lone surrogates (UTF-7 and UTF-16 decoders can produce them): U+FFFD instead."""
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text
