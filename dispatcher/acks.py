"""Whether a new case gets an acknowledgement, and the request for the sender that sends it.

Never for auto-replies, bounces, mailing lists or spam, whatever the rules say; never more than
`ack_daily_cap` a day to one address (counted in the store, under the customer's lock, so
several dispatchers share the count): two auto-responders can never loop through us.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
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


Unanswerable = Callable[[AckRequest], str | None]
"""Why no configured replier can send this request, or None (given by the composition root)."""


class AckPolicy:
    """Renders the acknowledgement a new case asks for; the daily cap is applied per batch."""

    def __init__(self, templates: Templates, unanswerable: Unanswerable | None = None) -> None:
        self._templates = templates
        self._unanswerable = unanswerable

    def request(self, case: CaseOpen, triage: Triage, reference: str) -> AckRequest | None:
        """The request for this case, or None (loop risk, no template, no address, nobody
        configured to send it): `why_not` says which."""
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
            )
        except (ValueError, ValidationError):
            log.info("no acknowledgement: no address to answer", id=case.id, channel=case.channel)
            return None
        if self._unanswerable is not None and self._unanswerable(request) is not None:
            return None
        return request.model_copy(update={"case_id": reference})

    def why_not(self, case: CaseOpen, triage: Triage) -> str:
        """Why a case whose rules chose a template got no request (told on the case)."""
        if _loop_risk(case):
            return "not answered: an automatic message, bounce, list or spam (loop risk)"
        rendered = self._templates.acknowledgement(
            triage.acknowledge or "", case, "", triage.fields
        )
        if rendered is None:
            return f"no template {triage.acknowledge!r} for this message"
        try:
            request = AckRequest.answering(
                case, language=rendered.language, subject=rendered.subject, text=rendered.text
            )
        except (ValueError, ValidationError):
            return "no address to answer"
        if self._unanswerable is not None and (why := self._unanswerable(request)):
            return why
        return "not requested"

    @property
    def daily_cap(self) -> int:
        return self._templates.ack_daily_cap


def sent_recently(session: Session, addresses: set[str], now: datetime) -> Counter[str]:
    """Acknowledgements sent to each of these addresses within the cap window."""
    if not addresses:
        return Counter()
    table = Sent.__table__
    rows = session.execute(
        select(table.c.address, func.count())
        .where(table.c.address.in_(addresses), table.c.sent_at > now - CAP_WINDOW)
        .group_by(table.c.address)
    )
    return Counter({address: count for address, count in rows})


def _loop_risk(case: CaseOpen) -> bool:
    flags = case.flags
    return flags.auto_reply or flags.bounce or flags.mailing_list or flags.spam == "spam"
