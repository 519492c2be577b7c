"""Whether a new case gets an acknowledgement, and the request for the sender that sends it.

Never for auto-replies, bounces, mailing lists or spam, whatever the rules say; never more than
`ack_daily_cap` a day to one address (counted in the store, under the customer's lock, so
several dispatchers share the count): two auto-responders can never loop through us.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.tables import Acknowledgement as Sent
from dispatcher.triage.engine import Acknowledgement as Rendered
from normalizer.acks import AckRequest
from normalizer.model import CaseOpen, Triage

log = structlog.get_logger("dispatcher")

CAP_WINDOW = timedelta(days=1)


class Templates(Protocol):
    """Renders the rules' templates (the triage router does)."""

    @property
    def ack_daily_cap(self) -> int: ...

    def acknowledgement(
        self,
        template: str,
        case: CaseOpen,
        reference: str,
        fields: Mapping[str, str] | None = None,
    ) -> Rendered | None: ...


class AckPolicy:
    """Decides and records acknowledgements inside the dispatcher's store transaction."""

    def __init__(self, templates: Templates) -> None:
        self._templates = templates

    def __call__(
        self,
        session: Session,
        case: CaseOpen,
        triage: Triage,
        reference: str,
        case_id: int,
        now: datetime,
    ) -> AckRequest | None:
        if triage.acknowledge is None or _loop_risk(case):
            return None
        rendered = self._templates.acknowledgement(
            triage.acknowledge, case, reference, triage.fields
        )
        if rendered is None:
            return None
        try:
            request = AckRequest.answering(
                case,
                language=rendered.language,
                subject=rendered.subject,
                text=rendered.text,
            ).model_copy(update={"case_id": reference})
        except (ValueError, ValidationError):
            log.info("no acknowledgement: no address to answer", id=case.id, channel=case.channel)
            return None
        if self._capped(session, request.to, now):
            log.info("acknowledgement capped", id=case.id, cap=self._templates.ack_daily_cap)
            return None
        session.add(Sent(address=request.to, sent_at=now, case_id=case_id))
        return request

    def _capped(self, session: Session, address: str, now: datetime) -> bool:
        sent = session.scalar(
            select(func.count())
            .select_from(Sent)
            .where(Sent.address == address, Sent.sent_at > now - CAP_WINDOW)
        )
        return (sent or 0) >= self._templates.ack_daily_cap


def _loop_risk(case: CaseOpen) -> bool:
    flags = case.flags
    return flags.auto_reply or flags.bounce or flags.mailing_list or flags.spam == "spam"
