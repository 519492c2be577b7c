"""One batch of case-opens decided in one store transaction: repeat, duplicate, follow-up, new.

Set-based: the batch's keys, senders, customers and everything their history and dedup can
name are read with one query per kind of fact (`known`), the messages are decided in memory
one after the other, each decision updating what the next one sees, and the results are
written with one statement per kind of row (`writes`).

Level 1 is the unique key (channel, source_id) of `messages`: a message is recorded with its
decision, and the forward to send, under that key; a redelivery (after a crash before the
broker transaction committed) forwards exactly that again, and a copy is dropped. Per
customer the work is serialised by locking the customer row (see `identity`), so that levels
2 and 3 see every earlier message of the customer, whichever dispatcher took it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from dispatcher.acks import AckPolicy, sent_recently
from dispatcher.database import bound_pairs, pairs_in
from dispatcher.dedup import Match, duplicate_of, fingerprint, follow_up_of
from dispatcher.history import history, longest_window_days
from dispatcher.identity import (
    IdentityKey,
    lock_customers,
    lock_identities,
    normalise,
    resolve_senders,
)
from dispatcher.known import (
    MESSAGES,
    CaseState,
    Group,
    Known,
    Seen,
    Windows,
    existing,
    keys_of,
    load,
    utc_day,
    wanted_for,
)
from dispatcher.settings import DispatcherSettings
from dispatcher.store import Store
from dispatcher.topics import topic_of
from dispatcher.writes import CaseIds, KeyTaken, Writes
from normalizer.acks import AckRequest
from normalizer.model import CaseOpen, Dedup, Triage

if TYPE_CHECKING:
    from dispatcher.intake import Intake

log = structlog.get_logger("dispatcher")

Key = tuple[str, str]
"""(channel, source_id): the idempotency key of a message."""

Router = Callable[[CaseOpen, bool], Triage]
"""Triage of an enriched message; the flag says it is a follow-up or duplicate."""

CLOSED_STATES = ("resolved", "closed")
NEWER_THAN_STORED = 10**15
"""Orders a batch's own messages after the stored ones when dedup breaks a tie."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A delivery: the message, whether the broker delivered it before, the id of the
    publish it is a copy of (`normalizer.model.PUBLISH_ID`), and whether it was put off
    before (`Outcome.later`: it is then waited for, not put off again)."""

    case: CaseOpen
    redelivered: bool = False
    publish_id: str | None = None
    held: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with one delivery: forward `body` (the enriched `forward`) to
    `routing_key` with the acknowledgement request `ack`, or drop a repeat."""

    case: CaseOpen
    forward: CaseOpen | None = None
    routing_key: str | None = None
    repeat_of: str | None = None
    ack: AckRequest | None = None
    body: bytes | None = None
    notices: tuple[bytes, ...] = ()
    """Incident notices for the `incidents` queue, sent with this forward."""
    resent: bool = False
    """A forward sent again for a redelivered message whose first forward was never marked
    done: RabbitMQ's transactions are not atomic, so a connection lost during the commit can
    have published the first forward without acknowledging its input. The forward then says
    it may be a duplicate (same message id), for consumers that deduplicate."""
    later: bool = False
    """Not decided: its customer is locked by another dispatcher's transaction (PostgreSQL),
    so it waits for the next batch instead of holding this one up."""


