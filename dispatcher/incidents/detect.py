"""Incidents found batch by batch, in the dispatcher's store transaction.

Each message that says enough (and is no auto-reply, bounce, mailing-list mail or spam) gets
a signature (`signature`). The batch reads, in one statement, the stored messages sharing an
LSH band with any of its messages within the window. Then, message after message:

- similar to a message of a running incident (at `JOINING` of the threshold): it joins that
  incident, with its similar messages not yet in one; if it is similar to messages of two
  running incidents, they are one, and the smaller is merged into the larger;
- else, when its similar messages within the window come from `min_customers` customers in
  all (itself included): they form a new incident together;
- else it is only remembered, for the messages after it.

An incident runs while similar messages keep coming within the window of its last one.

With several dispatchers, a batch whose placement forms, joins or merges an incident takes an
advisory lock (PostgreSQL; on SQLite the batch already holds the only write lock), reads its
neighbours again and places its messages again: the second of two dispatchers seeing halves
of one storm sees what the first decided, so they form one incident, not two. A dispatcher
whose last batch did so takes the lock before its first read instead (a stream that keeps
touching incidents, as batches of a few hundred do, then reads once, not twice). A batch that
only remembers its messages takes no lock: a lock held to the end of every batch's transaction
would make dispatchers take turns. (Two such batches writing halves of a storm at once leave
it to the next similar message to form the incident.)

Messages are decided in batch order, each seeing the ones before it, as if they had come
apart; a message forwarded before its incident formed does not carry it (the notices on the
`incidents` queue and `ingest incidents show` list every member).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from dispatcher.incidents import NOTICE_SCHEMA, records
from dispatcher.incidents.records import Cluster, Member, Nearby
from dispatcher.incidents.signature import PERMUTATIONS, Signature, signatures
from dispatcher.settings import IncidentSettings
from normalizer.model import CaseOpen, Incident

JOINING = 0.8
"""A message joins a live incident at this share of the similarity threshold: once many
customers report a problem, a vaguer report of it is more likely about it too."""
PREFIX = "I-"


@dataclass(frozen=True, slots=True)
class Found:
    """Per message of the batch its incident (None: not part of a formed one), and the
    notices for the `incidents` queue by the index of the message that carries them."""

    incidents: list[Incident | None]
    notices: dict[int, list[bytes]] = field(default_factory=dict)


class IncidentDetector:
    """Finds incidents in batches; holds only the settings."""

    def __init__(self, settings: IncidentSettings) -> None:
        self.settings = settings
        self.window = timedelta(minutes=settings.window_min)
        self.window_s = self.window.total_seconds()
        self.remembered = records.Remembered()
        self.per_band = max(records.PER_BAND, 2 * settings.min_customers)
        self.touching = False
        """Whether the last batch formed, joined or merged an incident."""

    def batch(
        self,
        session: Session,
        cases: Sequence[CaseOpen],
        customers: Sequence[int],
        now: datetime,
    ) -> Found:
        """Place every message of the batch; write what changed (one statement per kind)."""
        signed = self._signed(cases)
        if not signed:
            return Found([None] * len(cases))
        windows = self._windows(cases, signed)
        # Locked before reading when the last batch needed the lock: a stream that keeps
        # touching incidents (most batches of a few hundred do) then reads once, not twice.
        locked = self.touching and records.lock(session)
        near = records.nearby(session, windows, self.remembered, self.per_band)
        placed = self._place(session, cases, customers, signed, near, now)
        if placed.placing.touched and not locked and records.lock(session):
            # It forms, joins or merges incidents: decide again, after any other dispatcher
            # that does so too, on what the store holds now.
            near = records.nearby(session, windows, self.remembered, self.per_band)
            placed = self._place(session, cases, customers, signed, near, now)
        self.touching = bool(placed.placing.touched)
        placing = placed.placing
        touched = list(placing.touched.values())
        records.write(session, placed.fresh, placing.moved, touched, placing.merged)
        self.remembered.add_members(member for member, _, _ in placed.fresh)
        return Found(placed.found, placing.notices(now))

    def _windows(
        self, cases: Sequence[CaseOpen], signed: list[tuple[int, Signature]]
    ) -> dict[int, records.Window]:
        """Each band of the batch with the times its neighbours may have: within the window
        of the batch's messages that have it."""
        windows: dict[int, records.Window] = {}
        for index, sig in signed:
            at = cases[index].received_at
            since, until = at - self.window, at + self.window
            for key in sig.keys:
                known = windows.get(key)
                if known is not None:
                    since, until = min(since, known[0]), max(until, known[1])
                windows[key] = (since, until)
        return windows

    def _place(
        self,
        session: Session,
        cases: Sequence[CaseOpen],
        customers: Sequence[int],
        signed: list[tuple[int, Signature]],
        near: Nearby,
        now: datetime,
    ) -> _Placed:
        """The batch's messages placed in order, nothing written yet."""
        found: list[Incident | None] = [None] * len(cases)
        held = {(m.incident_id, m.customer_id) for m in near.members.values() if m.incident_id}
        candidates = {*customers, *(m.customer_id for m in near.members.values())}
        clusters = records.clusters(session, held, candidates)
        placing = _Placing(self, session, near, clusters, now)
        fresh = []
        for index, sig in signed:
            case = cases[index]
            member = Member.of(
                case.id, customers[index], case.received_at, sig.values, case.subject
            )
            cluster = placing.place(member, sig)
            fresh.append((member, sig.keys, sig.to_bytes()))
            if cluster is not None:
                placing.last[cluster.id] = index
                if cluster.status == "formed":
                    found[index] = snapshot(cluster)
        return _Placed(placing, found, fresh)

    def _signed(self, cases: Sequence[CaseOpen]) -> list[tuple[int, Signature]]:
        compared = [index for index, case in enumerate(cases) if not _automatic(case)]
        found = signatures([cases[i] for i in compared], self.settings.min_shingles)
        return [(i, sig) for i, sig in zip(compared, found, strict=True) if sig is not None]


