"""How often each article was suggested with a case, shown on the contact form and accepted
as the answer: counters per article, kind and UTC day, added to with one statement a batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.tables import Deflection, KbCount

KINDS = ("suggested", "shown", "accepted")
COUNTS_T = KbCount.__table__


def add_counts(session: Session, counts: Counter[tuple[str, str, date]]) -> None:
    """Add (article, kind, day) counts: one upsert for all of them."""
    if not counts:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement: Any = dialect.insert(COUNTS_T)
    statement = statement.on_conflict_do_update(
        index_elements=["article_id", "kind", "day"],
        set_={"count": COUNTS_T.c.count + statement.excluded.count},
    )
    rows = [
        {"article_id": article, "kind": kind, "day": day, "count": count}
        for (article, kind, day), count in sorted(counts.items())
    ]
    session.execute(statement, rows)


@dataclass(frozen=True, slots=True)
class ArticleStats:
    article_id: str
    suggested: int
    shown: int
    accepted: int


def article_stats(session: Session, since: datetime | None = None) -> list[ArticleStats]:
    """Per article, the counts of each kind (since a day, if given), most suggested first."""
    c = COUNTS_T.c
    query = select(c.article_id, c.kind, func.sum(c.count)).group_by(c.article_id, c.kind)
    if since is not None:
        query = query.where(c.day >= since.date())
    totals: dict[str, dict[str, int]] = {}
    for article, kind, count in session.execute(query):
        totals.setdefault(article, dict.fromkeys(KINDS, 0))[kind] = int(count)
    found = [ArticleStats(a, t["suggested"], t["shown"], t["accepted"]) for a, t in totals.items()]
    return sorted(found, key=lambda s: (-s.suggested, -s.shown, s.article_id))


def recent_deflections(session: Session, limit: int = 20) -> list[Deflection]:
    """The latest deflected contacts, newest first."""
    rows = session.scalars(select(Deflection).order_by(Deflection.at.desc()).limit(limit))
    return list(rows)


def utc_day(at: datetime) -> date:
    return (at - (at.utcoffset() or timedelta())).date()
