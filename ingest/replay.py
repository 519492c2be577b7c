"""Feed a quarantined original back through the pipeline once its cause is fixed."""

from __future__ import annotations

import asyncio
from datetime import datetime

import aio_pika
from aiormq.exceptions import PublishError

from ingest.blobstore import BlobStore
from ingest.quarantine import Quarantine
from ingest.settings import Settings
from ingest.topology import case_open_route
from normalizer.envelope import PAYLOAD_KINDS, Envelope, normalize
from normalizer.model import PUBLISH_ID, SCHEMA, CaseOpen, new_publish_id


class ReplayError(Exception):
    """The entry cannot be replayed (yet); the message says why."""


async def replay(settings: Settings, entry_id: str) -> str:
    """Normalise the kept original again and publish it with a confirm; return the case-open id.

    The entry is marked replayed only after the broker confirmed the message.
    """
    data_dir = settings.paths.data_dir
    blobs = BlobStore(data_dir / "blobs")
    quarantine = Quarantine(data_dir / "quarantine", blobs)
    entry = quarantine.get(entry_id)
    kind = PAYLOAD_KINDS.get(entry.payload)
    if kind is None:
        raise ReplayError(f"this version cannot read {entry.payload!r} payloads")
    try:
        payload = kind.decode(blobs.get(entry.raw_ref), tuple(entry.touchpoints))
    except ValueError as error:
        raise ReplayError(f"the kept original does not decode: {error}") from None
    envelope = Envelope(
        channel=entry.channel,
        adapter=entry.adapter,
        touchpoint=entry.touchpoints[0],
        received_at=datetime.fromisoformat(entry.received_at),
        payload=payload,
        source_id=entry.source_id,
    )
    options = settings.normalizer_options()
    normalized = await asyncio.to_thread(normalize, envelope, entry.id, options)
    for blob in normalized.blobs:
        blobs.put(blob)
    await _publish(settings, normalized.case)
    quarantine.mark_replayed(entry.id)
    return normalized.case.id


async def _publish(settings: Settings, case: CaseOpen) -> None:
    connection = await aio_pika.connect(
        settings.broker.url, timeout=settings.broker.connect_timeout_s
    )
    async with connection:
        # Unroutable, the message comes back: an error, not a replay (see ingest/broker.py).
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange, routing_key = case_open_route(settings.queues, case)
        target = await channel.get_exchange(exchange, ensure=False)
        try:
            await target.publish(
                aio_pika.Message(
                    case.to_json(),
                    message_id=case.id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={
                        "x-schema": SCHEMA,
                        "x-channel": case.channel,
                        "x-replayed": "true",
                        PUBLISH_ID: new_publish_id(),
                    },
                ),
                routing_key=routing_key,
                mandatory=True,
            )
        except PublishError:
            raise ReplayError(
                f"the broker routes nothing to {routing_key!r} on {exchange!r}: is the"
                " topology declared (`ingest run` declares it when it connects)?"
            ) from None
