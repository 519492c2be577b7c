"""What the dispatcher adds to a batch at intake, before triage sees it: the knowledge-base
articles that may answer each message (`kb`) and the incident it is part of (`incident`).

It runs inside the batch's store transaction, after the customers are locked and before the
messages are decided, with one statement per kind of fact for the whole batch (the incident
neighbours and writes, the knowledge-base counters); triage rules see both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from dispatcher.knowledge.stats import add_counts, utc_day
from normalizer.model import CaseOpen

if TYPE_CHECKING:
    from dispatcher.incidents.detect import IncidentDetector
    from dispatcher.knowledge.base import Suggester


@dataclass(frozen=True, slots=True)
class Enrichment:
    """Per message the fields to add to it, and notices for the `incidents` queue by the
    index of the message that carries them."""

    updates: list[dict[str, object]]
    notices: dict[int, list[bytes]] = field(default_factory=dict)


class Intake:
    """Knowledge-base suggestions and incident detection, either of them optional."""

    def __init__(
        self, suggester: Suggester | None = None, detector: IncidentDetector | None = None
    ) -> None:
        self.suggester = suggester
        self.detector = detector

    def batch(
        self,
        session: Session,
        cases: Sequence[CaseOpen],
        customers: Sequence[int],
        now: datetime,
    ) -> Enrichment:
        updates: list[dict[str, object]] = [{} for _ in cases]
        notices: dict[int, list[bytes]] = {}
        if self.suggester is not None:
            counts: Counter[tuple[str, str, date]] = Counter()
            day = utc_day(now)
            for update, kb in zip(updates, self.suggester.for_cases(cases), strict=True):
                update["kb"] = kb
                for found in kb.suggestions:
                    counts[(found.id, "suggested", day)] += 1
            add_counts(session, counts)
        if self.detector is not None:
            found = self.detector.batch(session, cases, customers, now)
            for update, incident in zip(updates, found.incidents, strict=True):
                if incident is not None:
                    update["incident"] = incident
            notices = found.notices
        return Enrichment(updates, notices)
