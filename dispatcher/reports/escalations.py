"""Escalations: cases triage put in the escalation bucket, by queue and product, and the
latest of them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from dispatcher.reports.cases import CaseCounts
from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import CASES, during, in_scope, ref

BUCKET = "escalation"
LISTED = 25
NONE = "(none)"


def escalations_section(
    db: Connection, window: Window, scope: Scope, counts: CaseCounts, prefix: str
) -> Section:
    section = Section(
        "escalations",
        "Escalations",
        "What was escalated, and where?",
    )
    section.tables = [_by_queue(counts), _latest(db, window, scope, prefix)]
    return section


def _by_queue(counts: CaseCounts) -> Table:
    found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for queue, bucket, _category, product, _priority, current, still_open, count in counts.rows:
        if bucket == BUCKET and current:
            figures = found[queue, product or NONE]
            figures[0] += count
            figures[1] += count if still_open else 0
    rows = sorted(([*key, *figures] for key, figures in found.items()), key=_largest)
    return Table(
        "escalations_by_queue",
        "Escalated cases by queue and product",
        ["queue", "product", "cases", "still_open"],
        rows,
        chart=Chart("barh", ("queue", "product"), ("cases",), "Escalations"),
    )


def _largest(row: list[Any]) -> tuple[Any, ...]:
    return (-row[2], row[0], row[1])


def _escalated(window: Window, scope: Scope) -> tuple[Any, ...]:
    return (CASES.c.bucket == BUCKET, during(CASES.c.opened_at, window), in_scope(scope))


def _latest(db: Connection, window: Window, scope: Scope, prefix: str) -> Table:
    query = (
        select(
            ref(prefix, CASES.c.id),
            CASES.c.queue,
            CASES.c.product,
            CASES.c.priority,
            CASES.c.subject,
            CASES.c.opened_at,
            CASES.c.status,
        )
        .where(*_escalated(window, scope))
        .order_by(CASES.c.opened_at.desc(), CASES.c.id.desc())
        .limit(LISTED)
    )
    return Table(
        "escalations_latest",
        "The latest escalated cases",
        ["case", "queue", "product", "priority", "subject", "opened_at", "status_now"],
        [list(row) for row in db.execute(query)],
    )