class Decider:
    """Decides batches; holds the settings, the case-update queue and the triage seam."""

    def __init__(
        self,
        settings: DispatcherSettings,
        case_update_queue: str,
        router: Router,
        ack_policy: AckPolicy | None = None,
        intake: Intake | None = None,
    ):
        self.settings = settings
        self.case_update = case_update_queue
        self.route = router
        self.acknowledge = ack_policy
        self.intake = intake
        self.prefix = settings.case_ref_prefix
        dedup = settings.dedup
        self.windows = Windows(
            recent_cases=settings.history.recent_cases,
            duplicate=timedelta(hours=dedup.duplicate_window_h),
            conversation=timedelta(minutes=dedup.conversation_window_min),
        )

    def batch(
        self, session: Session, incoming: Sequence[Incoming], done: Sequence[Key] = ()
    ) -> list[Outcome]:
        """Decide every delivery; `done` marks earlier forwards as confirmed on the way."""
        finished = set(done)
        repeats: Counter[Key] = Counter()
        outcomes: dict[int, Outcome] = {}
        if incoming:
            recorded = existing(session, keys_of([item.case for item in incoming]))
            owners: dict[Key, str] = {}
            fresh: list[int] = []
            for index, item in enumerate(incoming):
                key = (item.case.channel, item.case.source_id)
                row = recorded.get(key)
                if key in owners:
                    repeats[key] += 1
                    outcomes[index] = Outcome(item.case, repeat_of=owners[key])
                elif row is None:
                    owners[key] = item.case.id
                    fresh.append(index)
                else:
                    owners[key] = row.case_open_id  # type: ignore[attr-defined]
                    outcomes[index] = _known(item, row, key in finished, repeats)
            if fresh:
                publishes = {incoming[i].case.id: incoming[i].publish_id for i in fresh}
                decided = _Batch(self, session, publishes).decide(
                    [incoming[i].case for i in fresh], [incoming[i].held for i in fresh]
                )
                outcomes.update(zip(fresh, decided, strict=True))
        _settle(session, finished, repeats)
        return [outcomes[index] for index in range(len(incoming))]

    async def decided(
        self, store: Store, incoming: Sequence[Incoming], done: Sequence[Key] = ()
    ) -> list[Outcome]:
        """`batch` in one transaction of the store, decided again (a new transaction) when
        another dispatcher recorded one of its keys meanwhile."""
        while True:
            try:
                return await store.run(self.batch, incoming, done)
            except KeyTaken as taken:
                log.info("batch decided again", reason=str(taken))

    def ref(self, case_id: int) -> str:
        """A case's reference as customers see it (C-12)."""
        return f"{self.prefix}{case_id}"


@dataclass(slots=True)
class _Pending:
    """A decided message waiting for the batch's acknowledgement caps to be applied."""

    case: CaseOpen
    """The message with its customer, history and intake facts, without dedup and triage."""
    dedup: Dedup
    triage: Triage
    routing_key: str
    row: dict[str, object]
    case_id: int
    opens: bool
    ack: AckRequest | None = None


