"""Incidents: many customers reporting the same thing at once (`dispatcher.incidents`), each
with when it started and ended, the cases and customers it grouped, where its cases went, and
example subjects; counted against the previous period.

An incident counts in the period it started in (as a case counts in the period it opened
in), with all of its messages. Its cases are those of its messages (opened or updated by
them); in a report of one product or queue, only its messages whose case is the owner's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, FromClause, case, func, literal, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import (
    CASES,
    INCIDENT_MESSAGES,
    INCIDENTS,
    MESSAGES,
    change,
    in_scope,
)

LISTED = 50
NONE = "(none)"


def incidents_section(db: Connection, window: Window, scope: Scope) -> Section:
    groups = _cases_by_queue(db, window, scope)
    section = Section(
        "incidents",
        "Incidents",
        "When did many customers report the same problem at once, for how long, and where "
        "did those cases go?",
    )
    section.tables = [
        _summary(db, window, scope),
        _listing(db, window, scope, groups),
        _by_queue(groups),
    ]
    section.notes.append(
        "An incident counts in the period it started in; it ended with its latest message. "
        "Queue: where most of its cases went; priority: the highest its cases got."
    )
    return section


def _members(scope: Scope) -> FromClause:
    """Incidents with their messages, each message's case where the store still has it."""
    m, i = INCIDENT_MESSAGES.c, INCIDENTS.c
    joined = INCIDENTS.join(INCIDENT_MESSAGES, m.incident_id == i.id).outerjoin(
        MESSAGES, MESSAGES.c.case_open_id == m.case_open_id
    )
    if scope.by is None:
        return joined.outerjoin(CASES, CASES.c.id == MESSAGES.c.case_id)
    return joined.join(CASES, CASES.c.id == MESSAGES.c.case_id)


def _formed(since: Any, window: Window, scope: Scope) -> tuple[Any, ...]:
    i = INCIDENTS.c
    started = (i.first_seen >= since, i.first_seen < window.until)
    return (i.status == "formed", *started, in_scope(scope))


def _summary(db: Connection, window: Window, scope: Scope) -> Table:
    i, m = INCIDENTS.c, INCIDENT_MESSAGES.c
    current = case((i.first_seen >= window.since, 1), else_=0).label("current")
    query = (
        select(
            current,
            func.count(func.distinct(i.id)),
            func.count(),
            func.count(func.distinct(MESSAGES.c.case_id)),
            func.count(func.distinct(m.customer_id)),
        )
        .select_from(_members(scope))
        .where(*_formed(window.previous.since, window, scope))
        .group_by(current)
    )
    found = {now: figures for now, *figures in db.execute(query)}
    now, before = found.get(1, [0] * 4), found.get(0, [0] * 4)
    names = ("incidents", "messages", "cases", "customers")
    rows = [[name, now[n], before[n], change(now[n], before[n])] for n, name in enumerate(names)]
    return Table(
        "incidents_summary",
        "Incidents started in the period, against the previous period",
        ["figure", "current", "previous", "change_pct"],
        rows,
    )


def _cases_by_queue(
    db: Connection, window: Window, scope: Scope
) -> dict[int, list[tuple[str, str, int]]]:
    """Per incident of the period: (queue, priority, cases) for each pair its cases have."""
    queue = func.coalesce(CASES.c.queue, literal(NONE))
    priority = func.coalesce(CASES.c.priority, literal(NONE))
    query = (
        select(INCIDENTS.c.id, queue, priority, func.count(func.distinct(CASES.c.id)))
        .select_from(_members(scope))
        .where(*_formed(window.since, window, scope), CASES.c.id.is_not(None))
        .group_by(INCIDENTS.c.id, queue, priority)
    )
    found: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for incident, at_queue, at_priority, cases in db.execute(query):
        found[incident].append((at_queue, at_priority, cases))
    return found


def _listing(
    db: Connection,
    window: Window,
    scope: Scope,
    groups: dict[int, list[tuple[str, str, int]]],
) -> Table:
    i, m = INCIDENTS.c, INCIDENT_MESSAGES.c
    customers = func.count(func.distinct(m.customer_id))
    query = (
        select(
            i.id,
            i.first_seen,
            i.last_seen,
            i.formed_at,
            func.count(),
            func.count(func.distinct(MESSAGES.c.case_id)),
            customers,
            i.sample_subject,
            func.min(m.subject),
            func.max(m.subject),
        )
        .select_from(_members(scope))
        .where(*_formed(window.since, window, scope))
        .group_by(i.id, i.first_seen, i.last_seen, i.formed_at, i.sample_subject)
        .order_by(customers.desc(), i.first_seen, i.id)
        .limit(LISTED)
    )
    rows = []
    for number, started, ended, formed, messages, cases, people, *subjects in db.execute(query):
        queue, priority = _where(groups.get(number, []))
        hours = round((ended - started).total_seconds() / 3600, 1)
        rows.append(
            [
                number,
                started,
                ended,
                hours,
                formed,
                messages,
                cases,
                people,
                queue,
                priority,
                _examples(subjects),
            ]
        )
    return Table(
        "incident_list",
        f"Incidents started in the period (the {LISTED} with most customers)",
        [
            "incident",
            "started",
            "ended",
            "lasted_h",
            "formed_at",
            "messages",
            "cases",
            "customers",
            "queue",
            "priority",
            "examples",
        ],
        rows,
        chart=Chart("barh", ("incident", "examples"), ("customers",), "Customers per incident"),
    )


def _where(pairs: list[tuple[str, str, int]]) -> tuple[str | None, str | None]:
    """The queue with most of the incident's cases, and the highest priority (P1 before P2)."""
    if not pairs:
        return None, None
    per_queue: dict[str, int] = defaultdict(int)
    for queue, _priority, cases in pairs:
        per_queue[queue] += cases
    queue = min(per_queue, key=lambda name: (-per_queue[name], name))
    priorities = sorted({priority for _, priority, _ in pairs if priority != NONE})
    return queue, priorities[0] if priorities else NONE


def _by_queue(groups: dict[int, list[tuple[str, str, int]]]) -> Table:
    found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for pairs in groups.values():
        for queue, priority, cases in pairs:
            figures = found[queue, priority]
            figures[0] += 1
            figures[1] += cases
    rows = sorted(([*key, *figures] for key, figures in found.items()), key=_largest)
    return Table(
        "incident_cases_by_queue",
        "Cases of the period's incidents by queue and priority",
        ["queue", "priority", "incidents", "cases"],
        rows,
        chart=Chart("barh", ("queue", "priority"), ("cases",), "Incident cases by queue"),
    )


def _largest(row: list[Any]) -> tuple[Any, ...]:
    return (-row[3], row[0], row[1])


def _examples(subjects: list[str | None]) -> str:
    """The incident's sample subject and two more of its messages' (first and last in order)."""
    return " | ".join(dict.fromkeys(s for s in subjects if s))
