"""Responses against targets: time to first response per priority, the share answered within
the SLA's response target, and the cases that missed it by most.

The first response is the first helpdesk event that answers the customer (`responded`,
`resolved` or `closed` on `case-events`), kept on the case as the events arrive; the target is
the response due time triage set when the case opened. A case not answered is late once its
due time has passed, as of the end of the period (or now): so the figures of a past period do
not change from one run to the next.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Subquery, and_, case, func, literal, or_, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import (
    CASES,
    during,
    in_scope,
    ref,
    seconds_between,
    whole_minutes,
)
from dispatcher.tables import Timestamp

WORST = 15
NONE = "(none)"
HOUR = 3600.0


def responses_section(
    db: Connection, window: Window, scope: Scope, now: datetime, prefix: str
) -> Section:
    timed = _timed(window, scope, min(now, window.until))
    section = Section(
        "responses",
        "Responses against targets",
        "Were customers answered within the response target of their case's priority?",
    )
    section.tables = [_per_priority(db, timed), _worst(db, timed, prefix)]
    section.notes.append(
        "First response: the first responded, resolved or closed event from the helpdesk. "
        "A case still unanswered at the end of the period (or now, if sooner) counts as "
        "missed when its target had passed by then, and is late by that time."
    )
    return section


def _timed(window: Window, scope: Scope, as_of: datetime) -> Subquery:
    """Each case of the window: its first response, whether it was within target or missed,
    and by how long."""
    answered = (
        select(
            CASES.c.id,
            func.coalesce(CASES.c.priority, literal(NONE)).label("priority"),
            CASES.c.queue,
            CASES.c.subject,
            CASES.c.opened_at,
            CASES.c.response_due,
            CASES.c.first_response_at.label("first_at"),
        )
        .where(during(CASES.c.opened_at, window), in_scope(scope))
        .subquery()
    )
    due, first_at = answered.c.response_due, answered.c.first_at
    until = func.coalesce(first_at, literal(as_of, Timestamp()))
    return select(
        answered,
        seconds_between(first_at, answered.c.opened_at).label("seconds"),
        case((and_(due.is_not(None), first_at <= due), 1), else_=0).label("within"),
        case(
            (and_(due.is_not(None), or_(first_at > due, and_(first_at.is_(None), until > due))), 1),
            else_=0,
        ).label("missed"),
        seconds_between(until, due).label("late_seconds"),
    ).subquery()


def _per_priority(db: Connection, timed: Subquery) -> Table:
    """Counts, the mean, and the median and 90th percentile per priority, from one grouping
    by priority and whole minutes to the first response (the percentiles are the nearest
    rank's minute, told by its middle)."""
    minute = whole_minutes(timed.c.seconds)
    query = select(
        timed.c.priority,
        minute,
        func.count(),
        func.count(timed.c.response_due),
        func.count(timed.c.first_at),
        func.sum(timed.c.within),
        func.sum(timed.c.missed),
        func.sum(timed.c.seconds),
    ).group_by(timed.c.priority, minute)
    found: dict[str, Responses] = defaultdict(Responses)
    for priority, at_minute, *figures in db.execute(query):
        found[priority].add(at_minute, *figures)
    rows = [[priority, *responses.row()] for priority, responses in found.items()]
    rows.sort(key=lambda row: str(row[0]))
    return Table(
        "responses_by_priority",
        "Time to first response per priority (hours), and the share within target",
        [
            "priority",
            "cases",
            "with_target",
            "answered",
            "within_target",
            "missed",
            "within_pct",
            "median_h",
            "p90_h",
            "mean_h",
        ],
        rows,
        chart=Chart("percent", "priority", ("within_pct",), "Answered within target (%)"),
    )


@dataclass
class Responses:
    """One priority's figures, summed over its minutes, and how many answers took each."""

    figures: list[float] = field(default_factory=lambda: [0, 0, 0, 0, 0, 0.0])
    minutes: dict[int, int] = field(default_factory=dict)

    def add(self, minute: int | None, *figures: Any) -> None:
        for index, value in enumerate(figures):
            self.figures[index] += value or 0
        if minute is not None:
            self.minutes[int(minute)] = figures[2]

    def row(self) -> list[Any]:
        cases, targets, answered, within, missed, seconds = self.figures
        judged = within + missed
        share = round(100.0 * within / judged, 1) if judged else None
        mean = _hours(seconds / answered) if answered else None
        counts = [int(n) for n in (cases, targets, answered, within, missed)]
        return [*counts, share, self._percentile(50), self._percentile(90), mean]

    def _percentile(self, percent: int) -> float | None:
        answered = sum(self.minutes.values())
        rank, seen = (answered * percent + 99) // 100, 0
        for minute in sorted(self.minutes):
            seen += self.minutes[minute]
            if seen >= rank:
                return _hours(minute * 60 + 30)
        return None


def _worst(db: Connection, timed: Subquery, prefix: str) -> Table:
    query = (
        select(
            ref(prefix, timed.c.id),
            timed.c.priority,
            timed.c.queue,
            timed.c.subject,
            timed.c.opened_at,
            timed.c.response_due,
            timed.c.first_at,
            timed.c.late_seconds,
        )
        .where(timed.c.missed == 1)
        .order_by(timed.c.late_seconds.desc(), timed.c.id)
        .limit(WORST)
    )
    rows = [[*row[:7], _hours(row[7])] for row in db.execute(query)]
    return Table(
        "responses_worst",
        f"The {WORST} cases that missed their response target by most",
        [
            "case",
            "priority",
            "queue",
            "subject",
            "opened_at",
            "response_due",
            "first_response",
            "late_h",
        ],
        rows,
    )


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds) / HOUR, 2)
