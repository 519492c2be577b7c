"""What the store knows about one batch's customers, loaded with one query per kind of fact.

The dispatcher decides a batch in memory: it loads, for every customer the batch touches
(each with the customers merged into it, a "group"), the cases that history and dedup can
name, the contact counters, and the earlier messages a duplicate or a follow-up could match;
then it decides message after message, each decision updating this state, so that the
second message of a customer in a batch sees the first exactly as if they had come in two
batches. The customers' rows are locked before any of this is read (see `identity`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from dispatcher.database import bound_pairs, pairs_in
from dispatcher.tables import Case, CaseParticipant, ContactCount, Customer, Message
from normalizer.model import OPEN_CASES_LISTED, CaseBrief, CaseOpen, CustomerInfo, Thread

OPEN_STATES = ("open", "assigned")
CASES = Case.__table__
MESSAGES = Message.__table__
CASE_COLUMNS = tuple(
    CASES.c[name]
    for name in (
        "id",
        "customer_id",
        "status",
        "queue",
        "priority",
        "channel",
        "subject",
        "opened_at",
        "last_message_at",
        "closed_at",
        "linked_case_id",
    )
)
"""What a batch reads of a case (`CaseState`): not its report facts and times, whose
conversion on every row read cost more than the query."""


@dataclass(slots=True)
class CaseState:
    """A case as the batch sees it; `new` ones are inserted and `changed` ones updated at
    the end of the batch."""

    id: int
    customer_id: int
    status: str
    queue: str
    priority: str | None
    channel: str
    subject: str | None
    opened_at: datetime
    last_message_at: datetime
    closed_at: datetime | None
    linked_case_id: int | None = None
    facts: dict[str, object] | None = None
    """A new case's triage facts and topic (`bucket`, ..., `topic`), written with it."""
    new: bool = False
    changed: bool = False
    reopened: bool = False
    shown: CaseBrief | None = None
    """The case in a customer's history, made once a batch (see `history.brief`)."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    def reopen(self) -> None:
        self.status, self.closed_at, self.reopened, self.shown = "open", None, True, None


@dataclass(frozen=True, slots=True)
class Seen:
    """An earlier message of a group that a later one may duplicate or continue."""

    received_at: datetime
    order: int
    case_id: int
    channel: str
    conversation_key: str | None = None


def _arrival(seen: Seen) -> tuple[datetime, int]:
    return seen.received_at, seen.order


def _received(seen: Seen) -> datetime:
    return seen.received_at


@dataclass(slots=True)
class Timeline:
    """A group's earlier messages of one kind (one content; one conversation), in order of
    arrival, so that a window of time is found by bisection: a sender flooding a channel has
    thousands of them within the window, and each of its messages would otherwise go through
    all of them."""

    seen: list[Seen] = field(default_factory=list)

    def add(self, seen: Seen) -> None:
        insort(self.seen, seen, key=_arrival)  # at the end, but for a late arrival

    def first_within(self, at: datetime, width: timedelta) -> Seen | None:
        """The earliest received within `width` of `at`."""
        seen = self.seen
        index = bisect_left(seen, at - width, key=_received)
        if index < len(seen) and seen[index].received_at <= at + width:
            return seen[index]
        return None

    def latest_within(
        self, at: datetime, width: timedelta, accepted: Callable[[Seen], bool]
    ) -> Seen | None:
        """The latest received within `width` of `at` that is `accepted`."""
        seen = self.seen
        since = at - width
        for index in range(bisect_right(seen, at + width, key=_received) - 1, -1, -1):
            if seen[index].received_at < since:
                break
            if accepted(seen[index]):
                return seen[index]
        return None


@dataclass(slots=True)
class Group:
    """A root customer with its merged members: whose history a message gets."""

    root: int
    members: list[int]
    customer: CustomerInfo
    case_ids: set[int] = field(default_factory=set)
    contacts: Counter[tuple[str, date]] = field(default_factory=Counter)
    prints: dict[str, Timeline] = field(default_factory=lambda: defaultdict(Timeline))
    """By fingerprint."""
    conversations: dict[tuple[str, str | None], Timeline] = field(
        default_factory=lambda: defaultdict(Timeline)
    )
    """By channel and conversation key."""


@dataclass(slots=True)
class Known:
    """Everything loaded for a batch, and kept up to date while it is decided."""

    groups: dict[int, Group]
    cases: dict[int, CaseState]
    threads: dict[str, int]
    """Email Message-IDs of earlier messages, to the case each joined."""
    participants: set[tuple[int, int]]
    """(case id, customer id) of the people the helpdesk let write into a case."""

    def may_write(self, case: CaseState, group: Group) -> bool:
        """The sender is the case's customer (or merged with it) or a participant."""
        if case.customer_id in group.members:
            return True
        return any((case.id, member) in self.participants for member in group.members)


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the batch's messages could match, so that only that is loaded."""

    since: datetime
    until: datetime
    fingerprints: set[str]
    conversation_channels: set[str]
    case_numbers: set[int]
    email_ids: set[str]
    first_day: date


