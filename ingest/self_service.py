"""The contact form's self-service lookups, wired to the knowledge base in force and to the
publisher (kb-event/1 messages for the dispatcher, spooled when the broker is away)."""

from __future__ import annotations

from collections.abc import Sequence

from channels.self_service import Offered
from dispatcher.knowledge.base import Suggester
from ingest.publisher import Publisher
from ingest.settings import QueueSettings
from ingest.spool import Outgoing
from normalizer.kb_event import KB_EVENT_SCHEMA, KbEvent


class KbSelfService:
    """What `channels.contact` asks of the knowledge base."""

    def __init__(self, suggester: Suggester, publisher: Publisher, names: QueueSettings) -> None:
        self._suggester = suggester
        self._publisher = publisher
        self._exchange = names.intake_exchange
        self._queue = names.kb_events

    def suggest(self, subject: str, message: str, language: str) -> Sequence[Offered]:
        found = self._suggester.for_form(subject, message, language)
        return [Offered(m.article.id, m.article.title, m.article.url or "") for m in found]

    def article(self, article_id: str) -> Offered | None:
        found = self._suggester.index.article(article_id)
        if found is None or not found.public or not found.url:
            return None
        return Offered(found.id, found.title, found.url)

    async def record(self, event: KbEvent) -> None:
        await self._publisher.publish(
            Outgoing(
                body=event.to_json(),
                message_id=event.id,
                exchange=self._exchange,
                routing_key=self._queue,
                headers={"x-schema": KB_EVENT_SCHEMA},
            )
        )
