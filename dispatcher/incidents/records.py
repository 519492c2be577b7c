"""The incident tables as one batch reads and writes them: one statement per kind of fact.

Read: the messages sharing a band with the batch within the window (bands joined to their
messages), the incidents those belong to, and the customers already in them. Written: the
batch's messages and bands, the earlier messages that joined an incident, new incidents and
changed ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import numpy as np
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TextClause, bindparam

from dispatcher.database import insert_rows, with_binary_arrays
from dispatcher.incidents.signature import from_bytes
from dispatcher.tables import Incident, IncidentBand, IncidentMessage

BANDS_T = IncidentBand.__table__
MESSAGES_T = IncidentMessage.__table__
INCIDENTS_T = Incident.__table__
PER_BAND = 24
"""Neighbours read per band: enough to find a running incident (any one of its members) or
to form one (`min_customers` alike), few enough that a batch inside a storm stays cheap."""
INCIDENT_LOCK = 0x1D15_0002
"""PostgreSQL advisory lock taken by a batch that joins or forms incidents: two dispatchers
seeing halves of one storm then decide one after the other, the second seeing the first."""


@dataclass(slots=True)
class Member:
    """A message compared for incidents, from the store or from this batch."""

    case_open_id: str
    customer_id: int
    received_at: datetime
    values: np.ndarray
    incident_id: int | None
    at: float
    """received_at in seconds, for the window checks of every candidate pair."""
    subject: str | None = None
    stored: bool = True

    @classmethod
    def of(
        cls,
        case_open_id: str,
        customer_id: int,
        received_at: datetime,
        values: np.ndarray,
        subject: str | None,
    ) -> Member:
        """A message of this batch, in no incident yet."""
        return cls(
            case_open_id,
            customer_id,
            received_at,
            values,
            None,
            received_at.timestamp(),
            subject,
            stored=False,
        )


@dataclass(slots=True)
class Cluster:
    """An incident: formed, or merged into another."""

    id: int
    status: str
    first_seen: datetime
    last_seen: datetime
    formed_at: datetime | None
    size: int
    customers: int = 0
    """How many customers it holds."""
    known: set[int] = field(default_factory=set)
    """Customers known to be in it: of those who may join it in this batch, each one it
    holds (see `clusters`), and those who joined; every one once `complete`."""
    complete: bool = False
    sample_subject: str | None = None
    stored: bool = True
    changed: bool = False
    merged_into: int | None = None


@dataclass(slots=True)
class Nearby:
    """What the store holds near the batch: members by band, and their incidents."""

    by_band: dict[int, list[Member]] = field(default_factory=lambda: defaultdict(list))
    members: dict[str, Member] = field(default_factory=dict)


# Each band's latest rows within its own window, a range of the key (band, received_at, ...),
# LIMIT per band: a window function over the bands would step through every row of a common
# band, and one window for the whole batch would read hours of rows when a batch holds
# messages received hours apart (a backlog).
LATEST_PER_BAND_SQLITE = text(
    "SELECT json_extract(wanted.value, '$[0]'), (SELECT group_concat(case_open_id) FROM ("
    " SELECT case_open_id FROM incident_bands"
    " WHERE band = json_extract(wanted.value, '$[0]')"
    " AND received_at >= json_extract(wanted.value, '$[1]')"
    " AND received_at <= json_extract(wanted.value, '$[2]')"
    " ORDER BY received_at DESC LIMIT :per_band)) FROM json_each(:bands) AS wanted"
)
LATEST_PER_BAND_POSTGRESQL = (  # see `with_binary_arrays`
    "SELECT wanted.band, string_agg(latest.case_open_id, ',')"
    " FROM unnest(CAST(%(bands)b AS bigint[]), CAST(%(since)b AS timestamptz[]),"
    " CAST(%(until)b AS timestamptz[])) AS wanted(band, since, until)"
    " CROSS JOIN LATERAL (SELECT case_open_id FROM incident_bands"
    " WHERE band = wanted.band AND received_at >= wanted.since"
    " AND received_at <= wanted.until"
    " ORDER BY received_at DESC LIMIT %(per_band)s) AS latest GROUP BY wanted.band"
)
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
"""How SQLAlchemy's DateTime stores a (UTC) time on SQLite, as the JSON parameter must say it."""

