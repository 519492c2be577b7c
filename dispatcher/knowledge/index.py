"""The knowledge base's search index: every article's terms, looked up fuzzily.

A query is cut into units (`terms.query_units`): words, and characters or character pairs of
Chinese and Japanese. Each unit finds articles through the best of its alternatives:

    the word itself                         1.0
    its Snowball stem, in each KB language  0.9   (fakturaen, fakturaer -> faktura)
    a longer word it begins (being typed)   0.6 to 0.9, by how much of it is typed
    a word within a typo or two (RapidFuzz) 0.85 x similarity, only when nothing above hit

A unit found in the title, tags, products or keywords counts fully, in the text only
`BODY`. An article's score is the share of the query it answers: the units weighted by their
rarity (idf), times how well each matched, over the weight of all the units, so 0 to 1 and
comparable between queries (triage's `kb` condition compares it with a threshold).

Postings are NumPy arrays, so a lookup in 10,000 articles is a few vector operations per
unit, not a loop over articles.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process

from dispatcher.knowledge.articles import Article
from dispatcher.knowledge.terms import CHAR, PAIR, STEM, WORD, Unit, document_terms, query_units
from dispatcher.triage.spec import STEM_LANGUAGES

BODY = 0.6
"""What a match in the text counts, against one in the title, tags or keywords."""
SAME_LANGUAGE = 0.02
"""Added for an article in the query's language: breaks near-ties, never outweighs a match."""
PREFIX_FROM = 3
PREFIX_LIMIT = 8
FUZZY_FROM = 4
FUZZY_CUTOFF = 75.0
FUZZY_LIMIT = 3
ALTERNATIVES_CACHED = 50_000
UNMATCHED = 0.5
"""A unit nothing matches weighs this much of an average matched unit (it lowers scores)."""


@dataclass(frozen=True, slots=True)
class Match:
    """An article found for a query: its score (0 to 1) and the terms that matched."""

    article: Article
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Alternative:
    term: str
    quality: float
    shown: str


