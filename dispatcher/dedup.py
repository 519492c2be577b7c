"""Deduplication levels 2 and 3: finding the case a message belongs to, with the reason.

Level 1 (same channel and source id) is the unique key of `messages` (see `decide`). Level 2:
the same customer sent the same normalised content within the duplicate window. Level 3: a
follow-up, found by a case reference, email threading headers, or a message on a
conversation channel within the conversation window of an open case.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from dispatcher.settings import DedupSettings
from dispatcher.tables import Case, CaseParticipant, Message
from normalizer.model import CaseOpen

OPEN_STATES = ("open", "assigned")


@dataclass(frozen=True, slots=True)
class Match:
    """An earlier case this message belongs to, how it was found, and whether the sender may
    write into it (its customer or a participant)."""

    case: Case
    level: int
    how: str
    allowed: bool = True


def fingerprint(message: CaseOpen) -> str | None:
    """sha256 of the content as a person reads it: text (else subject), case and spacing
    folded, plus attachment hashes (for a file the source only links to, its URL); None when
    there is no content to compare."""
    words = " ".join(unicodedata.normalize("NFKC", message.text or message.subject or "").split())
    hashes = sorted(a.sha256 or a.url or a.name for a in message.attachments)
    if not words and not hashes:
        return None
    content = "\n".join([words.casefold(), *hashes])
    return hashlib.sha256(content.encode()).hexdigest()


def duplicate_of(
    session: Session,
    group: Sequence[int],
    print_: str | None,
    received_at: datetime,
    this: int,
    window: timedelta,
) -> Match | None:
    """Level 2: the first message of this customer with the same content within the window."""
    if print_ is None:
        return None
    first = session.execute(
        select(Message.case_id, Message.channel, Message.received_at)
        .where(
            Message.customer_id.in_(group),
            Message.fingerprint == print_,
            Message.id != this,
            Message.case_id.is_not(None),
            Message.received_at >= received_at - window,
            Message.received_at <= received_at + window,
        )
        .order_by(Message.received_at, Message.id)
        .limit(1)
    ).first()
    if first is None:
        return None
    when = f"{first.received_at:%Y-%m-%d %H:%M}"
    how = f"same content as the customer's {first.channel} message of {when}"
    return Match(session.get_one(Case, first.case_id), 2, how)


def follow_up_of(
    session: Session,
    message: CaseOpen,
    group: Sequence[int],
    settings: DedupSettings,
    prefix: str,
) -> Match | None:
    """Level 3: a case reference, then threading headers, then the conversation window."""
    return (
        _by_reference(session, message, group, prefix)
        or _by_thread(session, message, group)
        or _by_conversation(session, message, group, settings)
    )


def _by_reference(
    session: Session, message: CaseOpen, group: Sequence[int], prefix: str
) -> Match | None:
    ref = (message.thread.case_ref or "").strip()
    number = ref[len(prefix) :] if ref.upper().startswith(prefix.upper()) else ""
    if not number.isdigit():
        return None
    found = session.get(Case, int(number))
    if found is None:
        return None
    return Match(found, 3, f"case reference {ref}", _may_write(session, found, group))


def _by_thread(session: Session, message: CaseOpen, group: Sequence[int]) -> Match | None:
    thread = message.thread
    replied = [thread.in_reply_to] if thread.in_reply_to else []
    ids = list(dict.fromkeys([*replied, *thread.references]))
    if message.channel != "email" or not ids:
        return None
    rows = session.execute(
        select(Message.source_id, Message.case_id).where(
            Message.channel == "email", Message.source_id.in_(ids), Message.case_id.is_not(None)
        )
    ).all()
    by_id = {row.source_id: row.case_id for row in rows}
    for source_id in ids:  # In-Reply-To first, then the references in order
        if source_id in by_id:
            found = session.get_one(Case, by_id[source_id])
            how = f"email thread (replies to <{source_id}>)"
            return Match(found, 3, how, _may_write(session, found, group))
    return None


def _by_conversation(
    session: Session, message: CaseOpen, group: Sequence[int], settings: DedupSettings
) -> Match | None:
    if message.channel not in settings.conversation_channels:
        return None
    window = timedelta(minutes=settings.conversation_window_min)
    key = message.thread.conversation_key
    received = message.received_at
    row = session.execute(
        select(Message.case_id, Message.received_at)
        .join(Case, Case.id == Message.case_id)
        .where(
            Message.customer_id.in_(group),
            Message.channel == message.channel,
            Message.conversation_key.is_(None) if key is None else Message.conversation_key == key,
            Message.received_at >= received - window,
            Message.received_at <= received + window,
            Case.status.in_(OPEN_STATES),
        )
        .order_by(Message.received_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    minutes = abs((received - row.received_at).total_seconds()) / 60
    how = f"{message.channel} conversation, {minutes:.0f} min after the case's last message"
    return Match(session.get_one(Case, row.case_id), 3, how)


def _may_write(session: Session, target: Case, group: Sequence[int]) -> bool:
    """The sender is the case's customer (or merged with it) or a participant."""
    if target.customer_id in group:
        return True
    return bool(
        session.scalar(
            select(
                exists().where(
                    and_(
                        CaseParticipant.case_id == target.id,
                        CaseParticipant.customer_id.in_(group),
                    )
                )
            )
        )
    )
