"""The raw envelope a channel hands to the pipeline, and the one entry point that normalises it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from normalizer.model import CaseOpen
from normalizer.web import WebMessage, normalize_web

Payload = WebMessage


@dataclass(frozen=True, slots=True)
class Envelope:
    """What arrived, as the source gave it, with the source's own id when it has one."""

    channel: str
    adapter: str
    touchpoint: str
    received_at: datetime
    payload: Payload
    source_id: str | None = None


class UnsupportedPayload(TypeError):
    """No normaliser exists for this kind of payload: a programming error, not bad input."""


def normalize(envelope: Envelope, case_id: str) -> CaseOpen:
    """Turn an envelope into a case-open. A source without an id gets the case id as its id."""
    source_id = envelope.source_id or case_id
    if isinstance(envelope.payload, WebMessage):
        return normalize_web(
            envelope.payload,
            case_id=case_id,
            source_id=source_id,
            received_at=envelope.received_at,
            touchpoint=envelope.touchpoint,
        )
    raise UnsupportedPayload(f"no normaliser for {type(envelope.payload).__name__}")
