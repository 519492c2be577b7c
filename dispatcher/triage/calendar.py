"""Business calendars: is a moment inside business hours, and when is a target due when the
clock only runs while the business is open (timezone, weekly hours, holidays)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.triage.policy_spec import DURATION, WEEKDAYS, CalendarSpec

MAX_DAYS_AHEAD = 3660


class CalendarError(ValueError):
    """The calendar cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A target: whole business days, then open time (hours and minutes)."""

    days: int
    time: timedelta

    def __str__(self) -> str:
        hours, seconds = divmod(int(self.time.total_seconds()), 3600)
        parts = [f"{self.days}bd" if self.days else "", f"{hours}h" if hours else ""]
        return "".join(parts) + (f"{seconds // 60}m" if seconds else "") or "0m"


def parse_duration(text: str) -> Duration:
    """ "3bd", "4bh", "1h30m", "45m", "1bd4h" (validated by the spec already)."""
    match = DURATION.match(text)
    if not match:
        raise CalendarError(f"not a duration: {text!r}")
    days, hours, minutes = (int(group or 0) for group in match.groups())
    return Duration(days, timedelta(hours=hours, minutes=minutes))


class Calendar:
    """Opening hours per weekday in a timezone, closed on holidays; `always` never closes."""

    def __init__(self, name: str, spec: CalendarSpec | None) -> None:
        self.name = name
        self._always = spec is None
        self._zone = ZoneInfo("UTC")
        self._hours: dict[int, tuple[time, time]] = {}
        self._holidays: set[date] = set()
        self._spans: dict[date, tuple[datetime, datetime] | None] = {}
        if spec is not None:
            self._configure(spec)

    def _configure(self, spec: CalendarSpec) -> None:
        try:
            self._zone = ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"unknown timezone {spec.timezone!r}") from None
        for day, span in spec.hours.items():
            opens, closes = (_clock(part) for part in span.split("-"))
            if closes <= opens and closes != time(0):
                raise CalendarError(f"{day}: closes before it opens ({span})")
            self._hours[WEEKDAYS.index(day)] = (opens, closes)
        if not self._hours:
            raise CalendarError("no opening hours on any day")
        try:
            self._holidays = {date.fromisoformat(day) for day in spec.holidays}
        except ValueError as error:
            raise CalendarError(f"holidays: {error}") from None

    def is_open(self, moment: datetime) -> bool:
        if self._always:
            return True
        span = self._span(moment.astimezone(self._zone).date())
        return span is not None and span[0] <= moment < span[1]

    @property
    def zone(self) -> ZoneInfo | None:
        """The calendar's timezone; None for `always`."""
        return None if self._always else self._zone

    def local(self, moment: datetime) -> datetime:
        """The moment in the calendar's timezone (UTC around the clock)."""
        return moment.astimezone(self._zone)

    def due(self, start: datetime, target: Duration) -> datetime:
        """When a target counted from `start` falls due: business days first, then time."""
        return self.add(self.add_days(start, target.days), target.time)

    def add_days(self, start: datetime, days: int) -> datetime:
        """The same business moment `days` business days later: from the first open moment
        at or after `start`, that time of day on the days-th following open day (within
        that day's hours). Around the clock, a day is 24 hours."""
        if days == 0:
            return start
        if self._always:
            return start + timedelta(days=days)
        begin = self.add(start, timedelta(0))
        local = begin.astimezone(self._zone)
        day = local.date()
        for _ in range(days):
            day = self._next_open_day(day)
        span = self._span(day)
        assert span is not None
        moment = datetime.combine(day, local.time(), self._zone).astimezone(UTC)
        return min(max(moment, span[0]), span[1])

    def _next_open_day(self, day: date) -> date:
        for _ in range(MAX_DAYS_AHEAD):
            day += timedelta(days=1)
            if self._span(day) is not None:
                return day
        raise CalendarError(f"calendar {self.name} has no open day in ten years")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of open time after `start`."""
        if self._always:
            return start + duration
        remaining = duration
        moment = start.astimezone(UTC)
        day = moment.astimezone(self._zone).date()
        for _ in range(MAX_DAYS_AHEAD):
            span = self._span(day)
            if span is not None and moment < span[1]:
                moment = max(moment, span[0])
                available = span[1] - moment
                if remaining <= available:
                    return moment + remaining
                remaining -= available
            day += timedelta(days=1)
        raise CalendarError(f"calendar {self.name} has no open time in ten years")

    def _span(self, day: date) -> tuple[datetime, datetime] | None:
        """That day's opening hours in UTC, or None when closed (worked out once per day: the
        timezone arithmetic is most of the cost of a due time)."""
        if day not in self._spans:
            if len(self._spans) > MAX_DAYS_AHEAD:
                self._spans.clear()
            self._spans[day] = self._work_out_span(day)
        return self._spans[day]

    def _work_out_span(self, day: date) -> tuple[datetime, datetime] | None:
        hours = self._hours.get(day.weekday())
        if hours is None or day in self._holidays:
            return None
        opens = datetime.combine(day, hours[0], self._zone)
        close_day = day + timedelta(days=1) if hours[1] == time(0) else day
        closes = datetime.combine(close_day, hours[1], self._zone)
        return opens.astimezone(UTC), closes.astimezone(UTC)


def _clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    return time(0) if hours == 24 else time(hours, minutes)