def load(session: Session, roots: Iterable[int], wanted: Wanted, windows: Windows) -> Known:
    """Load the facts of these root customers' groups (each root with the customers merged
    into it) for the batch."""
    groups = {root: [root] for root in sorted(set(roots))}
    info: dict[int, CustomerInfo] = {}
    for row in session.execute(_GROUPS, {"roots": list(groups)}):
        if row.id in groups:
            info[row.id] = customer_info(row)
        else:
            groups[row.merged_into].append(row.id)
    members = sorted({member for group in groups.values() for member in group})
    owner = {member: root for root, group in groups.items() for member in group}
    known = Known(
        groups={
            root: Group(root, group, info.get(root, CustomerInfo.model_construct()))
            for root, group in groups.items()
        },
        cases={},
        threads={},
        participants=set(),
    )
    for case in _group_cases(session, members, windows.recent_cases):
        _keep(known, case, owner)
    _counters(session, known, members, owner, wanted.first_day)
    case_ids = _earlier_messages(session, known, members, owner, wanted, windows)
    case_ids |= wanted.case_numbers
    case_ids |= _threads(session, known, wanted.email_ids)
    _cases_by_id(session, known, case_ids - known.cases.keys(), owner)
    foreign = [n for n in (wanted.case_numbers | set(known.threads.values())) if n in known.cases]
    _participants(session, known, foreign)
    return known


@dataclass(frozen=True, slots=True)
class Windows:
    """How far back the batch looks: recent cases, duplicates and conversations."""

    recent_cases: int
    duplicate: timedelta
    conversation: timedelta


def customer_info(row: object) -> CustomerInfo:
    """The directory's view of a customer row (a provisional one: `known` false)."""
    return CustomerInfo.model_construct(
        id=row.id,  # type: ignore[attr-defined]
        external_id=row.external_id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        organisation=row.organisation,  # type: ignore[attr-defined]
        tier=row.tier,  # type: ignore[attr-defined]
        is_customer=row.is_customer,  # type: ignore[attr-defined]
        known=row.known,  # type: ignore[attr-defined]
    )


def _group_cases(session: Session, members: Sequence[int], recent: int) -> Iterable[object]:
    """Of each of these customers: the latest open cases a history can list, the `recent`
    latest cases, and the one last written to. Not every open case: a sender that opens a
    case with each message (an alerting system) would make every batch with it read them
    all, and each of its messages go through them."""
    return session.execute(
        _GROUP_CASES, {"members": members, "recent": recent, "shown": OPEN_CASES_LISTED}
    )


def _group_cases_statement() -> Select[Any]:
    """Built once: a subquery's columns are costly to make, and every batch asks this."""
    by_opened = func.row_number().over(
        partition_by=CASES.c.customer_id, order_by=(CASES.c.opened_at.desc(), CASES.c.id.desc())
    )
    by_open = func.row_number().over(
        partition_by=(CASES.c.customer_id, CASES.c.status.in_(OPEN_STATES)),
        order_by=(CASES.c.opened_at.desc(), CASES.c.id.desc()),
    )
    by_message = func.row_number().over(
        partition_by=CASES.c.customer_id,
        order_by=(CASES.c.last_message_at.desc(), CASES.c.id.desc()),
    )
    ranked = (
        select(
            *CASE_COLUMNS,
            by_opened.label("by_opened"),
            by_open.label("by_open"),
            by_message.label("by_message"),
        )
        .where(CASES.c.customer_id.in_(bindparam("members", expanding=True)))
        .subquery()
    )
    return select(ranked).where(
        or_(
            and_(ranked.c.status.in_(OPEN_STATES), ranked.c.by_open <= bindparam("shown")),
            ranked.c.by_opened <= bindparam("recent"),
            ranked.c.by_message == 1,
        )
    )