class KbIndex:
    """Built once per load of the folder, never changed after; safe to share by threads."""

    def __init__(self, articles: Sequence[Article]) -> None:
        self.articles = list(articles)
        self.languages = tuple(
            sorted({a.language for a in self.articles if a.language in STEM_LANGUAGES})
        )
        size = len(self.articles)
        found: dict[str, dict[int, float]] = defaultdict(dict)
        for number, article in enumerate(self.articles):
            head = " ".join([article.title, *article.tags, *article.products, *article.keywords])
            for term in set(document_terms(head, article.language)):
                found[term][number] = 1.0
            for term in set(document_terms(article.body, article.language)):
                found[term].setdefault(number, BODY)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._idf: dict[str, float] = {}
        for term, where in found.items():
            ids = np.fromiter(sorted(where), dtype=np.int32, count=len(where))
            values = np.fromiter((where[i] for i in ids.tolist()), np.float32, len(where))
            self._postings[term] = (ids, values)
            self._idf[term] = math.log(1.0 + size / len(where))
        words = sorted(term[2:] for term in found if term.startswith(WORD + ":"))
        self._words = words
        self._by_start: dict[str, list[str]] = defaultdict(list)
        for word in words:
            if len(word) >= FUZZY_FROM:
                self._by_start[word[0]].append(word)
        self._by_id = {article.id: article for article in self.articles}
        self._public = np.array([a.public for a in self.articles], dtype=bool)
        # What a unit finds depends only on the index: the same words come again and again.
        self._alternatives = lru_cache(maxsize=ALTERNATIVES_CACHED)(self._find_alternatives)
        self._language = np.array([a.language for a in self.articles], dtype=object)

    def __len__(self) -> int:
        return len(self.articles)

    def article(self, article_id: str) -> Article | None:
        return self._by_id.get(article_id)

    @property
    def terms(self) -> int:
        return len(self._postings)

    def search(
        self,
        query: str,
        language: str | None = None,
        limit: int = 3,
        public_only: bool = False,
        min_score: float = 0.0,
    ) -> list[Match]:
        """The best articles for the query, best first; `language` is the query's, if known."""
        if not self.articles:
            return []
        units = query_units(query, [*([language] if language else []), *self.languages])
        if not units:
            return []
        found = [(unit, self._alternatives(unit)) for unit in units]
        total = np.zeros(len(self.articles), dtype=np.float32)
        matched_weights: list[float] = []
        for _, alternatives in found:
            if not alternatives:
                continue
            best = np.zeros(len(self.articles), dtype=np.float32)
            for alternative in alternatives:
                ids, values = self._postings[alternative.term]
                best[ids] = np.maximum(best[ids], values * alternative.quality)
            weight = max(self._idf[a.term] for a in alternatives)
            matched_weights.append(weight)
            total += weight * best
        if not matched_weights:
            return []
        unmatched = len(units) - len(matched_weights)
        average = sum(matched_weights) / len(matched_weights)
        scores = total / (sum(matched_weights) + unmatched * UNMATCHED * average)
        if language:
            scores = scores + SAME_LANGUAGE * (self._language == language) * (scores > 0)
        if public_only:
            scores = scores * self._public
        return self._best(scores, found, limit, max(min_score, 1e-6))

    def _best(
        self,
        scores: np.ndarray,
        found: list[tuple[Unit, list[_Alternative]]],
        limit: int,
        min_score: float,
    ) -> list[Match]:
        count = min(limit, len(scores))
        if count <= 0:
            return []
        top = np.argpartition(-scores, count - 1)[:count]
        ranked = sorted(top.tolist(), key=lambda i: (-float(scores[i]), self.articles[i].id))
        return [
            Match(
                self.articles[i],
                round(min(1.0, float(scores[i])), 3),
                self._why(i, found),
            )
            for i in ranked
            if scores[i] >= min_score
        ]

    def _why(self, number: int, found: list[tuple[Unit, list[_Alternative]]]) -> tuple[str, ...]:
        """For each unit that matched this article, the alternative that did best."""
        shown: list[str] = []
        for _, alternatives in found:
            best: tuple[float, str] | None = None
            for alternative in alternatives:
                ids, values = self._postings[alternative.term]
                at = int(np.searchsorted(ids, number))
                if at < len(ids) and ids[at] == number:
                    value = float(values[at]) * alternative.quality
                    if best is None or value > best[0]:
                        best = (value, alternative.shown)
            if best is not None:
                shown.append(best[1])
        return tuple(dict.fromkeys(shown))

    def _find_alternatives(self, unit: Unit) -> list[_Alternative]:
        if unit.kind in (CHAR, PAIR):
            term = f"{unit.kind}:{unit.shown}"
            return [_Alternative(term, 1.0, unit.shown)] if term in self._postings else []
        word = unit.shown
        found: list[_Alternative] = []
        if f"{WORD}:{word}" in self._postings:
            found.append(_Alternative(f"{WORD}:{word}", 1.0, word))
        for language, stem in unit.stems:
            term = f"{STEM}:{language}:{stem}"
            if term in self._postings:
                found.append(_Alternative(term, 0.9, f"{word} (stem {stem}, {language})"))
        if found:
            return found
        if len(word) >= PREFIX_FROM:
            found.extend(self._prefixed(word))
        if len(word) >= FUZZY_FROM:
            found.extend(self._near(word))
        return found

    def _prefixed(self, word: str) -> Iterable[_Alternative]:
        start = bisect.bisect_right(self._words, word)
        for longer in self._words[start : start + PREFIX_LIMIT]:
            if not longer.startswith(word):
                break
            quality = 0.6 + 0.3 * len(word) / len(longer)
            yield _Alternative(f"{WORD}:{longer}", quality, f"{word}… {longer}")

    def _near(self, word: str) -> Iterable[_Alternative]:
        candidates = self._by_start.get(word[0], [])
        for near, similarity, _ in process.extract(
            word,
            candidates,
            scorer=fuzz.ratio,
            score_cutoff=FUZZY_CUTOFF,
            limit=FUZZY_LIMIT,
        ):
            if abs(len(near) - len(word)) <= 2:
                yield _Alternative(f"{WORD}:{near}", 0.85 * similarity / 100, f"{word} ~ {near}")