Window = tuple[datetime, datetime]
"""The times a band's neighbours may have been received in: [since, until]."""


def _parameters(windows: Mapping[int, Window], dialect: str) -> dict[str, object]:
    bands = sorted(windows)
    if dialect == "sqlite":
        shown: dict[datetime, str] = {}  # a batch's bands share a few dozen times
        for window in windows.values():
            for time in window:
                if time not in shown:
                    shown[time] = time.astimezone(UTC).strftime(SQLITE_TIME)
        rows = [[band, shown[windows[band][0]], shown[windows[band][1]]] for band in bands]
        return {"bands": json.dumps(rows)}
    return {
        "bands": bands,
        "since": [windows[band][0] for band in bands],
        "until": [windows[band][1] for band in bands],
    }


@dataclass(frozen=True, slots=True)
class Facts:
    """What never changes of a stored member."""

    customer_id: int
    received_at: datetime
    values: np.ndarray
    subject: str | None
    at: float
    """received_at in seconds."""


class Remembered:
    """The facts of the latest `size` members this dispatcher read or wrote, so that a batch
    reads again only what changes (their incidents): with a dense stream most neighbours of
    a batch are neighbours of the one before."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._facts: dict[str, Facts] = {}

    def get(self, case_open_id: str) -> Facts | None:
        return self._facts.get(case_open_id)

    def add_members(self, members: Iterable[Member]) -> None:
        """Remember members this dispatcher wrote."""
        for m in members:
            self.add(m.case_open_id, Facts(m.customer_id, m.received_at, m.values, m.subject, m.at))

    def add(self, case_open_id: str, facts: Facts) -> None:
        known = self._facts
        known[case_open_id] = facts
        if len(known) > self.size:  # the oldest out: dicts keep their order of insertion
            del known[next(iter(known))]


def _members_in(session: Session, columns: str, ids: Collection[str], extra: str = "") -> list:
    if session.get_bind().dialect.name == "sqlite":
        wanted = {"ids": json.dumps(sorted(ids))}
        return list(session.execute(_sqlite_members(columns, extra), wanted))
    statement = (
        f"SELECT {columns} FROM incident_messages"
        f" WHERE case_open_id = ANY(CAST(%(ids)b AS text[])){extra}"
    )
    return list(with_binary_arrays(session, statement, {"ids": sorted(ids)}))


@cache
def _sqlite_members(columns: str, extra: str) -> TextClause:
    return text(
        f"SELECT {columns} FROM incident_messages"
        f" WHERE case_open_id IN (SELECT value FROM json_each(:ids)){extra}"
    )


def _read_facts(session: Session, ids: Collection[str]) -> dict[str, Facts]:
    rows = _members_in(session, "case_open_id, customer_id, received_at, signature, subject", ids)
    if not rows:
        return {}
    values = from_bytes(b"".join(row.signature for row in rows)).reshape(len(rows), -1)
    found = {}
    for (case_open_id, customer, received_at, _, subject), own in zip(rows, values, strict=True):
        if isinstance(received_at, str):  # a raw statement gets SQLite's text
            received_at = datetime.fromisoformat(received_at).replace(tzinfo=UTC)
        found[case_open_id] = Facts(customer, received_at, own, subject, received_at.timestamp())
    return found


def nearby(
    session: Session,
    windows: Mapping[int, Window],
    remembered: Remembered,
    per_band: int = PER_BAND,
) -> Nearby:
    """Stored messages sharing one of the bands, each received within its band's window: the
    latest `per_band` of each band, so that a storm of thousands costs a batch no more than a
    few. Each band's members are listed oldest first.

    Three statements: which messages each band holds, the facts of those not remembered, and
    which of them are in an incident now (another dispatcher may have placed them)."""
    found = Nearby()
    if not windows:
        return found
    dialect = session.get_bind().dialect.name
    parameters = _parameters(windows, dialect) | {"per_band": per_band}
    if dialect == "postgresql":
        listed = with_binary_arrays(session, LATEST_PER_BAND_POSTGRESQL, parameters).all()
    else:
        listed = session.execute(LATEST_PER_BAND_SQLITE, parameters).all()
    pairs = [(band, name) for band, names in listed if names for name in names.split(",")]
    if not pairs:
        return found
    recall = remembered.get
    facts = {name: recall(name) for _, name in pairs}
    unknown = [name for name, known in facts.items() if known is None]
    if unknown:
        read = _read_facts(session, unknown)
        for name, known in read.items():
            remembered.add(name, known)
        facts |= read
    placed = dict(
        _members_in(session, "case_open_id, incident_id", facts, " AND incident_id IS NOT NULL")
    )
    members = found.members
    for case_open_id, known in facts.items():
        assert known is not None, case_open_id
        members[case_open_id] = Member(
            case_open_id,
            known.customer_id,
            known.received_at,
            known.values,
            placed.get(case_open_id),
            known.at,
            known.subject,
        )
    by_band = found.by_band
    for band, case_open_id in reversed(pairs):  # each band's latest came first
        by_band[band].append(members[case_open_id])
    return found


def lock(session: Session) -> bool:
    """Serialise incident decisions between dispatchers; True when a lock was taken now
    (PostgreSQL), False when the transaction already excludes every other writer (SQLite
    begins each one holding the write lock)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.execute(text(f"SELECT pg_advisory_xact_lock({INCIDENT_LOCK})"))
    return True


