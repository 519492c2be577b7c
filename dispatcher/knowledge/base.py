"""The knowledge base in force: the folder read and indexed, kept live like the rules (a
changed, added or removed article re-indexes the folder), and the lookups made of it.

Bad articles are left out and reported (`ingest kb check`, the log, `/healthz`); the others
are used. A folder that cannot be read at all keeps the index in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from dispatcher.knowledge.articles import KbError, read_folder
from dispatcher.knowledge.index import KbIndex, Match
from dispatcher.settings import KbSettings
from dispatcher.triage.live import LiveRules
from normalizer.model import CaseOpen, Kb, KbSuggestion

if TYPE_CHECKING:
    from collections.abc import Sequence

log = structlog.get_logger("dispatcher.kb")

FORM_CANDIDATES = 4
"""The form looks at this many times the articles it shows, to prefer the page's language."""
QUERY_CHARS = 600
"""A message is looked up by its subject and the start of its text: a long mail's first
lines say what it is about, and the lookup stays within its time budget."""


@dataclass(frozen=True)
class KnowledgeBase:
    """One load of the folder: the index, and what was wrong with the files left out."""

    index: KbIndex
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def load_kb(folder: Path) -> KnowledgeBase:
    """Read and index the folder (raise KbError if it cannot be read at all)."""
    articles, problems = read_folder(folder)
    for problem in problems:
        log.warning("kb article left out", problem=problem)
    return KnowledgeBase(KbIndex(articles), problems, [str(folder)])


def watched_articles(folder: Path) -> list[Path]:
    """The folder (adding or removing a file changes it) and every article in it."""
    return [folder, *sorted(folder.rglob("*.md"))] if folder.is_dir() else [folder]


def live_kb(folder: Path) -> LiveRules:
    """The knowledge base kept live: reloaded when a file changes or on SIGHUP."""
    return LiveRules(
        lambda: load_kb(folder),
        lambda: watched_articles(folder),
        what="articles",
        count=lambda current: len(current.index),
        errors=(KbError,),
    )


class Suggester:
    """Lookups in the knowledge base in force: for a case (public and internal articles) and
    for the contact form (public ones only)."""

    def __init__(self, live: LiveRules, settings: KbSettings) -> None:
        self._live = live
        self._settings = settings

    @property
    def index(self) -> KbIndex:
        return self._live.current.index  # type: ignore[attr-defined, no-any-return]

    def for_case(self, case: CaseOpen) -> Kb:
        """The best articles for a message, as the forwarded case carries them."""
        query = f"{case.subject or ''}\n{case.text[:QUERY_CHARS]}"
        found = self.index.search(
            query,
            case.language,
            limit=self._settings.suggestions,
            min_score=self._settings.min_score,
        )
        return Kb(suggestions=[suggestion(match) for match in found])

    def for_form(self, subject: str, message: str, language: str | None) -> list[Match]:
        """The public articles the contact form offers before the message is sent: those in
        the form's language when any matches, else the best in any language."""
        wanted = self._settings.form
        if wanted == 0:
            return []
        found = self.index.search(
            f"{subject}\n{message[:QUERY_CHARS]}",
            language,
            limit=wanted * FORM_CANDIDATES,
            public_only=True,
            min_score=self._settings.min_score,
        )
        same = [match for match in found if match.article.language == language]
        return (same or found)[:wanted]

    def for_cases(self, cases: Sequence[CaseOpen]) -> list[Kb]:
        return [self.for_case(case) for case in cases]


def suggestion(match: Match) -> KbSuggestion:
    article = match.article
    return KbSuggestion(
        id=article.id,
        title=article.title,
        url=article.url,
        audience=article.audience,  # type: ignore[arg-type]
        language=article.language,
        tags=list(article.tags),
        score=match.score,
        matched=list(match.matched),
    )