_GROUP_CASES = _group_cases_statement()
# The other statements of a batch, built once too: each batch only binds its values.
_GROUPS = select(Customer.__table__).where(
    or_(
        Customer.__table__.c.id.in_(bindparam("roots", expanding=True)),
        Customer.__table__.c.merged_into.in_(bindparam("roots", expanding=True)),
    )
)
"""The roots' rows and their members' (a member's `merged_into` is always a root)."""
_COUNTERS = select(ContactCount.__table__).where(
    ContactCount.__table__.c.customer_id.in_(bindparam("members", expanding=True)),
    ContactCount.__table__.c.day >= bindparam("first"),
)
_THREADS = select(MESSAGES.c.source_id, MESSAGES.c.case_id).where(
    MESSAGES.c.channel == "email",
    MESSAGES.c.source_id.in_(bindparam("ids", expanding=True)),
    MESSAGES.c.case_id.is_not(None),
)
_CASES_BY_ID = select(*CASE_COLUMNS).where(CASES.c.id.in_(bindparam("ids", expanding=True)))
_PARTICIPANTS = select(
    CaseParticipant.__table__.c.case_id, CaseParticipant.__table__.c.customer_id
).where(CaseParticipant.__table__.c.case_id.in_(bindparam("ids", expanding=True)))


def _keep(known: Known, row: object, owner: dict[int, int]) -> CaseState:
    case = known.cases.get(row.id)  # type: ignore[attr-defined]
    if case is None:
        case = CaseState(
            id=row.id,  # type: ignore[attr-defined]
            customer_id=row.customer_id,  # type: ignore[attr-defined]
            status=row.status,  # type: ignore[attr-defined]
            queue=row.queue,  # type: ignore[attr-defined]
            priority=row.priority,  # type: ignore[attr-defined]
            channel=row.channel,  # type: ignore[attr-defined]
            subject=row.subject,  # type: ignore[attr-defined]
            opened_at=row.opened_at,  # type: ignore[attr-defined]
            last_message_at=row.last_message_at,  # type: ignore[attr-defined]
            closed_at=row.closed_at,  # type: ignore[attr-defined]
            linked_case_id=row.linked_case_id,  # type: ignore[attr-defined]
        )
        known.cases[case.id] = case
    root = owner.get(case.customer_id)
    if root is not None:
        known.groups[root].case_ids.add(case.id)
    return case


def _counters(
    session: Session, known: Known, members: Sequence[int], owner: dict[int, int], first: date
) -> None:
    rows = session.execute(_COUNTERS, {"members": members, "first": first})
    for row in rows:
        known.groups[owner[row.customer_id]].contacts[(row.channel, row.day)] += row.count


def _earlier_messages(
    session: Session,
    known: Known,
    members: Sequence[int],
    owner: dict[int, int],
    wanted: Wanted,
    windows: Windows,
) -> set[int]:
    """Messages a duplicate or a conversation could follow; the ids of their cases."""
    prints, conversations = bool(wanted.fingerprints), bool(wanted.conversation_channels)
    if not prints and not conversations:
        return set()
    rows = session.execute(
        _earlier(prints, conversations),
        {
            "members": members,
            "prints": sorted(wanted.fingerprints),
            "print_since": wanted.since - windows.duplicate,
            "print_until": wanted.until + windows.duplicate,
            "channels": sorted(wanted.conversation_channels),
            "talk_since": wanted.since - windows.conversation,
            "talk_until": wanted.until + windows.conversation,
        },
    )
    case_ids = set()
    for row in rows:
        group = known.groups[owner[row.customer_id]]
        seen = Seen(row.received_at, row.id, row.case_id, row.channel, row.conversation_key)
        if row.fingerprint in wanted.fingerprints:
            group.prints[row.fingerprint].add(seen)
        if row.channel in wanted.conversation_channels:
            group.conversations[(row.channel, row.conversation_key)].add(seen)
        case_ids.add(row.case_id)
    return case_ids