def clusters(
    session: Session, held: Collection[tuple[int, int]], candidates: Collection[int]
) -> dict[int, Cluster]:
    """The incidents of the `held` (incident, customer) pairs (the neighbours' own), each
    knowing which of the `candidates` (the customers who may join an incident in this batch)
    it holds already. An incident of fewer messages than there are candidates is read whole;
    of a larger one (a storm's holds thousands of customers) only the candidates it is not
    known to hold are looked up."""
    if not held:
        return {}
    ids = sorted({incident for incident, _ in held})
    found = {
        row.id: Cluster(
            row.id,
            row.status,
            row.first_seen,
            row.last_seen,
            row.formed_at,
            row.size,
            row.customers,
            sample_subject=row.sample_subject,
            merged_into=row.merged_into,
        )
        for row in session.execute(_INCIDENTS, {"ids": ids})
    }
    complete(session, [c for c in found.values() if c.size <= len(candidates)])
    large = {i for i, c in found.items() if not c.complete}
    known = {(incident, customer) for incident, customer in held if incident in large}
    everyone = sorted(candidates)
    asked = [(i, c) for i in sorted(large) for c in everyone if (i, c) not in known]
    for incident, customer in [*known, *_held_of(session, asked)]:
        found[incident].known.add(customer)
    return found


def complete(session: Session, wanted: Sequence[Cluster]) -> None:
    """Make these clusters know every customer they hold (a merge counts their union)."""
    stored = {c.id: c for c in wanted if c.stored and not c.complete}
    if stored:
        for incident, customer in session.execute(_INCIDENT_CUSTOMERS, {"ids": sorted(stored)}):
            stored[incident].known.add(customer)
    for cluster in wanted:
        cluster.complete = True
        cluster.customers = len(cluster.known)


