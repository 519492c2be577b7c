"""The customer and history attached to every forwarded case, read from the store.

"Before" is measured from the message's own `received_at`, and the message itself is left out,
so that the same message gets the same history whichever dispatcher handles it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dispatcher.settings import HistorySettings
from dispatcher.tables import Case, Customer, Message
from normalizer.model import CaseBrief, ContactCounts, CustomerInfo, History

WINDOWS_DAYS = (7, 30, 90)
OPEN_STATES = ("open", "assigned")
MAX_OPEN_CASES = 20


def customer_info(customer: Customer) -> CustomerInfo:
    """The directory's view of a customer (a provisional one: `known` false)."""
    return CustomerInfo(
        id=customer.id,
        external_id=customer.external_id,
        name=customer.name,
        organisation=customer.organisation,
        tier=customer.tier,
        is_customer=customer.is_customer,
        known=customer.known,
    )


def brief(row: Case, prefix: str) -> CaseBrief:
    return CaseBrief(
        id=f"{prefix}{row.id}",
        status=row.status,  # type: ignore[arg-type]
        queue=row.queue,
        priority=row.priority,
        channel=row.channel,  # type: ignore[arg-type]
        subject=row.subject,
        opened_at=row.opened_at,
    )


def history(
    session: Session,
    group: Sequence[int],
    now: datetime,
    exclude_message: int,
    settings: HistorySettings,
    prefix: str,
) -> History:
    """Open cases, contact counts, the last queue, recent cases and the repeat-contact flag."""
    open_cases = session.scalars(
        select(Case)
        .where(Case.customer_id.in_(group), Case.status.in_(OPEN_STATES))
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .limit(MAX_OPEN_CASES)
    ).all()
    recent = session.scalars(
        select(Case)
        .where(Case.customer_id.in_(group))
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .limit(settings.recent_cases)
    ).all()
    last_queue = session.scalars(
        select(Case.queue)
        .where(Case.customer_id.in_(group))
        .order_by(Case.last_message_at.desc(), Case.id.desc())
        .limit(1)
    ).first()
    windows = sorted({*WINDOWS_DAYS, settings.repeat_contact_days})
    counts = _contacts(session, group, now, exclude_message, windows)
    repeats = counts[settings.repeat_contact_days].total
    repeat = repeats >= settings.repeat_contact_count
    return History(
        open_cases=[brief(row, prefix) for row in open_cases],
        contacts=[counts[days] for days in WINDOWS_DAYS],
        last_queue=last_queue,
        recent_cases=[brief(row, prefix) for row in recent],
        repeat_contact=repeat,
        repeat_reason=(
            f"{repeats} contacts in the last {settings.repeat_contact_days} days "
            f"(threshold {settings.repeat_contact_count})"
            if repeat
            else None
        ),
    )


def _contacts(
    session: Session,
    group: Sequence[int],
    now: datetime,
    exclude_message: int,
    windows: Sequence[int],
) -> dict[int, ContactCounts]:
    """Messages by channel in each window, counted in one query."""
    since = {days: now - timedelta(days=days) for days in windows}
    columns = [
        func.sum(case((Message.received_at >= since[days], 1), else_=0)).label(f"d{days}")
        for days in windows
    ]
    rows = session.execute(
        select(Message.channel, *columns)
        .where(
            Message.customer_id.in_(group),
            Message.received_at >= since[max(windows)],
            Message.received_at <= now,
            Message.id != exclude_message,
        )
        .group_by(Message.channel)
    ).all()
    result = {}
    for days in windows:
        label = f"d{days}"
        by_channel = {row.channel: int(getattr(row, label)) for row in rows if getattr(row, label)}
        result[days] = ContactCounts(
            days=days, total=sum(by_channel.values()), by_channel=dict(sorted(by_channel.items()))
        )
    return result
