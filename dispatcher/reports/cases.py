"""What the cases were about: counted by queue, bucket, category, product and priority
against the previous period, and the enquiries of people who are not (yet) customers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, or_, select
from sqlalchemy.orm import aliased

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import (
    CASES,
    CUSTOMERS,
    OPEN_STATES,
    case_count,
    change,
    during,
    in_scope,
)

DIMENSIONS = ("queue", "bucket", "category", "product", "priority")
NONE = "(none)"


@dataclass(frozen=True, slots=True)
class CaseCounts:
    """Cases of the window and of the previous period, counted per combination of the five
    dimensions (one pass over the cases; every breakdown is a sum of these)."""

    rows: list[tuple[Any, ...]]  # *DIMENSIONS, current, still open, count

    def by(self, dimension: str) -> dict[str, list[int]]:
        """value: [cases, still open, previous]."""
        index = DIMENSIONS.index(dimension)
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in self.rows:
            *values, current, still_open, count = row
            figures = found[values[index] or NONE]
            if current:
                figures[0] += count
                figures[1] += count if still_open else 0
            else:
                figures[2] += count
        return found


def count_cases(db: Connection, window: Window, scope: Scope) -> CaseCounts:
    current = case((CASES.c.opened_at >= window.since, 1), else_=0)
    still_open = case((CASES.c.status.in_(OPEN_STATES), 1), else_=0)
    keys = [*(CASES.c[d] for d in DIMENSIONS), current, still_open]
    query = (
        select(*keys, func.count())
        .where(
            CASES.c.opened_at >= window.previous.since,
            CASES.c.opened_at < window.until,
            in_scope(scope),
        )
        .group_by(*keys)
    )
    return CaseCounts([tuple(row) for row in db.execute(query)])


def cases_section(db: Connection, window: Window, scope: Scope, counts: CaseCounts) -> Section:
    section = Section("cases", "Cases", "What were the cases about, and where did they go?")
    section.tables = [_by(counts, dimension) for dimension in DIMENSIONS]
    section.tables.append(_non_customers(db, window, scope))
    return section


def _by(counts: CaseCounts, dimension: str) -> Table:
    rows = [
        [value, cases, still_open, previous, change(cases, previous)]
        for value, (cases, still_open, previous) in counts.by(dimension).items()
        if cases or previous
    ]
    rows.sort(key=lambda row: (-row[1], -row[3], str(row[0])))
    return Table(
        f"cases_by_{dimension}",
        f"Cases by {dimension}, against the previous period",
        [dimension, "cases", "still_open", "previous", "change_pct"],
        rows,
        chart=Chart("barh", dimension, ("cases",), f"Cases by {dimension}"),
    )


def _non_customers(db: Connection, window: Window, scope: Scope) -> Table:
    """Cases of senders the directory does not know, or knows as not a customer (prospects:
    what sales should see)."""
    member, root = aliased(CUSTOMERS), aliased(CUSTOMERS)
    unknown = root.c.known.is_(False)
    prospect = and_(root.c.known.is_(True), root.c.is_customer.is_(False))
    queue, category = CASES.c.queue, func.coalesce(CASES.c.category, literal(NONE))
    query = (
        select(queue, category, func.count(), case_count(prospect), case_count(unknown))
        .select_from(
            CASES.join(member, member.c.id == CASES.c.customer_id).join(
                root, root.c.id == func.coalesce(member.c.merged_into, member.c.id)
            )
        )
        .where(during(CASES.c.opened_at, window), in_scope(scope), or_(unknown, prospect))
        .group_by(queue, category)
    )
    rows = sorted(([*row] for row in db.execute(query)), key=lambda r: (-r[2], r[0], r[1]))
    return Table(
        "non_customer_enquiries",
        "Enquiries from non-customers (prospects and unknown senders), by queue and category",
        ["queue", "category", "cases", "prospects", "unknown_senders"],
        rows,
        chart=Chart("barh", ("queue", "category"), ("cases",), "Non-customer enquiries"),
    )
