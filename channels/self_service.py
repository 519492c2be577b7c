"""The contact form's self-service step: before a message is sent, the public articles that
may answer it are offered; "Yes, that solved it" records a deflected contact (no case).

The form never imports the dispatcher: `ingest` hands it a `SelfService` that looks articles
up in the knowledge base in force and publishes what happened (`kb-event/1`) for the
dispatcher to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from normalizer.kb_event import KbEvent

ANSWER_CHARS = 300


@dataclass(frozen=True, slots=True)
class Offered:
    """A public article the form offers: its id, title and link."""

    id: str
    title: str
    url: str


class SelfService(Protocol):
    """Lookups in the knowledge base, and recording what the customer did."""

    def suggest(self, subject: str, message: str, language: str) -> Sequence[Offered]:
        """The public articles that may answer the message, best first (may be none)."""
        ...

    def article(self, article_id: str) -> Offered | None:
        """A public article by id (None: no such public article)."""
        ...

    async def record(self, event: KbEvent) -> None:
        """Make the event safe (broker or spool); raises `NotSafe` when neither can."""
        ...


def one_line(text: str) -> str | None:
    """The customer's satisfaction answer: its first line, trimmed, at most 300 characters."""
    line = " ".join(text.strip().splitlines()[:1]).strip()
    return line[:ANSWER_CHARS] or None