class _Batch:
    """The fresh messages of one batch, decided in order against what the store knows."""

    def __init__(
        self, decider: Decider, session: Session, publishes: Mapping[str, str | None]
    ) -> None:
        self.d = decider
        self.session = session
        self.publishes = publishes
        self.now = datetime.now(UTC)
        self.writes = Writes()
        self.ids = CaseIds(session)

    def decide(self, cases: list[CaseOpen], held: Sequence[bool]) -> list[Outcome]:
        """Each message's outcome, in order; those of customers another dispatcher holds
        are put off (`Outcome.later`), unless they were put off before."""
        senders = [normalise(c.sender.kind, c.sender.address) for c in cases]
        lock_identities(self.session, senders)
        names = {key: case.sender.name for key, case in zip(senders, cases, strict=True)}
        roots = resolve_senders(self.session, names, self.now)
        # Put off before: waited for (in id order). The rest: skipped when another
        # dispatcher holds them, which only two identities of one customer on two
        # partitions make happen; a lock wait would hold up this whole batch.
        waited = {roots[sender] for sender, again in zip(senders, held, strict=True) if again}
        lock_customers(self.session, waited)
        busy = lock_customers(self.session, set(roots.values()) - waited, skip_locked=True)
        if busy:
            log.debug("customers busy elsewhere: their messages wait", customers=len(busy))
        outcomes = [Outcome(case, later=True) for case in cases]
        kept = [i for i, sender in enumerate(senders) if roots[sender] not in busy]
        decided = self._decide([cases[i] for i in kept], [senders[i] for i in kept], roots)
        for index, outcome in zip(kept, decided, strict=True):
            outcomes[index] = outcome
        return outcomes

    def _decide(
        self, cases: list[CaseOpen], senders: list[IdentityKey], roots: Mapping[IdentityKey, int]
    ) -> list[Outcome]:
        if not cases:
            return []
        prints = [fingerprint(case) for case in cases]
        settings = self.d.settings
        wanted = wanted_for(
            cases,
            settings.dedup.conversation_channels,
            self.d.prefix,
            longest_window_days(settings.history),
            prints,
        )
        known = load(self.session, [roots[s] for s in senders], wanted, self.d.windows)
        intake = self.d.intake
        extra = None
        if intake is not None:
            extra = intake.batch(self.session, cases, [roots[s] for s in senders], self.now)
        pending = [
            self._one(
                known,
                known.groups[roots[sender]],
                case,
                print_,
                len(cases) - index,
                extra.updates[index] if extra else None,
            )
            for index, (case, sender, print_) in enumerate(zip(cases, senders, prints, strict=True))
        ]
        self._cap_acknowledgements(pending)
        outcomes = [self._finish(item) for item in pending]
        if extra is not None:
            for index, notice in extra.notices.items():
                outcomes[index] = replace(outcomes[index], notices=tuple(notice))
        self.writes.flush(self.session, list(known.cases.values()))
        return outcomes

    def _one(
        self,
        known: Known,
        group: Group,
        case: CaseOpen,
        print_: str | None,
        left: int,
        extra: dict[str, object] | None = None,
    ) -> _Pending:
        d = self.d
        before = history(known, group, case.received_at, d.settings.history, d.prefix)
        enriched = case.model_copy(
            update={"customer": group.customer, "history": before, **(extra or {})}
        )
        match = duplicate_of(known, group, print_, case.received_at, d.windows.duplicate)
        match = match or follow_up_of(known, group, case, d.settings.dedup, d.prefix)
        if match is None:
            reason = "no earlier case of this customer matches: a new case"
            pending = self._open(known, group, enriched, reason, None, left)
        else:
            pending = self._attach(known, group, enriched, match, left)
        self._remember(known, group, case, print_, pending)
        return pending

    def _attach(
        self, known: Known, group: Group, case: CaseOpen, match: Match, left: int
    ) -> _Pending:
        target = match.case
        ref = self.d.ref(target.id)
        if not match.allowed:
            reason = (
                f"{match.how} names case {ref}, but the sender is neither its customer nor a "
                "participant: a new case linked to it"
            )
            return self._open(known, group, case, reason, target, left)
        closed_for = _closed_for(target, case.received_at)
        limit = timedelta(days=self.d.settings.dedup.reopen_within_days)
        if match.level == 3 and closed_for is not None and closed_for > limit:
            reason = (
                f"{match.how}: case {ref} has been {target.status} for "
                f"{closed_for.days} days (over {limit.days}): a new case linked to it"
            )
            return self._open(known, group, case, reason, target, left)
        return self._update(case, match, reopen=closed_for is not None)

    def _open(
        self,
        known: Known,
        group: Group,
        case: CaseOpen,
        reason: str,
        linked: CaseState | None,
        left: int,
    ) -> _Pending:
        linked_ref = self.d.ref(linked.id) if linked else None
        dedup = Dedup.model_construct(verdict="new", reason=reason, linked_case=linked_ref)
        # Triage sees everything but the case number.
        triage = self.d.route(case.model_copy(update={"dedup": dedup}), False)
        opened = CaseState(
            id=self.ids.take(left),
            customer_id=group.root,
            status="open",
            queue=triage.queue,
            priority=triage.priority,
            channel=case.channel,
            subject=(case.subject or None) and case.subject[:300],
            opened_at=case.received_at,
            last_message_at=case.received_at,
            closed_at=None,
            linked_case_id=linked.id if linked else None,
            facts=_facts(case, triage),
            new=True,
        )
        known.cases[opened.id] = opened
        group.case_ids.add(opened.id)
        ref = self.d.ref(opened.id)
        self.writes.event(opened.id, "opened", self.now, case.id, reason)
        dedup = Dedup.model_construct(
            verdict="new", reason=reason, case_id=ref, linked_case=linked_ref
        )
        ack = None
        if self.d.acknowledge is not None:
            ack = self.d.acknowledge.request(case, triage, ref)
        return self._pending(case, dedup, triage, triage.queue, opened.id, ack, opens=True)

    def _update(self, case: CaseOpen, match: Match, reopen: bool) -> _Pending:
        target = match.case
        ref = self.d.ref(target.id)
        verdict = "duplicate" if match.level == 2 else "follow-up"
        reopen = reopen and match.level == 3
        reason = f"{match.how}: {'duplicate of' if match.level == 2 else 'follow-up to'} {ref}"
        if reopen:
            reason += f" (it was {target.status}: reopened)"
            self.writes.event(target.id, "reopened", self.now, case.id, reason)
            target.reopen()
        target.last_message_at = max(target.last_message_at, case.received_at)
        target.changed = True
        self.writes.event(target.id, verdict, self.now, case.id, reason)
        dedup = Dedup.model_construct(
            verdict=verdict, reason=reason, case_id=ref, level=match.level, reopened=reopen
        )
        # Rules for follow-ups may set priority and tags; the queue stays case-update.
        routed = self.d.route(case.model_copy(update={"dedup": dedup}), True)
        triage = routed.model_copy(
            update={
                "queue": self.d.case_update,
                "reason": f"an update of {ref} (with {target.queue}): the case-update queue; "
                + routed.reason,
            }
        )
        return self._pending(case, dedup, triage, self.d.case_update, target.id)

    def _pending(
        self,
        case: CaseOpen,
        dedup: Dedup,
        triage: Triage,
        routing_key: str,
        case_id: int,
        ack: AckRequest | None = None,
        *,
        opens: bool = False,
    ) -> _Pending:
        assert case.customer is not None
        row = {
            "channel": case.channel,
            "source_id": case.source_id,
            "case_open_id": case.id,
            "customer_id": case.customer.id,
            "case_id": case_id,
            "received_at": case.received_at,
            "seen_at": self.now,
            "conversation_key": case.thread.conversation_key,
            "verdict": dedup.verdict,
            "reason": dedup.reason[:500],
            "target_queue": routing_key,
            "forwarded": False,
            "repeats": 0,
            "publish_id": self.publishes.get(case.id),
        }
        return _Pending(case, dedup, triage, routing_key, row, case_id, opens, ack)

    def _remember(
        self, known: Known, group: Group, case: CaseOpen, print_: str | None, item: _Pending
    ) -> None:
        """What later messages of the batch must see of this one."""
        case_id = item.row["case_id"]
        assert isinstance(case_id, int)
        item.row["fingerprint"] = print_
        order = NEWER_THAN_STORED + len(self.writes.messages)
        seen = Seen(case.received_at, order, case_id, case.channel, case.thread.conversation_key)
        if print_ is not None:
            group.prints[print_].add(seen)
        if case.channel in self.d.settings.dedup.conversation_channels:
            group.conversations[(case.channel, case.thread.conversation_key)].add(seen)
        if case.channel == "email":
            known.threads[case.source_id] = case_id
        day = utc_day(case.received_at)
        group.contacts[(case.channel, day)] += 1
        self.writes.contacts[(group.root, case.channel, day)] += 1
        self.writes.messages.append(item.row)

    def _cap_acknowledgements(self, pending: list[_Pending]) -> None:
        """No more than the daily cap to one address, counting this batch's own requests."""
        policy = self.d.acknowledge
        if policy is None:
            return
        wanted = [item for item in pending if item.ack is not None]
        sent = sent_recently(self.session, {item.ack.to for item in wanted if item.ack}, self.now)
        for item in pending:
            if not item.opens or item.triage.acknowledge is None:
                continue
            granted = item.ack is not None and sent[item.ack.to] < policy.daily_cap
            why: str | None = None
            if item.ack is not None and not granted:
                log.info("acknowledgement capped", id=item.case.id, cap=policy.daily_cap)
                item.ack = None
                why = f"the daily cap of {policy.daily_cap} to this address is reached"
            elif not granted:
                why = policy.why_not(item.case, item.triage)
            if item.ack is not None:
                sent[item.ack.to] += 1
                self.writes.acknowledgements.append(
                    {"address": item.ack.to, "sent_at": self.now, "case_id": item.case_id}
                )
            item.triage = item.triage.model_copy(
                update={"acknowledged": granted, "not_acknowledged": why}
            )

    def _finish(self, item: _Pending) -> Outcome:
        forward = item.case.model_copy(update={"dedup": item.dedup, "triage": item.triage})
        body = forward.to_json()
        item.row["body"] = body.decode()
        item.row["ack"] = item.ack.to_json().decode() if item.ack is not None else None
        return Outcome(
            item.case,
            forward=forward,
            routing_key=item.routing_key,
            ack=item.ack,
            body=body,
        )


