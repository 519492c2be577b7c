"""Keyword matching that works across scripts: NFKC, case-folded, whole words where words
are separated by spaces, plain substrings in scripts written without them (Chinese, Japanese,
Thai, ...), so that "退款" matches inside a sentence and "refund" does not match "refunded"."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Scripts written without spaces between words: a keyword in them matches anywhere.
UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)


def fold(text: str) -> str:
    """The form both keywords and messages are compared in."""
    return unicodedata.normalize("NFKC", text).casefold()


class Keywords:
    """A compiled set of keywords and phrases; `find` returns the one that matched."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = [fold(word).strip() for word in words]
        alternatives = sorted(self.words, key=len, reverse=True)  # longest first
        self._pattern = re.compile("|".join(_pattern(word) for word in alternatives))

    def find(self, folded_text: str) -> str | None:
        match = self._pattern.search(folded_text)
        return match.group(0) if match else None


def _pattern(word: str) -> str:
    parts = [re.escape(part) for part in word.split()]
    body = r"\s+".join(parts)  # a phrase matches across line breaks and runs of spaces
    if UNSPACED.search(word[0]) and UNSPACED.search(word[-1]):
        return body
    start = "" if UNSPACED.search(word[0]) else r"(?<!\w)"
    end = "" if UNSPACED.search(word[-1]) else r"(?!\w)"
    return f"{start}{body}{end}"
