"""What a text is searched by: words (raw and as Snowball stems) where words are separated by
spaces, and characters and character pairs in scripts written without spaces.

Chinese and Japanese have no spaces, so a query of one or two characters (打印, 請求) must
find the articles containing them: such runs are indexed as single characters and as
overlapping pairs. Everything is NFKC- and case-folded, as triage keywords are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from dispatcher.triage.spec import STEM_LANGUAGES
from dispatcher.triage.text import UNSPACED, fold, stemmer

TOKENS = re.compile(r"[^\W_]+", re.UNICODE)
WORDS_CACHED = 50_000

WORD, STEM, CHAR, PAIR = "w", "s", "c", "p"
"""Kinds of terms: a word, a word's stem (language-tagged), a character, a character pair."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing a query asks for: a word (with its stems in the languages tried), or a
    character pair or lone character of an unspaced script."""

    shown: str
    kind: str
    stems: tuple[tuple[str, str], ...] = ()
    """(language, stem) for each language that has a stemmer."""


def runs(text: str) -> Iterator[tuple[str, bool]]:
    """(token, unspaced) for each token of the folded text: a word, or a run of characters
    of a script without spaces (split off from letters of other scripts around it)."""
    return folded_runs(fold(text))


def folded_runs(folded: str) -> Iterator[tuple[str, bool]]:
    """`runs` of a text already folded."""
    for token in TOKENS.findall(folded):
        if not UNSPACED.search(token):
            yield token, False
            continue
        current, unspaced = "", False
        for char in token:
            this = bool(UNSPACED.match(char))
            if current and this != unspaced:
                yield current, unspaced
                current = ""
            current, unspaced = current + char, this
        if current:
            yield current, unspaced


def document_terms(text: str, language: str) -> list[str]:
    """Every term of an article's text, repeats kept (they are counted)."""
    words: list[str] = []
    terms: list[str] = []
    for token, unspaced in runs(text):
        if unspaced:
            terms.extend(_characters(token))
        else:
            words.append(token)
    terms.extend(f"{WORD}:{word}" for word in words)
    if language in STEM_LANGUAGES and words:
        stems = stemmer(language).stemWords(words)
        terms.extend(f"{STEM}:{language}:{stem}" for stem in stems)
    return terms


def query_units(text: str, languages: Iterable[str]) -> list[Unit]:
    """What a query asks for, each word stemmed in every language given that has a stemmer."""
    stemmed = tuple(language for language in dict.fromkeys(languages) if language in STEM_LANGUAGES)
    units: list[Unit] = []
    for token, unspaced in runs(text):
        if unspaced:
            if len(token) == 1:
                units.append(Unit(token, CHAR))
            else:
                units.extend(Unit(token[i : i + 2], PAIR) for i in range(len(token) - 1))
            continue
        units.append(_word(token, stemmed))
    return list(dict.fromkeys(units))


@lru_cache(maxsize=WORDS_CACHED)
def _word(token: str, languages: tuple[str, ...]) -> Unit:
    """A word with its stems: customers use the same words again and again."""
    return Unit(token, WORD, tuple((lang, stemmer(lang).stemWord(token)) for lang in languages))


def _characters(run: str) -> list[str]:
    terms = [f"{CHAR}:{char}" for char in run]
    terms.extend(f"{PAIR}:{run[i : i + 2]}" for i in range(len(run) - 1))
    return terms
