"""One report: every section computed in one read-only snapshot of the store."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from dispatcher.database import shown_url
from dispatcher.reports.cases import cases_section, count_cases
from dispatcher.reports.closures import closures_section
from dispatcher.reports.contacts import contacts_section
from dispatcher.reports.escalations import escalations_section
from dispatcher.reports.incidents import incidents_section
from dispatcher.reports.model import Report, Scope, Window
from dispatcher.reports.problems import problems_section
from dispatcher.reports.repeats import repeats_section
from dispatcher.reports.responses import responses_section
from dispatcher.reports.self_service import self_service_section
from dispatcher.reports.sql import CASES, during, snapshot
from dispatcher.settings import DispatcherSettings


def build(
    engine: Engine,
    url: str,
    window: Window,
    scope: Scope,
    settings: DispatcherSettings,
    now: datetime | None = None,
) -> Report:
    """The report for `window` and `scope`, as the store is at one moment."""
    now = now or datetime.now(UTC)
    prefix = settings.case_ref_prefix
    with snapshot(engine) as db:
        counts = count_cases(db, window, scope)
        sections = [
            contacts_section(db, window, scope),
            cases_section(db, window, scope, counts),
            problems_section(db, window, scope),
            repeats_section(db, window, scope, settings.history, prefix),
            responses_section(db, window, scope, now, prefix),
            closures_section(db, window, scope, prefix),
            escalations_section(db, window, scope, counts, prefix),
            incidents_section(db, window, scope),
            self_service_section(db, window, scope),
        ]
    return Report(window, scope, now, shown_url(url), sections)


def owners(engine: Engine, window: Window, by: str) -> list[str | None]:
    """The products (or queues) that have cases in the window: one report each."""
    column = CASES.c[by]
    query = select(column).where(during(CASES.c.opened_at, window)).group_by(column)
    with snapshot(engine) as db:
        found = [value for (value,) in db.execute(query)]
    return sorted(found, key=lambda value: (value is None, value or ""))
