"""When customers write, and through which channel: contacts (messages kept: new cases,
duplicates and follow-ups) by channel per day, and by hour of the week.

SQL counts them per channel and UTC hour; each hour's count is then told in the report's
zone (a day or an hour of the week is a local one), which no SQLite function can do.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import Connection, FromClause, func, select

from dispatcher.reports.model import Chart, Scope, Section, Table, Window
from dispatcher.reports.sql import CASES, MESSAGES, change, during, in_scope, utc_hour

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def contacts_section(db: Connection, window: Window, scope: Scope) -> Section:
    hours = _per_channel_and_hour(db, window, scope)
    previous = _per_channel(db, window.previous, scope)
    channels = sorted({channel for channel, _ in hours} | set(previous))
    by_day: Counter[tuple[str, str]] = Counter()
    by_hour_of_week: Counter[tuple[int, int]] = Counter()
    for (channel, hour), count in hours.items():
        local = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(window.zone)
        by_day[local.date().isoformat(), channel] += count
        by_hour_of_week[local.weekday(), local.hour] += count
    section = Section(
        "contacts",
        "Contacts",
        "When do customers write, and through which channel?",
    )
    section.tables = [
        _by_channel(hours, previous, channels),
        _by_day(by_day, window, channels),
        _by_hour_of_week(by_hour_of_week),
    ]
    return section


def _per_channel_and_hour(db: Connection, window: Window, scope: Scope) -> Counter[tuple[str, str]]:
    hour = utc_hour(MESSAGES.c.received_at)
    query = (
        select(MESSAGES.c.channel, hour, func.count())
        .select_from(_scoped(scope))
        .where(during(MESSAGES.c.received_at, window))
        .group_by(MESSAGES.c.channel, hour)
    )
    return Counter({(channel, at): count for channel, at, count in db.execute(query)})


def _per_channel(db: Connection, window: Window, scope: Scope) -> dict[str, int]:
    query = (
        select(MESSAGES.c.channel, func.count())
        .select_from(_scoped(scope))
        .where(during(MESSAGES.c.received_at, window))
        .group_by(MESSAGES.c.channel)
    )
    return {channel: count for channel, count in db.execute(query)}


def _scoped(scope: Scope) -> FromClause:
    """The messages, joined to their cases when the report is one owner's."""
    if scope.by is None:
        return MESSAGES
    return MESSAGES.join(CASES, (CASES.c.id == MESSAGES.c.case_id) & in_scope(scope))


def _by_channel(
    hours: Counter[tuple[str, str]], previous: dict[str, int], channels: list[str]
) -> Table:
    totals: Counter[str] = Counter()
    for (channel, _), count in hours.items():
        totals[channel] += count
    everything = sum(totals.values())
    rows = [
        [
            channel,
            totals[channel],
            round(100.0 * totals[channel] / everything, 1) if everything else 0.0,
            previous.get(channel, 0),
            change(totals[channel], previous.get(channel, 0)),
        ]
        for channel in sorted(channels, key=lambda c: (-totals[c], c))
    ]
    rows.append(
        [
            "total",
            everything,
            100.0 if everything else 0.0,
            sum(previous.values()),
            change(everything, sum(previous.values())),
        ]
    )
    return Table(
        "contacts_by_channel",
        "Contacts by channel, against the previous period",
        ["channel", "contacts", "share_pct", "previous", "change_pct"],
        rows,
    )


def _by_day(by_day: Counter[tuple[str, str]], window: Window, channels: list[str]) -> Table:
    rows = []
    for day in window.days:
        counts = [by_day[day.isoformat(), channel] for channel in channels]
        rows.append([day.isoformat(), *counts, sum(counts)])
    return Table(
        "contacts_by_day",
        "Contacts per day, by channel",
        ["day", *channels, "total"],
        rows,
        chart=Chart("stacked", "day", tuple(channels), "Contacts per day"),
    )


def _by_hour_of_week(counts: Counter[tuple[int, int]]) -> Table:
    rows = [[name, *(counts[day, hour] for hour in range(24))] for day, name in enumerate(WEEKDAYS)]
    return Table(
        "contacts_by_hour_of_week",
        "Contacts by hour of the week (local time)",
        ["weekday", *(f"{hour:02d}" for hour in range(24))],
        rows,
        chart=Chart(
            "heatmap", "weekday", tuple(f"{hour:02d}" for hour in range(24)), "When customers write"
        ),
    )
