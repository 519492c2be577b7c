"""Deduplication levels 2 and 3: finding the case a message belongs to, with the reason.

Level 1 (same channel and source id) is the unique key of `messages` (see `decide`). Level 2:
the same customer sent the same normalised content within the duplicate window. Level 3: a
follow-up, found by a case reference, email threading headers, or a message on a
conversation channel within the conversation window of an open case. Both look only at what
the batch loaded (`known`), kept current while the batch is decided.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatcher.known import CaseState, Group, Known, case_number, replied_to
from dispatcher.settings import DedupSettings
from normalizer.model import CaseOpen


@dataclass(frozen=True, slots=True)
class Match:
    """An earlier case this message belongs to, how it was found, and whether the sender may
    write into it (its customer or a participant)."""

    case: CaseState
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
    known: Known, group: Group, print_: str | None, received_at: datetime, window: timedelta
) -> Match | None:
    """Level 2: the first message of this customer with the same content within the window."""
    timeline = group.prints.get(print_) if print_ is not None else None
    first = timeline.first_within(received_at, window) if timeline is not None else None
    if first is None:
        return None
    when = f"{first.received_at:%Y-%m-%d %H:%M}"
    how = f"same content as the customer's {first.channel} message of {when}"
    return Match(known.cases[first.case_id], 2, how)


def follow_up_of(
    known: Known, group: Group, message: CaseOpen, settings: DedupSettings, prefix: str
) -> Match | None:
    """Level 3: a case reference, then threading headers, then the conversation window."""
    return (
        _by_reference(known, group, message, prefix)
        or _by_thread(known, group, message)
        or _by_conversation(known, group, message, settings)
    )


def _by_reference(known: Known, group: Group, message: CaseOpen, prefix: str) -> Match | None:
    number = case_number(message.thread.case_ref, prefix)
    found = known.cases.get(number) if number is not None else None
    if found is None:
        return None
    how = f"case reference {(message.thread.case_ref or '').strip()}"
    return Match(found, 3, how, known.may_write(found, group))


def _by_thread(known: Known, group: Group, message: CaseOpen) -> Match | None:
    if message.channel != "email":
        return None
    for source_id in replied_to(message.thread):
        case_id = known.threads.get(source_id)  # In-Reply-To first, then the references
        if case_id is not None:
            found = known.cases[case_id]
            how = f"email thread (replies to <{source_id}>)"
            return Match(found, 3, how, known.may_write(found, group))
    return None


def _by_conversation(
    known: Known, group: Group, message: CaseOpen, settings: DedupSettings
) -> Match | None:
    if message.channel not in settings.conversation_channels:
        return None
    timeline = group.conversations.get((message.channel, message.thread.conversation_key))
    if timeline is None:
        return None
    window = timedelta(minutes=settings.conversation_window_min)
    received = message.received_at
    latest = timeline.latest_within(received, window, lambda s: known.cases[s.case_id].is_open)
    if latest is None:
        return None
    minutes = abs((received - latest.received_at).total_seconds()) / 60
    how = f"{message.channel} conversation, {minutes:.0f} min after the case's last message"
    return Match(known.cases[latest.case_id], 3, how)
