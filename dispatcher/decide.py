"""One batch of case-opens decided in one store transaction: repeat, duplicate, follow-up, new.

Level 1 is the unique key (channel, source_id) of `messages`: a message is inserted with
"insert, ignore conflicts", so of two dispatchers holding copies only one owns the key. The
decision, with the enrichment to forward, is stored on the row; a redelivery (after a crash
before the broker transaction committed) forwards exactly that again, and a copy is dropped.
Per customer the work is serialised by locking the customer row (see `identity`), so that
levels 2 and 3 see every earlier message of the customer, whichever dispatcher took it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dispatcher.acks import AckPolicy
from dispatcher.dedup import Match, duplicate_of, fingerprint, follow_up_of
from dispatcher.history import customer_info, history
from dispatcher.identity import (
    groups_of,
    lock_customers,
    lock_identities,
    normalise,
    resolve_senders,
)
from dispatcher.settings import DispatcherSettings
from dispatcher.tables import Case, CaseEvent, Customer, Message
from normalizer.acks import AckRequest
from normalizer.model import CaseOpen, CustomerInfo, Dedup, History, Triage

Key = tuple[str, str]
"""(channel, source_id): the idempotency key of a message."""

Router = Callable[[CaseOpen, bool], Triage]
"""Triage of an enriched message; the flag says it is a follow-up or duplicate."""

CLOSED_STATES = ("resolved", "closed")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A delivery: the message, and whether the broker delivered it before."""

    case: CaseOpen
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with one delivery: forward `forward` to `routing_key`, or drop a repeat."""

    case: CaseOpen
    forward: CaseOpen | None = None
    routing_key: str | None = None
    repeat_of: str | None = None
    ack: AckRequest | None = None
    """An acknowledgement to publish with the forward, in the same broker transaction."""


class Enrichment(BaseModel):
    """What the dispatcher adds to a message, kept on its row until the forward is done."""

    model_config = ConfigDict(extra="forbid")

    customer: CustomerInfo
    history: History
    dedup: Dedup
    triage: Triage
    routing_key: str
    ack: AckRequest | None = None

    def applied(self, case: CaseOpen) -> Outcome:
        fields = {"customer": self.customer, "history": self.history}
        enriched = case.model_copy(update=fields | {"dedup": self.dedup, "triage": self.triage})
        return Outcome(case, forward=enriched, routing_key=self.routing_key, ack=self.ack)


class Decider:
    """Decides batches; holds the settings, the case-update queue and the triage seam."""

    def __init__(
        self,
        settings: DispatcherSettings,
        case_update_queue: str,
        router: Router,
        ack_policy: AckPolicy | None = None,
    ):
        self._settings = settings
        self._case_update = case_update_queue
        self._route = router
        self._acknowledge = ack_policy
        self._prefix = settings.case_ref_prefix

    def batch(
        self, session: Session, incoming: Sequence[Incoming], done: Sequence[Key] = ()
    ) -> list[Outcome]:
        """Decide every delivery; `done` marks earlier forwards as confirmed on the way."""
        finished = set(done)
        if not incoming:
            _settle(session, finished, Counter())
            return []
        keys = list(dict.fromkeys((i.case.channel, i.case.source_id) for i in incoming))
        existing = {
            (row.channel, row.source_id): row
            for row in session.scalars(
                select(Message).where(tuple_(Message.channel, Message.source_id).in_(keys))
            )
        }
        outcomes: dict[int, Outcome] = {}
        owners: dict[Key, str] = {}
        repeats: Counter[Key] = Counter()
        fresh: list[int] = []
        for index, item in enumerate(incoming):
            key = (item.case.channel, item.case.source_id)
            row = existing.get(key)
            if key in owners:
                repeats[key] += 1
                outcomes[index] = Outcome(item.case, repeat_of=owners[key])
            elif row is None:
                owners[key] = item.case.id
                fresh.append(index)
            else:
                owners[key] = row.case_open_id
                outcomes[index] = self._known(item, row, key in finished, repeats)
        outcomes |= self._fresh(session, [incoming[i].case for i in fresh], fresh, repeats)
        _settle(session, finished, repeats)
        return [outcomes[index] for index in range(len(incoming))]

    def _known(
        self, item: Incoming, row: Message, finished: bool, repeats: Counter[Key]
    ) -> Outcome:
        """A key seen before: the redelivery of an unfinished forward goes again, else a repeat."""
        forwarded = row.forwarded or finished
        again = row.case_open_id == item.case.id and item.redelivered and not forwarded
        if again and row.forward:
            return Enrichment.model_validate_json(row.forward).applied(item.case)
        repeats[(row.channel, row.source_id)] += 1
        return Outcome(item.case, repeat_of=row.case_open_id)

    def _fresh(
        self, session: Session, cases: list[CaseOpen], indexes: list[int], repeats: Counter[Key]
    ) -> dict[int, Outcome]:
        if not cases:
            return {}
        now = datetime.now(UTC)
        senders = [normalise(c.sender.kind, c.sender.address) for c in cases]
        lock_identities(session, senders)
        names = {key: case.sender.name for key, case in zip(senders, cases, strict=True)}
        roots = resolve_senders(session, names, now)
        lock_customers(session, roots.values())
        groups = groups_of(session, roots.values())
        result = {}
        for index, case, sender in zip(indexes, cases, senders, strict=True):
            root = roots[sender]
            result[index] = self._one(session, case, root, groups[root], now, repeats)
        return result

    def _one(
        self,
        session: Session,
        case: CaseOpen,
        root: int,
        group: list[int],
        now: datetime,
        repeats: Counter[Key],
    ) -> Outcome:
        print_ = fingerprint(case)
        row_id = _claim(session, case, root, now, print_)
        if row_id is None:  # another dispatcher recorded this key since we looked
            owner = session.scalars(
                select(Message.case_open_id).where(
                    Message.channel == case.channel, Message.source_id == case.source_id
                )
            ).one()
            repeats[(case.channel, case.source_id)] += 1
            return Outcome(case, repeat_of=owner)
        customer = customer_info(session.get_one(Customer, root))
        before = history(
            session, group, case.received_at, row_id, self._settings.history, self._prefix
        )
        dedup_settings = self._settings.dedup
        window = timedelta(hours=dedup_settings.duplicate_window_h)
        match = duplicate_of(session, group, print_, case.received_at, row_id, window)
        match = match or follow_up_of(session, case, group, dedup_settings, self._prefix)
        enriched = case.model_copy(update={"customer": customer, "history": before})
        if match is None:
            reason = "no earlier case of this customer matches: a new case"
            decided = self._open(session, enriched, root, now, reason, None)
        else:
            decided = self._attach(session, enriched, root, now, match)
        enrichment = decided.enrichment
        outcome = enrichment.applied(case)
        assert outcome.forward is not None
        session.execute(
            update(Message)
            .where(Message.id == row_id)
            .values(
                case_id=decided.case_id,
                verdict=enrichment.dedup.verdict,
                reason=enrichment.dedup.reason[:500],
                target_queue=enrichment.routing_key,
                forward=enrichment.model_dump_json(),
                body=outcome.forward.to_json().decode(),
            )
        )
        return outcome

    def _attach(
        self, session: Session, case: CaseOpen, root: int, now: datetime, match: Match
    ) -> _Decided:
        target = match.case
        ref = self.ref(target.id)
        if not match.allowed:
            reason = (
                f"{match.how} names case {ref}, but the sender is neither its customer nor a "
                "participant: a new case linked to it"
            )
            return self._open(session, case, root, now, reason, target)
        closed_for = _closed_for(target, case.received_at)
        limit = timedelta(days=self._settings.dedup.reopen_within_days)
        if match.level == 3 and closed_for is not None and closed_for > limit:
            reason = (
                f"{match.how}: case {ref} has been {target.status} for "
                f"{closed_for.days} days (over {limit.days}): a new case linked to it"
            )
            return self._open(session, case, root, now, reason, target)
        return self._update(session, case, now, match, reopen=closed_for is not None)

    def _open(
        self,
        session: Session,
        case: CaseOpen,
        root: int,
        now: datetime,
        reason: str,
        linked: Case | None,
    ) -> _Decided:
        linked_ref = self.ref(linked.id) if linked else None
        dedup = Dedup(verdict="new", reason=reason, linked_case=linked_ref)
        # Triage sees everything but the case number, which the insert below gives.
        triage = self._route(case.model_copy(update={"dedup": dedup}), False)
        opened = Case(
            customer_id=root,
            status="open",
            queue=triage.queue,
            priority=triage.priority,
            channel=case.channel,
            subject=(case.subject or None) and case.subject[:300],
            opened_at=case.received_at,
            last_message_at=case.received_at,
            linked_case_id=linked.id if linked else None,
        )
        session.add(opened)
        session.flush()
        dedup = dedup.model_copy(update={"case_id": self.ref(opened.id)})
        _event(session, opened.id, "opened", now, case.id, reason)
        ack = None
        if self._acknowledge is not None:
            ack = self._acknowledge(session, case, triage, self.ref(opened.id), opened.id, now)
            triage = triage.model_copy(update={"acknowledged": ack is not None})
        return _decided(case, dedup, triage, triage.queue, opened.id, ack)

    def _update(
        self, session: Session, case: CaseOpen, now: datetime, match: Match, reopen: bool
    ) -> _Decided:
        target = session.get_one(Case, match.case.id, with_for_update=True, populate_existing=True)
        ref = self.ref(target.id)
        verdict = "duplicate" if match.level == 2 else "follow-up"
        reopen = reopen and match.level == 3
        reason = f"{match.how}: {'duplicate of' if match.level == 2 else 'follow-up to'} {ref}"
        if reopen:
            reason += f" (it was {target.status}: reopened)"
            _event(session, target.id, "reopened", now, case.id, reason)
            target.status, target.closed_at = "open", None
        target.last_message_at = max(target.last_message_at, case.received_at)
        _event(session, target.id, verdict, now, case.id, reason)
        dedup = Dedup(
            verdict=verdict,  # type: ignore[arg-type]
            reason=reason,
            case_id=ref,
            level=match.level,
            reopened=reopen,
        )
        # Rules for follow-ups may set priority and tags; the queue stays case-update.
        routed = self._route(case.model_copy(update={"dedup": dedup}), True)
        triage = routed.model_copy(
            update={
                "queue": self._case_update,
                "reason": f"an update of {ref} (with {target.queue}): the case-update queue; "
                + routed.reason,
            }
        )
        return _decided(case, dedup, triage, self._case_update, target.id)

    def ref(self, case_id: int) -> str:
        """A case's reference as customers see it (C-12)."""
        return f"{self._prefix}{case_id}"


