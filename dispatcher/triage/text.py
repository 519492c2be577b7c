"""Keyword matching that works across scripts: NFKC, case-folded, whole words where words
are separated by spaces, plain substrings in scripts written without them (Chinese, Japanese,
Thai, ...), so that "退款" matches inside a sentence and "refund" does not match "refunded".

Word forms: a keyword ending in `*` matches every word it begins ("pris*": "prisen",
"prisliste"); with a stemmer (`stem = "da"`), keywords and the message are both reduced to
Snowball stems (PyStemmer), so "pris" finds "prisen" and "priser" but not "prisliste".
Japanese and Chinese have no spaces, so a keyword there already matches inside longer words:
write a verb without its ending (接続でき finds 接続できない and 接続できません).
"""

from __future__ import annotations

import fnmatch
import re
import threading
import unicodedata
from collections.abc import Iterable

import Stemmer

from dispatcher.triage.spec import STEM_LANGUAGES

# Scripts written without spaces between words: a keyword in them matches anywhere.
UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
WORD_SPLIT = re.compile(r"(\w+)")
PREFIX = "*"
CONDITION_CHARS = 20_000
"""How much of a subject or text the text conditions (keywords, stems, regexes) read: some
eight pages. A mail near the size limit can carry megabytes of text, and stemming it all
took a second per language while the rest of its batch waited."""


def globs(patterns: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    """Shell-style patterns compiled once, each with its text (to say which one matched)."""
    return [(pattern, re.compile(fnmatch.translate(pattern))) for pattern in patterns]


def fold(text: str) -> str:
    """The form both keywords and messages are compared in."""
    return unicodedata.normalize("NFKC", text).casefold()


_per_thread = threading.local()


def stemmer(language: str) -> Stemmer.Stemmer:
    """The Snowball stemmer for an ISO 639-1 code listed in STEM_LANGUAGES, one per thread:
    a PyStemmer object is not safe to share (reloads compile and run golden tests in a worker
    thread while the dispatcher evaluates)."""
    found: dict[str, Stemmer.Stemmer] = _per_thread.__dict__.setdefault("stemmers", {})
    if language not in found:
        found[language] = Stemmer.Stemmer(STEM_LANGUAGES[language])
    return found[language]


def stem_text(folded: str, language: str) -> str:
    """The folded text with every word replaced by its stem, separators kept."""
    parts = WORD_SPLIT.split(folded)
    parts[1::2] = stemmer(language).stemWords(parts[1::2])
    return "".join(parts)


class Keywords:
    """A compiled set of keywords and phrases; `find` returns the one that matched."""

    def __init__(self, words: Iterable[str], stem: str | None = None) -> None:
        self.words = [fold(word).strip() for word in words]
        self.stem = stem
        alternatives = sorted(self.words, key=len, reverse=True)  # longest first
        self._pattern = re.compile("|".join(_pattern(word, stem) for word in alternatives))
        self._stems = {" ".join(_words(word, stem)): word for word in self.words} if stem else {}
        # Each keyword's longest part, which any match of it contains: most texts contain
        # none, and a substring test is several times cheaper than the pattern's search.
        self._needles = tuple({max(_words(word, stem), key=len) for word in self.words})

    def find(self, folded_text: str) -> str | None:
        """The text found in the folded text; with a stemmer, the keyword whose stem it is."""
        if not any(needle in folded_text for needle in self._needles):
            return None
        match = self._pattern.search(folded_text)
        if match is None:
            return None
        found = match.group(0)
        return self._stems.get(" ".join(found.split()), found) if self._stems else found


def _words(word: str, stem: str | None) -> list[str]:
    words = word.removesuffix(PREFIX).split()
    if stem is not None and not word.endswith(PREFIX):
        words = stemmer(stem).stemWords(words)
    return words


def _pattern(word: str, stem: str | None) -> str:
    prefix = word.endswith(PREFIX)
    parts = [re.escape(part) for part in _words(word, stem)]
    word = word.removesuffix(PREFIX).rstrip()
    body = r"\s+".join(parts)  # a phrase matches across line breaks and runs of spaces
    if UNSPACED.search(word[0]) and UNSPACED.search(word[-1]):
        return body
    start = "" if UNSPACED.search(word[0]) else r"(?<!\w)"
    end = "" if prefix or UNSPACED.search(word[-1]) else r"(?!\w)"
    return f"{start}{body}{end}"
