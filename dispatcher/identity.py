"""Customer identities: who a sender is, provisional customers, merges with an audit trail.

Only an exact normalised address links a message to a customer; a display name never does.
Locks, so that several dispatchers (and the CLI) agree: an identity is locked before it is
looked up or moved (a PostgreSQL advisory lock; SQLite has a single writer anyway), then the
customers involved, by row, in id order. Identities always belong to a root customer: a
merge moves them, an unmerge moves them back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, insert, or_, select, text, update
from sqlalchemy.orm import Session

from dispatcher.database import bound_pairs, pairs_in
from dispatcher.tables import Customer, Identity, IdentityMerge

KINDS = ("email", "phone", "telegram", "web")
CUSTOMERS = Customer.__table__
"""The table itself: the batch's statements on it are Core, without the ORM's compile step."""

IdentityKey = tuple[str, str]
"""(kind, normalised address)"""


class CustomerError(Exception):
    """A merge, an unmerge or a lookup that cannot be done; the message says why."""


def normalise(kind: str, address: str) -> IdentityKey:
    """The form identities are stored in: emails lower-cased, everything trimmed."""
    address = address.strip()
    return kind, address.lower() if kind == "email" else address


def lock_identities(session: Session, keys: Iterable[IdentityKey]) -> None:
    """Hold each identity's lock until the transaction ends, taken in one order (against
    deadlocks) by one statement."""
    if session.get_bind().dialect.name != "postgresql":
        return
    wanted = sorted({_lock_key(key) for key in keys})
    if wanted:
        session.execute(_LOCK_IDENTITIES, {"keys": wanted})


_LOCK_IDENTITIES = text(
    "SELECT pg_advisory_xact_lock(k) FROM "
    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS ordered"
)


@cache
def _identities_of(dialect: str) -> Select[Any]:
    identities = Identity.__table__
    return select(identities.c.kind, identities.c.address, identities.c.customer_id).where(
        pairs_in(identities.c.kind, identities.c.address, dialect)
    )


def lock_customers(session: Session, ids: Iterable[int], *, skip_locked: bool = False) -> set[int]:
    """Lock these customer rows until the transaction ends, in id order. With `skip_locked`,
    rows another transaction holds are not waited for: their ids are returned. PostgreSQL
    only: a SQLite transaction begins holding the store's only write lock (BEGIN IMMEDIATE).

    FOR NO KEY UPDATE: it excludes the other dispatchers as FOR UPDATE would, but not the
    foreign-key checks of rows naming the customer, which another dispatcher's transaction
    makes (for a message it changes twice) while it may hold the incident lock."""
    wanted = sorted(set(ids))
    if not wanted or session.get_bind().dialect.name != "postgresql":
        return set()
    locked = session.scalars(_LOCK_CUSTOMERS[skip_locked], {"ids": wanted}).all()
    return set(wanted).difference(locked) if skip_locked else set()


_LOCK_CUSTOMERS = {
    skip: select(CUSTOMERS.c.id)
    .where(CUSTOMERS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(CUSTOMERS.c.id)
    .with_for_update(skip_locked=skip, key_share=True)
    for skip in (False, True)
}


def find_identity(session: Session, key: IdentityKey) -> Identity | None:
    kind, address = key
    return session.scalars(
        select(Identity).where(Identity.kind == kind, Identity.address == address)
    ).one_or_none()


def resolve_sender(session: Session, key: IdentityKey, name: str | None, now: datetime) -> int:
    """The root customer of this address; a provisional one (unknown) if nobody has it yet.

    The caller holds the identity's lock (see `lock_identities`).
    """
    found = find_identity(session, key)
    if found is not None:
        return found.customer_id
    customer = Customer(known=False, name=name, created_at=now, updated_at=now)
    session.add(customer)
    session.flush()
    session.add(
        Identity(
            kind=key[0], address=key[1], customer_id=customer.id, origin="message", created_at=now
        )
    )
    session.flush()
    return customer.id


def resolve_senders(
    session: Session, names: dict[IdentityKey, str | None], now: datetime
) -> dict[IdentityKey, int]:
    """`resolve_sender` for many addresses (their locks held): known ones in one query, a
    provisional customer for each unknown one, made with one insert per table."""
    if not names:
        return {}
    dialect = session.get_bind().dialect.name
    found = session.execute(_identities_of(dialect), bound_pairs(list(names), dialect))
    roots = {(row.kind, row.address): row.customer_id for row in found}
    unknown = sorted(key for key in names if key not in roots)
    if unknown:
        made = session.execute(
            insert(Customer.__table__).returning(
                Customer.__table__.c.id, sort_by_parameter_order=True
            ),
            [
                {"known": False, "name": names[key], "created_at": now, "updated_at": now}
                for key in unknown
            ],
        ).scalars()
        for key, customer_id in zip(unknown, made, strict=True):
            roots[key] = customer_id
        session.execute(
            insert(Identity.__table__),
            [
                {
                    "kind": kind,
                    "address": address,
                    "customer_id": roots[(kind, address)],
                    "origin": "message",
                    "created_at": now,
                }
                for kind, address in unknown
            ],
        )
    return roots


def find_customer(session: Session, ref: str) -> Customer:
    """A customer by id (`12`), external id (`ext:ACME-7`) or identity (`email:ann@x.org`),
    followed to the root it is merged into."""
    customer: Customer | None
    kind, _, value = ref.partition(":")
    if ref.isdigit():
        customer = session.get(Customer, int(ref))
    elif kind == "ext" and value:
        customer = session.scalars(select(Customer).where(Customer.external_id == value)).first()
    elif kind in KINDS and value:
        identity = find_identity(session, normalise(kind, value))
        customer = session.get(Customer, identity.customer_id) if identity else None
    else:
        raise CustomerError(f"{ref!r}: give a customer id, ext:EXTERNAL-ID or KIND:ADDRESS")
    if customer is None:
        raise CustomerError(f"no customer {ref}")
    while customer.merged_into is not None:
        customer = session.get_one(Customer, customer.merged_into)
    return customer


def merge(
    session: Session, kept_id: int, merged_id: int, actor: str, reason: str | None = None
) -> IdentityMerge:
    """Merge customer `merged_id` into `kept_id` (both roots): identities and members move."""
    if kept_id == merged_id:
        raise CustomerError(f"customer {kept_id} cannot be merged into itself")
    lock_identities(session, _identity_keys(session, [merged_id]))
    lock_customers(session, [kept_id, merged_id])
    merged = session.get_one(Customer, merged_id)
    if merged.merged_into is not None:
        raise CustomerError(f"customer {merged_id} is already merged into {merged.merged_into}")
    identities = _identity_ids(session, [merged_id])
    members = session.scalars(select(Customer.id).where(Customer.merged_into == merged_id)).all()
    _move(session, identities, members, kept_id)
    merged.merged_into = kept_id
    merged.updated_at = datetime.now(UTC)
    record = IdentityMerge(
        at=datetime.now(UTC),
        action="merge",
        kept_customer_id=kept_id,
        merged_customer_id=merged_id,
        moved=json.dumps({"identities": identities, "members": list(members)}),
        actor=actor,
        reason=reason,
    )
    session.add(record)
    session.flush()
    return record


def unmerge(
    session: Session, merge_id: int, actor: str, reason: str | None = None
) -> IdentityMerge:
    """Undo a recorded merge: the merged customer gets its identities and members back."""
    record = session.get(IdentityMerge, merge_id)
    if record is None or record.action != "merge":
        raise CustomerError(f"no merge {merge_id}")
    if record.undone_by is not None:
        raise CustomerError(f"merge {merge_id} was already undone by {record.undone_by}")
    moved = json.loads(record.moved)
    kept, merged = record.kept_customer_id, record.merged_customer_id
    lock_identities(session, _identity_keys(session, [kept]))
    lock_customers(session, [kept, merged])
    _move(session, moved["identities"], moved["members"], merged)
    session.get_one(Customer, merged).merged_into = None
    undo = IdentityMerge(
        at=datetime.now(UTC),
        action="unmerge",
        kept_customer_id=kept,
        merged_customer_id=merged,
        moved=record.moved,
        actor=actor,
        reason=reason,
        undoes=record.id,
    )
    session.add(undo)
    session.flush()
    record.undone_by = undo.id
    return undo


def _move(session: Session, identities: Sequence[int], members: Sequence[int], to: int) -> None:
    if identities:
        session.execute(update(Identity).where(Identity.id.in_(identities)).values(customer_id=to))
    if members:
        session.execute(update(Customer).where(Customer.id.in_(members)).values(merged_into=to))
    session.expire_all()


def _identity_ids(session: Session, customers: Sequence[int]) -> list[int]:
    return list(
        session.scalars(
            select(Identity.id).where(Identity.customer_id.in_(customers)).order_by(Identity.id)
        )
    )


def _identity_keys(session: Session, customers: Sequence[int]) -> list[IdentityKey]:
    rows = session.execute(
        select(Identity.kind, Identity.address).where(
            or_(*(Identity.customer_id == c for c in customers))
        )
    )
    return [(row.kind, row.address) for row in rows]


def _lock_key(key: IdentityKey) -> int:
    digest = hashlib.sha256(f"{key[0]}:{key[1]}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
