"""Incidents as `ingest incidents list` and `show` read them from the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.tables import Incident, IncidentMessage


@dataclass(frozen=True, slots=True)
class MemberRow:
    case_open_id: str
    customer_id: int
    received_at: datetime
    subject: str | None


def incidents(session: Session, with_merged: bool = False, limit: int = 50) -> list[Incident]:
    """The latest incidents, most recently active first (not those merged into another,
    unless asked)."""
    query = select(Incident).order_by(Incident.last_seen.desc(), Incident.id.desc()).limit(limit)
    if not with_merged:
        query = query.where(Incident.status == "formed")
    return list(session.scalars(query))


def incident(session: Session, number: int) -> tuple[Incident | None, list[MemberRow]]:
    """One incident and its messages, oldest first."""
    found = session.get(Incident, number)
    if found is None:
        return None, []
    m = IncidentMessage
    rows = session.execute(
        select(m.case_open_id, m.customer_id, m.received_at, m.subject)
        .where(m.incident_id == number)
        .order_by(m.received_at, m.case_open_id)
    )
    return found, [MemberRow(*row) for row in rows]