@dataclass(slots=True)
class _Placed:
    """A placement of the batch: its incidents per message and the members to write."""

    placing: _Placing
    found: list[Incident | None]
    fresh: list[tuple[Member, tuple[int, ...], bytes]]


class _Placing:
    """The batch's placement of messages into incidents, in order."""

    def __init__(
        self,
        detector: IncidentDetector,
        session: Session,
        near: Nearby,
        clusters: dict[int, Cluster],
        now: datetime,
    ) -> None:
        self.d = detector
        self.session = session
        self.near = near
        self.clusters = clusters
        self.now = now
        self.touched: dict[int, Cluster] = {}
        self.events: dict[int, str] = {}
        self.last: dict[int, int] = {}
        self.moved: list[Member] = []
        self.merged: list[tuple[int, int]] = []
        self._next: int | None = None

    def place(self, member: Member, sig: Signature) -> Cluster | None:
        """Join the live incident of a similar message (merging any other it shows to be
        the same), or form one when enough customers wrote alike within the window."""
        scored = self._similar(member, sig)
        cap = self.d.per_band
        for key in sig.keys:
            members = self.near.by_band[key]
            members.append(member)
            if len(members) > cap:  # the latest are enough (see records.PER_BAND)
                del members[0]
        similar = [other for other, share in scored if share >= JOINING]
        if not similar:
            return None
        live = self._live(member, similar)
        if live:
            cluster, others = live[0], live[1:]
            for other in others:
                self._merge(cluster, other)
            self.events.setdefault(cluster.id, "grew")
        else:
            similar = [other for other, share in scored if share >= 1.0]
            loose = [m for m in similar if not self._in_live(m, member)]
            customers = {m.customer_id for m in loose} | {member.customer_id}
            if len(customers) < self.d.settings.min_customers:
                return None
            cluster = self._form(member, loose)
        for joining in [member, *(m for m in similar if not self._in_live(m, member))]:
            if joining.incident_id != cluster.id:
                self._join(cluster, joining)
        cluster.changed = True
        self.touched[cluster.id] = cluster
        return cluster

    def notices(self, now: datetime) -> dict[int, list[bytes]]:
        """One notice per formed incident the batch formed, grew or merged, carried by the
        batch's last message in it."""
        found: dict[int, list[bytes]] = {}
        for incident, event in self.events.items():
            cluster = self.touched[incident]
            body: dict[str, object] = {
                "schema": NOTICE_SCHEMA,
                "event": event,
                "at": now.isoformat(),
                "incident": snapshot(cluster).model_dump(mode="json"),
                "last_seen": cluster.last_seen.isoformat(),
            }
            carrier = self.last.get(incident)
            if cluster.merged_into is not None:
                body["merged_into"] = f"{PREFIX}{cluster.merged_into}"
                carrier = self.last.get(cluster.merged_into)
            if carrier is None:
                continue
            found.setdefault(carrier, []).append(json.dumps(body, ensure_ascii=False).encode())
        return found

    def _similar(self, member: Member, sig: Signature) -> list[tuple[Member, float]]:
        """Candidates within the window, each with its similarity as a share of what it
        needs (1.0: similar), all compared in one vector operation."""
        anchored: dict[str, bool] = {}
        found: dict[str, Member] = {}
        window, at = self.d.window_s, member.at
        for key in sig.keys:
            is_anchor = key in sig.anchors
            for other in self.near.by_band.get(key, ()):
                if abs(at - other.at) > window or other.case_open_id == member.case_open_id:
                    continue
                name = other.case_open_id
                anchored[name] = anchored.get(name, False) or is_anchor
                found[name] = other
        if not found:
            return []
        others = list(found.values())
        shares = np.count_nonzero(np.stack([o.values for o in others]) == sig.values, axis=1)
        threshold = self.d.settings.similarity * PERMUTATIONS
        return [
            (other, float(same) / (threshold / (2 if anchored[other.case_open_id] else 1)))
            for other, same in zip(others, shares.tolist(), strict=True)
        ]

    def _in_live(self, other: Member, member: Member) -> bool:
        cluster = self.clusters.get(other.incident_id or 0)
        return cluster is not None and self._is_live(cluster, member)

    def _is_live(self, cluster: Cluster, member: Member) -> bool:
        return (
            cluster.status == "formed" and cluster.last_seen >= member.received_at - self.d.window
        )

    def _live(self, member: Member, similar: list[Member]) -> list[Cluster]:
        """The live incidents of similar messages: the one with most customers first (then
        the oldest)."""
        live = {
            cluster.id: cluster
            for m in similar
            if (cluster := self.clusters.get(m.incident_id or 0)) is not None
            and self._is_live(cluster, member)
        }
        return sorted(live.values(), key=lambda c: (-c.customers, c.id))

    def _form(self, member: Member, loose: list[Member]) -> Cluster:
        first = min([member, *loose], key=lambda m: m.received_at)
        cluster = Cluster(
            self._take_id(),
            "formed",
            first.received_at,
            first.received_at,
            self.now,
            0,
            sample_subject=(first.subject or member.subject or None),
            complete=True,
            stored=False,
        )
        self.clusters[cluster.id] = cluster
        self.events[cluster.id] = "formed"
        return cluster

    def _merge(self, into: Cluster, other: Cluster) -> None:
        """Two incidents shown to be one: the other's messages move into `into`."""
        records.complete(self.session, [into, other])
        into.size += other.size
        into.known |= other.known
        into.customers = len(into.known)
        into.first_seen = min(into.first_seen, other.first_seen)
        into.last_seen = max(into.last_seen, other.last_seen)
        other.status, other.merged_into, other.changed = "merged", into.id, True
        self.touched[other.id] = other
        self.merged.append((other.id, into.id))
        for member in self.near.members.values():
            if member.incident_id == other.id:
                member.incident_id = into.id
        for members in self.near.by_band.values():
            for member in members:
                if member.incident_id == other.id:
                    member.incident_id = into.id
        self.events[other.id] = "merged"

    def _join(self, cluster: Cluster, member: Member) -> None:
        member.incident_id = cluster.id
        if member.stored:
            self.moved.append(member)
        cluster.size += 1
        if member.customer_id not in cluster.known:  # it knows every candidate it holds
            cluster.known.add(member.customer_id)
            cluster.customers += 1
        cluster.first_seen = min(cluster.first_seen, member.received_at)
        cluster.last_seen = max(cluster.last_seen, member.received_at)

    def _take_id(self) -> int:
        if self._next is None:
            self._next = records.next_id(self.session)
        self._next += 1
        return self._next - 1


def _automatic(case: CaseOpen) -> bool:
    """Auto-replies, bounces, mailing-list mail and spam say nothing about a problem."""
    flags = case.flags
    return flags.auto_reply or flags.bounce or flags.mailing_list or flags.spam == "spam"


def snapshot(cluster: Cluster) -> Incident:
    """The incident as a forwarded case carries it."""
    return Incident(
        id=f"{PREFIX}{cluster.id}",
        size=cluster.size,
        customers=cluster.customers,
        first_seen=cluster.first_seen,
        formed_at=cluster.formed_at,
        sample_subject=(cluster.sample_subject or None) and cluster.sample_subject[:300],
    )
