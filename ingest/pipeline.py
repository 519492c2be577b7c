"""The `emit` that channels call: normalise the envelope, store its bytes, make it safe.

Payloads that are slow to parse (mail) go to the parsing workers, which also store their
blobs; the others are normalised on the event loop, where they take microseconds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import structlog
from ulid import ULID

from channels.base import Busy, MemoryFull, NotSafe, Rejected
from ingest.blobstore import BlobStore
from ingest.measured import SAFE_AT
from ingest.memory import MemoryBudget
from ingest.metrics import Metrics
from ingest.publisher import Publisher
from ingest.quarantine import Quarantine
from ingest.settings import QueueSettings
from ingest.spool import Outgoing
from ingest.topology import sender_route
from ingest.workers import Parsed, Workers
from normalizer.envelope import (
    Envelope,
    Options,
    RawMail,
    kind_of,
    normalize,
)
from normalizer.errors import Unprocessable
from normalizer.language import detect_language
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
        workers: Workers,
        memory: MemoryBudget,
    ) -> None:
        self._publisher = publisher
        self._queues = queues
        self._blobs = blobs
        self._quarantine = quarantine
        self._options = options
        self._metrics = metrics
        self._workers = workers
        self._memory = memory

    async def warm_up(self) -> None:
        """Load the language model in a thread once the daemon is up: the first web message
        would otherwise wait for it (half a second and more) on the event loop, and every
        request behind it with it. Mail is detected in the workers, which load their own."""
        warm_up_text = "Hello, the parcel arrived damaged; could you send a new one, please?"
        if self._options.languages:
            await asyncio.to_thread(
                detect_language, warm_up_text, self._options.languages, self._options.model_cache
            )

    def admit(self) -> NotSafe | None:
        """Whether a mail would be taken now: None, or the refusal (`MemoryFull`, `Busy`)
        `emit` would raise; SMTP asks before the data is sent."""
        if self._memory.over():
            return MemoryFull("over the memory budget; try again later")
        if self._workers.in_hand >= self._workers.capacity:
            return Busy("too many messages being parsed; try again later")
        return None

    async def emit(self, envelope: Envelope) -> str:
        """Normalise, store, publish; return the case-open id once it is safe.

        Raises `Rejected` (original quarantined) for input that can never become a case-open
        and `NotSafe` when neither the broker nor the spool can take it.
        """
        case_id = envelope.case_id or str(ULID())
        try:
            case = await self._normalize(envelope, case_id)
        except Unprocessable as error:
            await self._keep(envelope, case_id, str(error))
            self._metrics.quarantined.labels(envelope.channel, envelope.adapter).inc()
            raise Rejected(str(error), case_id) from None
        exchange, routing_key = sender_route(self._queues, *case.sender)
        outgoing = Outgoing(
            body=case.body,
            message_id=case.id,
            routing_key=routing_key,
            headers={"x-schema": SCHEMA, "x-channel": case.channel, SAFE_AT: f"{time.time():.3f}"},
            exchange=exchange,
        )
        try:
            where = await self._publisher.publish(outgoing)
        except NotSafe:
            self._metrics.not_safe.labels(envelope.channel, envelope.adapter).inc()
            raise
        self._metrics.case_opens.labels(case.channel, case.adapter, where).inc()
        received = envelope.received_at.timestamp()
        self._metrics.safe_seconds.labels(case.channel).observe(max(0.0, time.time() - received))
        log.info(
            "case-open safe",
            id=case.id,
            channel=case.channel,
            adapter=case.adapter,
            source_id=case.source_id,
            where=where,
        )
        return case.id

    async def _normalize(self, envelope: Envelope, case_id: str) -> Parsed:
        """The case-open's wire JSON and particulars, its blobs stored."""
        if kind_of(envelope.payload).slow:
            if self._memory.over():
                raise MemoryFull("over the memory budget; try again later")
            return await self._workers.parse(envelope, case_id)
        normalized = normalize(envelope, case_id, self._options)
        if normalized.blobs:
            await asyncio.to_thread(self._blobs.put_all, normalized.blobs)
        return Parsed.of(normalized.case)

    async def _keep(self, envelope: Envelope, case_id: str, reason: str) -> None:
        payload = envelope.payload
        if isinstance(payload, RawMail) and payload.file is not None:
            data = await asyncio.to_thread(payload.file.read_bytes)
            payload = replace(payload, data=data, file=None)
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
