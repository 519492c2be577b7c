"""Cases closed too early: reopened after being resolved or closed, and closed without a
resolution event; per queue, and the cases themselves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Subquery, and_, exists, func, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import CASES, EVENTS, during, in_scope, ref

LISTED = 25


def closures_section(db: Connection, window: Window, scope: Scope, prefix: str) -> Section:
    closed = _cases_with(("resolved", "closed"), window)
    reopened = _cases_with(("reopened",), window)
    unresolved = _closed_unresolved(window)
    section = Section(
        "closures",
        "Closed too early",
        "Which cases were reopened after being closed, and which were closed without a resolution?",
    )
    section.tables = [
        _per_queue(db, scope, closed, reopened, unresolved),
        _listed(db, scope, reopened, prefix, "reopened_cases", "Cases reopened in the period"),
        _listed(
            db,
            scope,
            unresolved,
            prefix,
            "closed_without_resolution",
            "Cases closed in the period without a resolution event",
        ),
    ]
    return section


def _cases_with(kinds: tuple[str, ...], window: Window) -> Subquery:
    """Cases with events of these kinds in the window: how many, and the last one's time."""
    return (
        select(
            EVENTS.c.case_id,
            func.count().label("times"),
            func.max(EVENTS.c.at).label("last_at"),
        )
        .where(EVENTS.c.kind.in_(kinds), during(EVENTS.c.at, window))
        .group_by(EVENTS.c.case_id)
        .subquery()
    )


def _closed_unresolved(window: Window) -> Subquery:
    closed = _cases_with(("closed",), window)
    resolved = exists().where(EVENTS.c.case_id == closed.c.case_id, EVENTS.c.kind == "resolved")
    return select(closed).where(~resolved).subquery()


def _count_per_queue(db: Connection, scope: Scope, cases: Subquery) -> dict[str, int]:
    query = (
        select(CASES.c.queue, func.count())
        .select_from(cases.join(CASES, and_(CASES.c.id == cases.c.case_id, in_scope(scope))))
        .group_by(CASES.c.queue)
    )
    return {queue: count for queue, count in db.execute(query)}


def _per_queue(
    db: Connection, scope: Scope, closed: Subquery, reopened: Subquery, unresolved: Subquery
) -> Table:
    counts = [_count_per_queue(db, scope, cases) for cases in (closed, reopened, unresolved)]
    queues = sorted(set().union(*counts), key=lambda q: (-counts[0].get(q, 0), q))
    rows: list[list[Any]] = []
    for queue in queues:
        done, again, early = (count.get(queue, 0) for count in counts)
        rows.append([queue, done, again, early, _share(again + early, done)])
    totals = [sum(count.values()) for count in counts]
    rows.append(["total", *totals, _share(totals[1] + totals[2], totals[0])])
    return Table(
        "closures_by_queue",
        "Closed, reopened and closed without a resolution, by queue",
        ["queue", "closed", "reopened", "closed_without_resolution", "too_early_pct"],
        rows,
        chart=Chart(
            "barh", "queue", ("reopened", "closed_without_resolution"), "Closed too early, by queue"
        ),
    )


def _listed(
    db: Connection, scope: Scope, cases: Subquery, prefix: str, name: str, title: str
) -> Table:
    query = (
        select(
            ref(prefix, CASES.c.id),
            CASES.c.queue,
            CASES.c.product,
            CASES.c.subject,
            CASES.c.status,
            CASES.c.assignee,
            cases.c.times,
            cases.c.last_at,
        )
        .select_from(cases.join(CASES, and_(CASES.c.id == cases.c.case_id, in_scope(scope))))
        .order_by(cases.c.times.desc(), cases.c.last_at.desc(), CASES.c.id)
        .limit(LISTED)
    )
    return Table(
        name,
        title,
        ["case", "queue", "product", "subject", "status_now", "assignee", "times", "last_at"],
        [list(row) for row in db.execute(query)],
    )


def _share(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None