def _known(item: Incoming, row: object, finished: bool, repeats: Counter[Key]) -> Outcome:
    """A key seen before: the redelivery of an unfinished forward goes again, else a repeat.

    Only a redelivery of the very copy that was decided: another copy of the same case-open
    (published again from a spool after a lost confirm) may arrive redelivered after the
    decided copy's forward went out but before it was marked done, which a dispatcher that
    dies in between never does."""
    forwarded = row.forwarded or finished  # type: ignore[attr-defined]
    mine = (
        row.case_open_id == item.case.id  # type: ignore[attr-defined]
        and row.publish_id == item.publish_id  # type: ignore[attr-defined]
    )
    body = row.body  # type: ignore[attr-defined]
    if mine and item.redelivered and not forwarded and body:
        ack = row.ack  # type: ignore[attr-defined]
        return Outcome(
            item.case,
            forward=CaseOpen.model_validate_json(body),
            routing_key=row.target_queue,  # type: ignore[attr-defined]
            ack=AckRequest.model_validate_json(ack) if ack else None,
            body=body.encode(),
            resent=True,
        )
    repeats[(item.case.channel, item.case.source_id)] += 1
    return Outcome(item.case, repeat_of=row.case_open_id)  # type: ignore[attr-defined]


def _settle(session: Session, finished: set[Key], repeats: Counter[Key]) -> None:
    """Mark forwards done and count repeats: the only updates of earlier messages, made last
    and in key order, so that two dispatchers touching the same rows cannot deadlock."""
    keys = sorted(finished | set(repeats))
    if not keys:
        return
    dialect = session.get_bind().dialect.name
    rows = session.execute(_settling(dialect), bound_pairs(keys, dialect))
    ids = {(row.channel, row.source_id): row.id for row in rows}
    done = sorted(ids[key] for key in finished if key in ids)
    if done:
        session.execute(_FORWARDED, {"ids": done})
    by_count: dict[int, list[int]] = {}
    for key, count in repeats.items():
        if key in ids:
            by_count.setdefault(count, []).append(ids[key])
    for count, counted in by_count.items():
        session.execute(_REPEATED, {"ids": sorted(counted), "count": count})


