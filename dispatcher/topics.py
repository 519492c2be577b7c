"""A case's topic: the few words its subject is about, in a form that other customers'
cases about the same problem share, so that the report can group them in SQL.

"Refund for order 1234", "RE: refund for my order 98765" and "Order refund please" all
become "refund": reply prefixes, numbers, references and stop words (the `stop-words`
lists for the case's language) go, the remaining words are Snowball-stemmed (PyStemmer)
where the language has a stemmer and kept in sorted order, so word order does not matter.
Text in scripts written without spaces (Chinese, Japanese, Thai) keeps its characters,
with digits, punctuation and stop words removed. Computed once, when the case opens.
"""

from __future__ import annotations

import re
from functools import cache

from stop_words import LANGUAGE_MAPPING, get_stop_words

from dispatcher.triage.spec import STEM_LANGUAGES
from dispatcher.triage.text import UNSPACED, fold, stemmer

MAX_WORDS = 6
MAX_CHARS = 120
REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|tr|antw|回复|答复|转发)\s*:\s*)+")
WORD = re.compile(r"[^\W\d_]{2,}")  # letters only: numbers and references say nothing
UNSPACED_RUN = re.compile(f"(?:{UNSPACED.pattern})+")


def topic_of(subject: str | None, text: str | None, language: str | None) -> str | None:
    """The topic of a case from its subject (or, without one, its text's first line)."""
    language = language or "en"  # undetected: English stop words and stems, consistently
    source = (subject or "").strip() or _first_line(text or "")
    folded = REPLY_PREFIX.sub("", fold(source))
    if not folded:
        return None
    stops = _stop_words(language)
    words = {w for w in WORD.findall(UNSPACED_RUN.sub(" ", folded)) if w not in stops}
    if language in STEM_LANGUAGES and words:
        words = set(stemmer(language).stemWords(sorted(words)))
    parts = sorted(words)[:MAX_WORDS]
    unspaced = "".join(_without_stops(run, language) for run in UNSPACED_RUN.findall(folded))
    if unspaced:
        parts.insert(0, unspaced[:40])
    return " ".join(parts)[:MAX_CHARS] or None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _without_stops(run: str, language: str) -> str:
    for stop in _longer_stops(language):
        if stop in run:
            run = run.replace(stop, "")
    return run


@cache
def _longer_stops(language: str) -> tuple[str, ...]:
    """The stop words of more than one character, longest first. A one-character stop word
    (的, 了) would cut common words apart: only longer ones go."""
    return tuple(sorted((s for s in _stop_words(language) if len(s) > 1), key=len, reverse=True))


@cache
def _stop_words(language: str) -> frozenset[str]:
    words = set(get_stop_words("en"))
    if language != "en" and language in LANGUAGE_MAPPING:
        words |= set(get_stop_words(language))
    return frozenset(fold(word) for word in words)
