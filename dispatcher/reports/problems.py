"""Recurring problems: cases of different customers on the same topic (`dispatcher.topics`)
and product, counted against the previous period, with example subjects, so that each
product's owner gets the list of what keeps coming back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, literal, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import CASES, change, in_scope

PER_PRODUCT = 10
MIN_CUSTOMERS = 2
NONE = "(none)"


def problems_section(db: Connection, window: Window, scope: Scope) -> Section:
    rows = _groups(db, window, scope)
    section = Section(
        "problems",
        "Recurring problems",
        "Which problems keep coming back, for which product? Cases of at least "
        f"{MIN_CUSTOMERS} customers on one topic; up to {PER_PRODUCT} per product.",
    )
    section.tables = [
        Table(
            "recurring_problems",
            "Recurring problems by product (topic: the subject's significant words)",
            [
                "product",
                "topic",
                "cases",
                "customers",
                "previous",
                "change_pct",
                "first_seen",
                "last_seen",
                "examples",
            ],
            rows,
            chart=Chart("barh", ("product", "topic"), ("customers",), "Customers per problem"),
        )
    ]
    return section


def _groups(db: Connection, window: Window, scope: Scope) -> list[list[Any]]:
    product = func.coalesce(CASES.c.product, literal(NONE)).label("product")
    current = CASES.c.opened_at >= window.since
    customers = func.count(func.distinct(case((current, CASES.c.customer_id))))
    counted = (
        select(
            product,
            CASES.c.topic,
            func.sum(case((current, 1), else_=0)).label("cases"),
            customers.label("customers"),
            func.sum(case((current, 0), else_=1)).label("previous"),
            func.min(case((current, CASES.c.opened_at))).label("first_seen"),
            func.max(case((current, CASES.c.opened_at))).label("last_seen"),
            func.min(case((current, CASES.c.subject))).label("example"),
            func.max(case((current, CASES.c.subject))).label("other_example"),
        )
        .where(
            CASES.c.opened_at >= window.previous.since,
            CASES.c.opened_at < window.until,
            CASES.c.topic.is_not(None),
            in_scope(scope),
        )
        .group_by(product, CASES.c.topic)
        .having(customers >= MIN_CUSTOMERS)
        .subquery()
    )
    rank = func.row_number().over(
        partition_by=counted.c.product,
        order_by=(counted.c.customers.desc(), counted.c.cases.desc(), counted.c.topic),
    )
    ranked = select(counted, rank.label("rank")).subquery()
    query = (
        select(*(c for c in ranked.c if c.name != "rank"))
        .where(ranked.c.rank <= PER_PRODUCT)
        .order_by(ranked.c.product, ranked.c.rank)
    )
    return [
        [p, topic, cases, people, before, change(cases, before), first, last, _examples(one, two)]
        for p, topic, cases, people, before, first, last, one, two in db.execute(query)
    ]


def _examples(first: str | None, last: str | None) -> str:
    """Two of the group's subjects (the first and last in order), or the one it has."""
    return " | ".join(dict.fromkeys(s for s in (first, last) if s))