@cache
def _settling(dialect: str) -> Select[Any]:
    """The ids of the messages `_settle` updates, locked on PostgreSQL."""
    columns = MESSAGES.c
    query = (
        select(columns.id, columns.channel, columns.source_id)
        .where(pairs_in(columns.channel, columns.source_id, dialect))
        .order_by(columns.channel, columns.source_id)
    )
    return query.with_for_update() if dialect == "postgresql" else query


_FORWARDED = (
    update(MESSAGES)
    .where(MESSAGES.c.id.in_(bindparam("ids", expanding=True)))
    .values(forwarded=True)
)
_REPEATED = (
    update(MESSAGES)
    .where(MESSAGES.c.id.in_(bindparam("ids", expanding=True)))
    .values(repeats=MESSAGES.c.repeats + bindparam("count"))
)


def _closed_for(target: CaseState, at: datetime) -> timedelta | None:
    if target.status not in CLOSED_STATES:
        return None
    return at - (target.closed_at or target.last_message_at)


def _facts(case: CaseOpen, triage: Triage) -> dict[str, object]:
    """What a new case keeps of its triage, and its topic, for the report."""
    sla = triage.sla
    return {
        "bucket": triage.bucket,
        "category": triage.category,
        "product": triage.product,
        "topic": topic_of(case.subject, case.text, case.language),
        "response_due": sla.response_due if sla else None,
        "resolution_due": sla.resolution_due if sla else None,
    }