@cache
def _earlier(prints: bool, conversations: bool) -> Select[Any]:
    """The earlier messages of the batch's customers with one of its fingerprints, or on a
    channel with conversations, within those windows (each part only when asked)."""
    columns = MESSAGES.c
    conditions = []
    if prints:
        conditions.append(
            and_(
                columns.fingerprint.in_(bindparam("prints", expanding=True)),
                columns.received_at >= bindparam("print_since"),
                columns.received_at <= bindparam("print_until"),
            )
        )
    if conversations:
        conditions.append(
            and_(
                columns.channel.in_(bindparam("channels", expanding=True)),
                columns.received_at >= bindparam("talk_since"),
                columns.received_at <= bindparam("talk_until"),
            )
        )
    return (
        select(
            columns.id,
            columns.customer_id,
            columns.channel,
            columns.received_at,
            columns.case_id,
            columns.fingerprint,
            columns.conversation_key,
        )
        .where(
            columns.customer_id.in_(bindparam("members", expanding=True)),
            columns.case_id.is_not(None),
            or_(*conditions),
        )
        .order_by(columns.received_at, columns.id)
    )


def _threads(session: Session, known: Known, email_ids: set[str]) -> set[int]:
    if not email_ids:
        return set()
    rows = session.execute(_THREADS, {"ids": sorted(email_ids)})
    for row in rows:
        known.threads[row.source_id] = row.case_id
    return set(known.threads.values())


def _cases_by_id(session: Session, known: Known, ids: set[int], owner: dict[int, int]) -> None:
    if ids:
        for row in session.execute(_CASES_BY_ID, {"ids": sorted(ids)}):
            _keep(known, row, owner)


def _participants(session: Session, known: Known, case_ids: Sequence[int]) -> None:
    if case_ids:
        rows = session.execute(_PARTICIPANTS, {"ids": list(case_ids)})
        known.participants.update((row.case_id, row.customer_id) for row in rows)


def wanted_for(
    cases: Sequence[CaseOpen],
    conversation_channels: Iterable[str],
    prefix: str,
    max_days: int,
    prints: Sequence[str | None],
) -> Wanted:
    """What this batch's messages could match."""
    received = [case.received_at for case in cases]
    numbers = set()
    email_ids: set[str] = set()
    channels = set(conversation_channels)
    for case in cases:
        number = case_number(case.thread.case_ref, prefix)
        if number is not None:
            numbers.add(number)
        if case.channel == "email":
            email_ids.update(replied_to(case.thread))
    return Wanted(
        since=min(received),
        until=max(received),
        fingerprints={p for p in prints if p is not None},
        conversation_channels={c.channel for c in cases if c.channel in channels},
        case_numbers=numbers,
        email_ids=email_ids,
        first_day=utc_day(min(received)) - timedelta(days=max_days - 1),
    )


THREAD_IDS = 100
"""How many of a reply's Message-IDs a follow-up is looked for by (see `replied_to`)."""


def replied_to(thread: Thread) -> list[str]:
    """The Message-IDs a reply names, In-Reply-To first, then its References from the
    thread's first message, each once; of a long References list, the first and the latest
    (`THREAD_IDS` in all): a mail can list thousands, and a batch reads what they name."""
    named = [thread.in_reply_to] if thread.in_reply_to else []
    named += thread.references
    if len(named) > THREAD_IDS:
        keep = THREAD_IDS - 2
        named = [*named[:2], *named[-keep:]]
    return list(dict.fromkeys(named))


def utc_day(at: datetime) -> date:
    """The UTC calendar day of a moment: the day its contact is counted on."""
    return at.astimezone(UTC).date()


def case_number(ref: str | None, prefix: str) -> int | None:
    """The case number in a reference such as C-12 (None when it is not one of ours)."""
    ref = (ref or "").strip()
    number = ref[len(prefix) :] if ref.upper().startswith(prefix.upper()) else ""
    return int(number) if number.isdigit() else None


def keys_of(cases: Sequence[CaseOpen]) -> list[tuple[str, str]]:
    """The idempotency keys of these messages, each once, in order."""
    return list(dict.fromkeys((case.channel, case.source_id) for case in cases))


def existing(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], object]:
    """Messages already recorded under these keys (level 1)."""
    dialect = session.get_bind().dialect.name
    rows = session.execute(_existing(dialect), bound_pairs(keys, dialect))
    return {(row.channel, row.source_id): row for row in rows}


@cache
def _existing(dialect: str) -> Select[Any]:
    columns = MESSAGES.c
    return select(
        columns.channel,
        columns.source_id,
        columns.case_open_id,
        columns.forwarded,
        columns.target_queue,
        columns.body,
        columns.ack,
        columns.publish_id,
    ).where(pairs_in(columns.channel, columns.source_id, dialect))
