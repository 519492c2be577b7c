"""Repeat contacts: customers who wrote `repeat_contact_count` times or more within
`repeat_contact_days` days (the dispatcher's own repeat rule, 3 in 7 by default), and the
most frequent contacters, each with their open cases.

Contacts are counted per customer (merged customers count for the one they were merged
into) and UTC day in SQL; a window function sums each day with the days before it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Subquery, and_, case, func, literal, or_, select
from sqlalchemy.orm import aliased

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import (
    CASES,
    CUSTOMERS,
    IDENTITIES,
    MESSAGES,
    OPEN_STATES,
    day_number,
    during,
    in_scope,
    ref,
    utc_date,
)
from dispatcher.settings import HistorySettings

LISTED = 25
SHOWN_REFS = 10


def repeats_section(
    db: Connection, window: Window, scope: Scope, rule: HistorySettings, prefix: str
) -> Section:
    per_customer = _per_customer(window, scope, rule.repeat_contact_days)
    totals, repeaters, frequent = _ranked(db, per_customer, rule.repeat_contact_count)
    shown = {row[0] for row in repeaters} | {row[0] for row in frequent}
    who = _who(db, shown)
    open_cases = _open_cases(db, shown, prefix)
    section = Section(
        "repeats",
        "Repeat contacts",
        f"Who keeps contacting us? Customers with {rule.repeat_contact_count} or more "
        f"contacts within {rule.repeat_contact_days} days, and the most frequent contacters.",
    )
    section.tables = [
        _summary(totals, rule),
        _listed("repeat_contacters", "Repeat contacters", repeaters, who, open_cases),
        _listed("frequent_contacters", "Most frequent contacters", frequent, who, open_cases),
    ]
    section.tables[2].chart = Chart("barh", "customer", ("contacts",), "Contacts per customer")
    return section


def _ranked(
    db: Connection, per_customer: Subquery, threshold: int
) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """In one pass: the totals, the top repeat contacters, the most frequent contacters."""
    pc = per_customer.c
    repeats = pc.most >= threshold
    ranked = select(
        pc.customer,
        pc.contacts,
        pc.most,
        case((repeats, 1), else_=0).label("repeater"),
        func.row_number()
        .over(order_by=(pc.contacts.desc(), pc.most.desc(), pc.customer))
        .label("by_contacts"),
        func.row_number()
        .over(partition_by=repeats, order_by=(pc.most.desc(), pc.contacts.desc(), pc.customer))
        .label("by_repeats"),
        func.count().over().label("customers"),
        func.sum(pc.contacts).over().label("contacts_all"),
        func.sum(case((repeats, 1), else_=0)).over().label("repeaters"),
        func.sum(case((repeats, pc.contacts), else_=0)).over().label("their_contacts"),
    ).subquery()
    r = ranked.c
    query = (
        select(ranked)
        .where(or_(r.by_contacts <= LISTED, and_(r.repeater == 1, r.by_repeats <= LISTED)))
        .order_by(r.by_contacts)
    )
    rows = db.execute(query).all()
    totals = [0, 0, 0, 0]
    if rows:
        first = rows[0]
        totals = [
            int(v)
            for v in (first.customers, first.contacts_all, first.repeaters, first.their_contacts)
        ]
    frequent = [[r.customer, int(r.contacts), int(r.most)] for r in rows if r.by_contacts <= LISTED]
    repeaters = sorted(
        (
            [r.customer, int(r.contacts), int(r.most)]
            for r in rows
            if r.repeater == 1 and r.by_repeats <= LISTED
        ),
        key=lambda row: (-row[2], -row[1], row[0]),
    )
    return totals, repeaters, frequent


def _per_customer(window: Window, scope: Scope, days: int) -> Subquery:
    """(customer, contacts in the window, most contacts within `days` days) per customer."""
    day = utc_date(MESSAGES.c.received_at).label("day")
    source = MESSAGES
    if scope.by is not None:
        source = source.join(CASES, and_(CASES.c.id == MESSAGES.c.case_id, in_scope(scope)))
    # Counted per sender and day from the index alone first; merged senders are then added
    # to the customer they were merged into (far fewer rows to look up than messages).
    senders = (
        select(MESSAGES.c.customer_id, day, func.count().label("n"))
        .select_from(source)
        .where(during(MESSAGES.c.received_at, window))
        .group_by(MESSAGES.c.customer_id, day)
        .subquery()
    )
    member = aliased(CUSTOMERS)
    root = func.coalesce(member.c.merged_into, member.c.id).label("root")
    number = day_number(senders.c.day).label("day")
    daily = (
        select(root, number, func.sum(senders.c.n).label("n"))
        .select_from(senders.join(member, member.c.id == senders.c.customer_id))
        .group_by(root, number)
        .subquery()
    )
    rolling = select(
        daily.c.root,
        daily.c.n,
        func.sum(daily.c.n)
        .over(partition_by=daily.c.root, order_by=daily.c.day, range_=(-(days - 1), 0))
        .label("within"),
    ).subquery()
    return (
        select(
            rolling.c.root.label("customer"),
            func.sum(rolling.c.n).label("contacts"),
            func.max(rolling.c.within).label("most"),
        )
        .group_by(rolling.c.root)
        .subquery()
    )


def _who(db: Connection, ids: set[int]) -> dict[int, list[Any]]:
    """[name, external id, an address, tier] of each customer."""
    if not ids:
        return {}
    address = (
        select(
            IDENTITIES.c.customer_id,
            func.min(IDENTITIES.c.kind + literal(":") + IDENTITIES.c.address).label("address"),
        )
        .where(IDENTITIES.c.customer_id.in_(sorted(ids)))
        .group_by(IDENTITIES.c.customer_id)
        .subquery()
    )
    query = (
        select(
            CUSTOMERS.c.id,
            CUSTOMERS.c.name,
            CUSTOMERS.c.external_id,
            address.c.address,
            CUSTOMERS.c.tier,
        )
        .select_from(CUSTOMERS.outerjoin(address, address.c.customer_id == CUSTOMERS.c.id))
        .where(CUSTOMERS.c.id.in_(sorted(ids)))
    )
    return {row[0]: list(row[1:]) for row in db.execute(query)}


def _open_cases(db: Connection, ids: set[int], prefix: str) -> dict[int, tuple[int, str]]:
    """How many cases each customer has open now, and the references of the first few."""
    if not ids:
        return {}
    member = aliased(CUSTOMERS)
    root = func.coalesce(member.c.merged_into, member.c.id).label("root")
    numbered = (
        select(
            root,
            CASES.c.id,
            func.row_number().over(partition_by=root, order_by=CASES.c.id).label("n"),
            func.count().over(partition_by=root).label("of"),
        )
        .select_from(CASES.join(member, member.c.id == CASES.c.customer_id))
        .where(CASES.c.status.in_(OPEN_STATES), root.in_(sorted(ids)))
        .subquery()
    )
    query = (
        select(numbered.c.root, numbered.c.of, ref(prefix, numbered.c.id))
        .where(numbered.c.n <= SHOWN_REFS)
        .order_by(numbered.c.root, numbered.c.n)
    )
    found: dict[int, tuple[int, list[str]]] = {}
    for customer, count, reference in db.execute(query):
        found.setdefault(customer, (count, []))[1].append(reference)
    return {
        customer: (count, ", ".join(refs) + (", ..." if count > len(refs) else ""))
        for customer, (count, refs) in found.items()
    }


def _summary(totals: list[int], rule: HistorySettings) -> Table:
    customers, contacts, repeaters, theirs = totals
    share = round(100.0 * theirs / contacts, 1) if contacts else 0.0
    return Table(
        "repeat_contacts_summary",
        "Repeat contacts at a glance",
        ["customers", "contacts", "repeat_contacters", "their_contacts", "their_share_pct"],
        [[customers, contacts, repeaters, theirs, share]],
        note=f"A repeat contacter wrote {rule.repeat_contact_count} or more times within "
        f"{rule.repeat_contact_days} days (UTC days) at least once in the period.",
    )


def _listed(
    name: str,
    title: str,
    rows: list[list[int]],
    who: dict[int, list[Any]],
    open_cases: dict[int, tuple[int, str]],
) -> Table:
    listed = []
    for customer, contacts, most in rows:
        person, external, address, tier = who.get(customer, [None, None, None, None])
        count, refs = open_cases.get(customer, (0, ""))
        label = person or external or address or f"customer {customer}"
        listed.append([label, customer, external, address, tier, contacts, most, count, refs])
    return Table(
        name,
        title,
        [
            "customer",
            "customer_id",
            "external_id",
            "address",
            "tier",
            "contacts",
            "most_within_window",
            "open_cases",
            "open_case_refs",
        ],
        listed,
    )
