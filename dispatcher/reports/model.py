"""The report's figures: tables of rows under sections, the window they cover, the scope."""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

Period = Literal["month", "quarter"]
ChartKind = Literal["stacked", "heatmap", "barh", "percent"]


class ReportError(Exception):
    """The report cannot be made as asked (a bad window, an unknown zone); says why."""


@dataclass(frozen=True, slots=True)
class Window:
    """The time the report covers, `[since, until)` in UTC, and the zone days are told in."""

    since: datetime
    until: datetime
    period: Period
    zone: ZoneInfo

    @property
    def previous(self) -> Window:
        """The stretch of the same length just before: what trends compare with."""
        length = self.until - self.since
        return Window(self.since - length, self.since, self.period, self.zone)

    @property
    def days(self) -> list[date]:
        """Every local day the window touches, in order."""
        first = self.since.astimezone(self.zone).date()
        last = (self.until - timedelta(microseconds=1)).astimezone(self.zone).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def label(self) -> str:
        first = self.since.astimezone(self.zone).date()
        last = (self.until - timedelta(microseconds=1)).astimezone(self.zone).date()
        return f"{first.isoformat()} to {last.isoformat()} ({self.zone.key})"


def window_for(
    period: Period,
    since: date | None,
    until: date | None,
    zone: ZoneInfo,
    today: date,
) -> Window:
    """The window asked for: both dates (inclusive) as given; one of them and a period's
    length from it; neither: the last complete month or quarter before today."""
    if since is None and until is None:
        end = _period_start(today, period)
        start = _period_start(end - timedelta(days=1), period)
    elif since is None:
        assert until is not None
        end = until + timedelta(days=1)
        start = _step(end, period, -1)
    else:
        start = since
        end = until + timedelta(days=1) if until is not None else _step(since, period, 1)
    if end <= start:
        raise ReportError(f"--until ({end - timedelta(days=1)}) is before --since ({start})")
    return Window(_midnight(start, zone), _midnight(end, zone), period, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def _period_start(day: date, period: Period) -> date:
    month = day.month if period == "month" else day.month - (day.month - 1) % 3
    return date(day.year, month, 1)


def _step(day: date, period: Period, direction: int) -> date:
    months = (1 if period == "month" else 3) * direction
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, monthrange(year, month + 1)[1]))


@dataclass(frozen=True, slots=True)
class Scope:
    """Which cases the report is about: all, or one owner's (a product or a queue)."""

    by: Literal["product", "queue"] | None = None
    value: str | None = None

    def label(self) -> str:
        if self.by is None:
            return "all cases"
        return f"{self.by} {self.value if self.value is not None else '(none)'}"


@dataclass(frozen=True, slots=True)
class Chart:
    """How a table reads as a picture: `x` the label column(s) (joined with " / "), `y`
    the value column(s)."""

    kind: ChartKind
    x: str | tuple[str, ...]
    y: tuple[str, ...]
    title: str = ""


@dataclass(slots=True)
class Table:
    """One table of figures; `name` is its key in the CSV and JSON exports."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    chart: Chart | None = None
    note: str = ""

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass(slots=True)
class Section:
    """A part of the report: what it answers, and its tables."""

    key: str
    title: str
    question: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """Every section, and what the report covers."""

    window: Window
    scope: Scope
    generated_at: datetime
    store: str
    sections: list[Section]

    def tables(self) -> list[Table]:
        return [table for section in self.sections for table in section.tables]
