"""The history attached to every forwarded case, from what the batch knows of the customer.

History is what was known before the message: its open cases, its latest cases, the queue it
last wrote to, and how often it wrote in the last 7, 30 and 90 days. Contacts are counted by
UTC calendar day from the customer's counters ("the last 7 days" are the message's own day and
the six before), and the message itself is left out.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from dispatcher.known import CaseState, Group, Known, utc_day
from dispatcher.settings import HistorySettings
from normalizer.model import OPEN_CASES_LISTED, CaseBrief, ContactCounts, History

WINDOWS_DAYS = (7, 30, 90)


def longest_window_days(settings: HistorySettings) -> int:
    """How many days of counters history needs."""
    return max(*WINDOWS_DAYS, settings.repeat_contact_days)


def brief(case: CaseState, prefix: str) -> CaseBrief:
    """The case in a line; made once per case and batch, as many messages show the same."""
    if case.shown is None:
        case.shown = CaseBrief.model_construct(
            id=f"{prefix}{case.id}",
            status=case.status,
            queue=case.queue,
            priority=case.priority,
            channel=case.channel,
            subject=case.subject,
            opened_at=case.opened_at,
        )
    return case.shown


def history(
    known: Known, group: Group, at: datetime, settings: HistorySettings, prefix: str
) -> History:
    """Open cases, contact counts, the last queue, recent cases and the repeat-contact flag."""
    cases = [known.cases[case_id] for case_id in group.case_ids]
    newest_first = sorted(cases, key=lambda c: (c.opened_at, c.id), reverse=True)
    open_cases = [case for case in newest_first if case.is_open][:OPEN_CASES_LISTED]
    last = max(cases, key=lambda c: (c.last_message_at, c.id), default=None)
    counts = contacts(group, at, sorted({*WINDOWS_DAYS, settings.repeat_contact_days}))
    repeats = counts[settings.repeat_contact_days].total
    repeat = repeats >= settings.repeat_contact_count
    return History.model_construct(
        open_cases=[brief(case, prefix) for case in open_cases],
        contacts=[counts[days] for days in WINDOWS_DAYS],
        last_queue=last.queue if last is not None else None,
        recent_cases=[brief(case, prefix) for case in newest_first[: settings.recent_cases]],
        repeat_contact=repeat,
        repeat_reason=(
            f"{repeats} contacts in the last {settings.repeat_contact_days} days "
            f"(threshold {settings.repeat_contact_count})"
            if repeat
            else None
        ),
    )


def contacts(group: Group, at: datetime, windows: list[int]) -> dict[int, ContactCounts]:
    """Messages by channel in each window of days, from the group's daily counters."""
    today = utc_day(at)
    by_window: dict[int, Counter[str]] = {days: Counter() for days in windows}
    for (channel, day), count in group.contacts.items():
        age = (today - day).days
        if age < 0 or count <= 0:
            continue
        for days, by_channel in by_window.items():
            if age < days:
                by_channel[channel] += count
    return {
        days: ContactCounts.model_construct(
            days=days, total=by_channel.total(), by_channel=dict(sorted(by_channel.items()))
        )
        for days, by_channel in by_window.items()
    }
