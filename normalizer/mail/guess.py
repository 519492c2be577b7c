"""A best guess at the charset of undeclared 8-bit text: charset-normalizer's candidates,
re-ranked by how much the decoded text looks like one writing system.

charset-normalizer alone misreads short texts (a Latin-1 name comes back as cp1006, a
Shift_JIS line as cp949), so it is limited to charsets mail really uses and its candidates
are re-ranked: mojibake mixes scripts (Hangul with kana) or lands in odd blocks (half-width
katakana, box drawing, Hebrew points).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from functools import lru_cache

# Charsets mail really uses, most likely first (ties go to the earlier one).
CANDIDATES = (
    "cp1252", "utf_8", "cp1250", "cp1251", "koi8_r", "cp1253", "cp1254", "cp1255", "cp1256",
    "cp1257", "cp932", "euc_jp", "iso2022_jp", "gb18030", "big5", "cp949",
)  # fmt: skip
_SAMPLE = 20_000
# (first, last, script) for the code points real text in each writing system uses.
_BLOCKS = (
    (0x00A0, 0x00BF, "punct"), (0x00C0, 0x024F, "latin"), (0x0370, 0x03FF, "greek"),
    (0x0400, 0x04FF, "cyrillic"), (0x05D0, 0x05EA, "hebrew"), (0x0600, 0x06FF, "arabic"),
    (0x0E01, 0x0E5B, "thai"), (0x2010, 0x206F, "punct"), (0x20AC, 0x20AC, "punct"),
    (0x2122, 0x2122, "punct"), (0x3000, 0x303F, "punct"), (0x3040, 0x30FF, "kana"),
    (0x3400, 0x4DBF, "han"), (0x4E00, 0x9FFF, "han"), (0xAC00, 0xD7A3, "hangul"),
    (0xFF01, 0xFF5E, "punct"),
)  # fmt: skip
# Latin-1 symbols that sit between letters only in mojibake ("dotar³o"); and runs of three
# non-ASCII Latin characters, which Latin-script words hardly have ("Ã¤Ã¶", "Ïðèâåò").
_SYMBOLS = frozenset(map(chr, range(0xA1, 0xC0))) - frozenset("\u00a7\u00ab\u00b0\u00b7\u00bb")
_LATIN_RUN = re.compile("[\u00a1-\u00b6\u00b8-\u00bf\u00c0-\u024f]{3,}")
_SYSTEMS = (
    {"latin"}, {"greek"}, {"cyrillic"}, {"hebrew"}, {"arabic"}, {"thai"},
    {"kana", "han"}, {"hangul", "han"},
)  # fmt: skip


def guess(data: bytes) -> str | None:
    """The most plausible decoding of `data`, or None if no candidate decodes it."""
    found = guess_codec(data)
    return found[1] if found is not None else None


def guess_codec(data: bytes) -> tuple[str, str] | None:
    """The most plausible charset of `data` and the text it gives, or None."""
    from charset_normalizer import from_bytes  # imported when a guess is needed

    try:
        matches = list(from_bytes(data, cp_isolation=list(CANDIDATES)))
    except Exception:  # a library bug must not lose the message; the caller falls back
        return None
    decoded = {match.encoding: (str(match), match.chaos) for match in matches}
    with suppress(UnicodeDecodeError):
        decoded.setdefault("cp1252", (data.decode("cp1252"), 0.0))
    if not decoded:
        return None
    order = {name: index for index, name in enumerate(CANDIDATES)}
    best = min(
        decoded,
        key=lambda name: (
            -round(plausibility(decoded[name][0], name), 2),
            round(decoded[name][1], 2),
            order.get(name, len(order)),
        ),
    )
    return best, decoded[best][0]


def plausibility(text: str, codec: str = "") -> float:
    """Share of non-ASCII characters that look like real text, times the main system's share.

    Ideographs count only from the everyday level of the charset that produced them: mojibake
    lands on rare ones as readily as on common ones, real text almost never does.
    """
    common_han = _COMMON_HAN.get(codec, _any_common_han)
    sample = text[:_SAMPLE]
    scripts: Counter[str] = Counter()
    previous = " "
    for index, char in enumerate(sample):
        if char >= "\x80":
            following = sample[index + 1 : index + 2]
            scripts[_classify(char, previous, following, common_han)] += 1
        previous = char
    total = sum(scripts.values())
    if not total:
        return 1.0
    bad = scripts["other"] + sum(len(run) for run in _LATIN_RUN.findall(sample))
    known = max(total - bad, 0) / total
    letters = total - scripts["punct"] - scripts["other"]
    if letters <= 0:
        return known
    main = max(sum(scripts[s] for s in system) for system in _SYSTEMS)
    return known * main / letters


def _classify(char: str, previous: str, following: str, common_han: Callable[[str], bool]) -> str:
    """The script of a character, or "other" where it betrays a wrong charset."""
    script = _script(ord(char))
    if script == "han" and not common_han(char):
        return "other"
    if script == "hangul" and not _in_rows(char, "cp949", 0xB0, 0xC8):
        return "other"
    if script == "punct" and char in _SYMBOLS and previous.isalpha() and following.isalpha():
        return "other"
    if char.isupper() and previous.islower():
        return "other"
    return script


def _script(point: int) -> str:
    for first, last, script in _BLOCKS:
        if first <= point <= last:
            return script
    return "other"


@lru_cache(maxsize=65536)
def _in_rows(char: str, codec: str, first: int, last: int) -> bool:
    """Whether `char` encodes in `codec` with a lead byte in first..last (a frequency level)."""
    try:
        encoded = char.encode(codec)
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and first <= encoded[0] <= last


def _gb2312_level1(char: str) -> bool:
    return _in_rows(char, "gb2312", 0xB0, 0xD7)


def _jis_level1(char: str) -> bool:
    return _in_rows(char, "euc_jp", 0xB0, 0xCF)


def _big5_level1(char: str) -> bool:
    return _in_rows(char, "big5", 0xA4, 0xC6)


def _any_common_han(char: str) -> bool:
    return _gb2312_level1(char) or _jis_level1(char) or _big5_level1(char)


_COMMON_HAN: dict[str, Callable[[str], bool]] = {
    "gb18030": _gb2312_level1,
    "big5": _big5_level1,
    "cp932": _jis_level1,
    "euc_jp": _jis_level1,
    "iso2022_jp": _jis_level1,
}
