"""The `emit` that channels call: normalise the envelope, store its bytes, make it safe."""

from __future__ import annotations

import asyncio

import structlog
from ulid import ULID

from channels.base import NotSafe, Rejected
from ingest.blobstore import BlobStore
from ingest.metrics import Metrics
from ingest.publisher import Publisher
from ingest.quarantine import Quarantine
from ingest.settings import QueueSettings
from ingest.spool import Outgoing
from ingest.topology import case_open_route
from normalizer.blobs import Blob
from normalizer.envelope import (
    Envelope,
    Normalized,
    Options,
    RawMail,
    Unprocessable,
    kind_of,
    normalize,
)
from normalizer.model import SCHEMA

log = structlog.get_logger("ingest.pipeline")


class Pipeline:
    """From a channel's envelope to a case-open that is safe on the broker or in the spool."""

    def __init__(
        self,
        publisher: Publisher,
        queues: QueueSettings,
        blobs: BlobStore,
        quarantine: Quarantine,
        options: Options,
        metrics: Metrics,
    ) -> None:
        self._publisher = publisher
        self._queues = queues
        self._blobs = blobs
        self._quarantine = quarantine
        self._options = options
        self._metrics = metrics

    async def emit(self, envelope: Envelope) -> str:
        """Normalise, store, publish; return the case-open id once it is safe.

        Raises `Rejected` (original quarantined) for input that can never become a case-open
        and `NotSafe` when neither the broker nor the spool can take it.
        """
        case_id = envelope.case_id or str(ULID())
        try:
            normalized = await self._normalize(envelope, case_id)
        except Unprocessable as error:
            await self._keep(envelope, case_id, str(error))
            self._metrics.quarantined.labels(envelope.channel, envelope.adapter).inc()
            raise Rejected(str(error), case_id) from None
        if normalized.blobs:
            await asyncio.to_thread(self._store, normalized.blobs)
        case = normalized.case
        exchange, routing_key = case_open_route(self._queues, case)
        outgoing = Outgoing(
            body=case.to_json(),
            message_id=case.id,
            routing_key=routing_key,
            headers={"x-schema": SCHEMA, "x-channel": case.channel},
            exchange=exchange,
        )
        try:
            where = await self._publisher.publish(outgoing)
        except NotSafe:
            self._metrics.not_safe.labels(envelope.channel, envelope.adapter).inc()
            raise
        self._metrics.case_opens.labels(case.channel, case.adapter, where).inc()
        log.info(
            "case-open safe",
            id=case.id,
            channel=case.channel,
            adapter=case.adapter,
            source_id=case.source_id,
            where=where,
        )
        return case.id

    async def _normalize(self, envelope: Envelope, case_id: str) -> Normalized:
        if kind_of(envelope.payload).slow:
            # MIME parsing can take milliseconds: keep it off the event loop.
            return await asyncio.to_thread(normalize, envelope, case_id, self._options)
        return normalize(envelope, case_id, self._options)

    def _store(self, blobs: list[Blob]) -> None:
        for blob in blobs:
            self._blobs.put(blob)

    async def _keep(self, envelope: Envelope, case_id: str, reason: str) -> None:
        payload = envelope.payload
        kind = kind_of(payload)
        touchpoints = list(payload.recipients) if isinstance(payload, RawMail) else []
        entry = await asyncio.to_thread(
            self._quarantine.keep,
            case_id,
            kind.encode(payload),
            channel=envelope.channel,
            adapter=envelope.adapter,
            touchpoints=touchpoints or [envelope.touchpoint],
            received_at=envelope.received_at,
            reason=reason,
            payload=kind.name,
            source_id=envelope.source_id,
        )
        log.warning(
            "quarantined",
            id=entry.id,
            channel=entry.channel,
            adapter=entry.adapter,
            reason=reason,
            raw_ref=entry.raw_ref,
        )