def _held_of(session: Session, pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Which of these (incident, customer) pairs the store holds: an index seek each."""
    if not pairs:
        return []
    if session.get_bind().dialect.name == "sqlite":
        rows = session.execute(_HELD_SQLITE, {"pairs": json.dumps(pairs)})
    else:
        incidents, customers = zip(*pairs, strict=True)
        parameters = {"incidents": list(incidents), "customers": list(customers)}
        rows = with_binary_arrays(session, _HELD_POSTGRESQL, parameters)
    return [(incident, customer) for incident, customer in rows]


_INCIDENTS = select(INCIDENTS_T).where(INCIDENTS_T.c.id.in_(bindparam("ids", expanding=True)))
_INCIDENT_CUSTOMERS = (
    select(MESSAGES_T.c.incident_id, MESSAGES_T.c.customer_id)
    .where(MESSAGES_T.c.incident_id.in_(bindparam("ids", expanding=True)))
    .distinct()
)
_HELD_SQLITE = text(
    "SELECT json_extract(wanted.value, '$[0]'), json_extract(wanted.value, '$[1]')"
    " FROM json_each(:pairs) AS wanted WHERE EXISTS (SELECT 1 FROM incident_messages"
    " WHERE incident_id = json_extract(wanted.value, '$[0]')"
    " AND customer_id = json_extract(wanted.value, '$[1]'))"
)
_HELD_POSTGRESQL = (  # see `with_binary_arrays`
    "SELECT wanted.incident, wanted.customer"
    " FROM unnest(CAST(%(incidents)b AS bigint[]), CAST(%(customers)b AS bigint[]))"
    " AS wanted(incident, customer) WHERE EXISTS (SELECT 1 FROM incident_messages"
    " WHERE incident_id = wanted.incident AND customer_id = wanted.customer)"
)


def next_id(session: Session) -> int:
    """The number of the next incident (taken under the lock, so no two batches share it)."""
    return (session.scalar(_HIGHEST_INCIDENT) or 0) + 1


_HIGHEST_INCIDENT = select(func.max(INCIDENTS_T.c.id))


_INCIDENT_INSERT = insert(INCIDENTS_T)
_INCIDENT_UPDATE = (
    update(INCIDENTS_T)
    .where(INCIDENTS_T.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        merged_into=bindparam("b_merged"),
        last_seen=bindparam("b_last"),
        first_seen=bindparam("b_first"),
        formed_at=bindparam("b_formed"),
        size=bindparam("b_size"),
        customers=bindparam("b_customers"),
    )
)
_MERGED_MOVE = (
    update(MESSAGES_T)
    .where(MESSAGES_T.c.incident_id == bindparam("b_from"))
    .values(incident_id=bindparam("b_into"))
)
_MEMBER_MOVE = (
    update(MESSAGES_T)
    .where(MESSAGES_T.c.case_open_id == bindparam("b_id"))
    .values(incident_id=bindparam("b_incident"))
)


def write(
    session: Session,
    fresh: Sequence[tuple[Member, Sequence[int], bytes]],
    moved: Sequence[Member],
    touched: Sequence[Cluster],
    merged: Sequence[tuple[int, int]] = (),
) -> None:
    """The batch's messages (with bands), earlier messages that joined an incident, the
    incidents made or changed, and the messages of merged incidents moved to the incident
    they were merged into: incidents first, as messages name them."""
    new = [c for c in touched if not c.stored]
    if new:
        session.execute(_INCIDENT_INSERT, [_incident_row(c) for c in new])
    # A new incident merged at once names the other only after both exist.
    changed = [c for c in touched if c.changed and (c.stored or c.merged_into is not None)]
    if changed:
        session.execute(
            _INCIDENT_UPDATE,
            [
                {
                    "b_id": c.id,
                    "b_status": c.status,
                    "b_merged": c.merged_into,
                    "b_last": c.last_seen,
                    "b_first": c.first_seen,
                    "b_formed": c.formed_at,
                    "b_size": c.size,
                    "b_customers": c.customers,
                }
                for c in sorted(changed, key=lambda c: c.id)
            ],
        )
    if fresh:
        insert_rows(
            session,
            MESSAGES_T,
            [
                {
                    "case_open_id": m.case_open_id,
                    "customer_id": m.customer_id,
                    "received_at": m.received_at,
                    "signature": signature,
                    "incident_id": m.incident_id,
                    "subject": (m.subject or None) and m.subject[:300],
                }
                for m, _, signature in fresh
            ],
        )
        insert_rows(
            session,
            BANDS_T,
            [
                {"band": band, "case_open_id": m.case_open_id, "received_at": m.received_at}
                for m, bands, _ in fresh
                for band in dict.fromkeys(bands)
            ],
        )
    if merged:
        session.execute(
            _MERGED_MOVE,
            [{"b_from": old, "b_into": into} for old, into in merged],
        )
    if moved:
        session.execute(
            _MEMBER_MOVE,
            [{"b_id": x.case_open_id, "b_incident": x.incident_id} for x in moved],
        )


def _incident_row(cluster: Cluster) -> dict[str, object]:
    return {
        "id": cluster.id,
        "status": cluster.status,
        "first_seen": cluster.first_seen,
        "last_seen": cluster.last_seen,
        "formed_at": cluster.formed_at,
        "size": cluster.size,
        "customers": cluster.customers,
        "sample_subject": cluster.sample_subject,
        "merged_into": None,
    }