@dataclass(frozen=True, slots=True)
class _Decided:
    enrichment: Enrichment
    case_id: int


def _decided(
    case: CaseOpen,
    dedup: Dedup,
    triage: Triage,
    routing_key: str,
    case_id: int,
    ack: AckRequest | None = None,
) -> _Decided:
    assert case.customer is not None and case.history is not None
    enrichment = Enrichment(
        customer=case.customer,
        history=case.history,
        dedup=dedup,
        triage=triage,
        routing_key=routing_key,
        ack=ack,
    )
    return _Decided(enrichment, case_id)


def _settle(session: Session, finished: set[Key], repeats: Counter[Key]) -> None:
    """Mark forwards done and count repeats: the only updates of earlier messages, made last
    and in key order, so that two dispatchers touching the same rows cannot deadlock."""
    keys = sorted(finished | set(repeats))
    if not keys:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(Message.id)
            .where(tuple_(Message.channel, Message.source_id).in_(keys))
            .order_by(Message.channel, Message.source_id)
            .with_for_update()
        ).all()
    if finished:
        session.execute(
            update(Message)
            .where(tuple_(Message.channel, Message.source_id).in_(sorted(finished)))
            .values(forwarded=True, forward=None)
        )
    by_count: dict[int, list[Key]] = {}
    for key, count in repeats.items():
        by_count.setdefault(count, []).append(key)
    for count, counted in by_count.items():
        session.execute(
            update(Message)
            .where(tuple_(Message.channel, Message.source_id).in_(counted))
            .values(repeats=Message.repeats + count)
        )


def _claim(
    session: Session, case: CaseOpen, root: int, now: datetime, print_: str | None
) -> int | None:
    """Insert the message under its key; None when the key is taken (level 1)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Message)
        .values(
            channel=case.channel,
            source_id=case.source_id,
            case_open_id=case.id,
            customer_id=root,
            received_at=case.received_at,
            seen_at=now,
            conversation_key=case.thread.conversation_key,
            fingerprint=print_,
            verdict="new",
            reason="",
            target_queue="",
            forwarded=False,
            repeats=0,
        )
        .on_conflict_do_nothing(index_elements=["channel", "source_id"])
        .returning(Message.id)
    )
    return session.execute(statement).scalar_one_or_none()


def _closed_for(target: Case, at: datetime) -> timedelta | None:
    if target.status not in CLOSED_STATES:
        return None
    return at - (target.closed_at or target.last_message_at)


def _event(
    session: Session, case_id: int, kind: str, at: datetime, case_open_id: str, detail: str
) -> None:
    session.add(
        CaseEvent(
            case_id=case_id, kind=kind, at=at, case_open_id=case_open_id, detail=detail[:1000]
        )
    )
