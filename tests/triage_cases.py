"""A plain customer mail to support, the message the triage tests vary field by field."""

from __future__ import annotations

from typing import Any

from normalizer.model import CaseOpen

PLAIN_MAIL: dict[str, Any] = {
    "id": "01JCKEPT0000000000000000WB",
    "received_at": "2026-11-24T09:00:00Z",  # a Tuesday, 10:00 in Copenhagen
    "channel": "email",
    "adapter": "smtp",
    "source_id": "m1@customer.example",
    "touchpoints": [{"kind": "mailbox", "address": "support@example.com"}],
    "sender": {"kind": "email", "address": "ann@customer.example", "name": "Ann"},
    "subject": "A question",
    "text": "Hello.",
}


def plain_mail(**fields: Any) -> CaseOpen:
    """`PLAIN_MAIL` with `fields` in place of its own."""
    return CaseOpen.model_validate(PLAIN_MAIL | fields)
