"""The `emit` that channels call: normalise the envelope, make the case-open safe."""

from __future__ import annotations

import structlog
from ulid import ULID

from ingest.publisher import Publisher
from ingest.spool import Outgoing
from normalizer.envelope import Envelope, normalize
from normalizer.model import SCHEMA

log = structlog.get_logger("ingest.pipeline")


class Pipeline:
    """From a channel's envelope to a case-open that is safe on the broker or in the spool."""

    def __init__(self, publisher: Publisher, case_open_queue: str) -> None:
        self._publisher = publisher
        self._queue = case_open_queue

    async def emit(self, envelope: Envelope) -> str:
        """Normalise and publish; return the case-open id once it is safe."""
        case = normalize(envelope, str(ULID()))
        outgoing = Outgoing(
            body=case.to_json(),
            message_id=case.id,
            routing_key=self._queue,
            headers={"x-schema": SCHEMA, "x-channel": case.channel},
        )
        where = await self._publisher.publish(outgoing)
        log.info(
            "case-open safe",
            id=case.id,
            channel=case.channel,
            adapter=case.adapter,
            source_id=case.source_id,
            where=where,
        )
        return case.id
