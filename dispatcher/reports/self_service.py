"""Self-service: the knowledge-base articles the contact form showed before a message was
sent, the contacts they answered (deflected: no case opened), the articles suggested with
forwarded cases, and what the customers who were helped said.

Showings, deflections and suggestions are kept as counters per article and UTC day
(`dispatcher.knowledge.stats`): the period's figures are those of its days. The answers are
read from the deflections themselves, at the minute.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import Connection, case, func, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import DEFLECTIONS, KB_COUNTS, change, during

LISTED = 25
KINDS = ("shown", "accepted", "suggested")
FIGURES = {
    "shown": "articles shown on the contact form",
    "accepted": "contacts deflected (an article answered them)",
    "suggested": "articles suggested with forwarded cases",
}

Counts = dict[str, dict[tuple[str, bool], int]]
"""article: (kind, current): count."""


def self_service_section(db: Connection, window: Window, scope: Scope) -> Section:
    section = Section(
        "self_service",
        "Self-service",
        "Which questions did the knowledge base answer before they became cases?",
    )
    if scope.by is not None:
        section.notes.append(
            "Self-service answers belong to no product or queue: they are in the report of "
            "all cases."
        )
        return section
    counts = _counts(db, window)
    section.tables = [_summary(counts), _articles(counts), _answers(db, window)]
    section.notes.append(
        "Counted per UTC day, over the days of the period. A contact is deflected when the "
        "customer said an article solved it (no case was opened)."
    )
    return section


def _days(window: Window) -> tuple[date, date]:
    return window.days[0], window.days[-1]


def _counts(db: Connection, window: Window) -> Counts:
    """Every article's counts of each kind, in the period and in the previous one."""
    c = KB_COUNTS.c
    first, last = _days(window)
    current = case((c.day >= first, 1), else_=0).label("current")
    query = (
        select(c.article_id, c.kind, current, func.sum(c.count))
        .where(c.day >= _days(window.previous)[0], c.day <= last, c.kind.in_(KINDS))
        .group_by(c.article_id, c.kind, current)
    )
    found: Counts = defaultdict(dict)
    for article, kind, now, count in db.execute(query):
        found[article][kind, bool(now)] = int(count)
    return found


def _summary(counts: Counts) -> Table:
    totals: dict[tuple[str, bool], int] = defaultdict(int)
    for figures in counts.values():
        for key, count in figures.items():
            totals[key] += count
    rows = []
    for kind in KINDS:
        now, before = totals[kind, True], totals[kind, False]
        rows.append([FIGURES[kind], now, before, change(now, before)])
    return Table(
        "self_service_summary",
        "Self-service in the period, against the previous period",
        ["figure", "current", "previous", "change_pct"],
        rows,
    )


def _articles(counts: Counts) -> Table:
    rows = []
    for article, figures in counts.items():
        shown, deflected = figures.get(("shown", True), 0), figures.get(("accepted", True), 0)
        suggested = figures.get(("suggested", True), 0)
        before = figures.get(("accepted", False), 0)
        if shown or deflected or suggested:
            share = round(100.0 * deflected / shown, 1) if shown else None
            rows.append(
                [article, shown, deflected, share, suggested, before, change(deflected, before)]
            )
    rows.sort(key=lambda row: (-row[2], -row[1], -row[4], row[0]))
    return Table(
        "self_service_articles",
        f"Articles that answered customers (the {LISTED} deflecting most)",
        [
            "article",
            "shown",
            "deflected",
            "deflected_pct",
            "suggested_with_cases",
            "previous_deflected",
            "change_pct",
        ],
        rows[:LISTED],
        chart=Chart("barh", "article", ("deflected",), "Contacts deflected per article"),
    )


def _answers(db: Connection, window: Window) -> Table:
    d = DEFLECTIONS.c
    query = (
        select(d.at, d.article_id, d.language, d.answer)
        .where(during(d.at, window), d.answer.is_not(None))
        .order_by(d.at.desc(), d.id.desc())
        .limit(LISTED)
    )
    return Table(
        "self_service_answers",
        "What customers helped by an article said (the latest)",
        ["at", "article", "language", "answer"],
        [list(row) for row in db.execute(query)],
    )
