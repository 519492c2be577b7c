"""API keys in the store: made, listed and revoked by `ingest keys`, read by every channels
process. A key is 32 random bytes; the store keeps its SHA-256 (a key that random needs no
slow hash: there is nothing to guess from a digest) and its first characters, to recognise it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from dispatcher.access.tables import ApiKey

KEY_PREFIX = "ik_"
SHOWN_PREFIX = 10


class KeyProblem(Exception):
    """A key operation that cannot be done (a name taken, an unknown key); str() says why."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key as the store knows it (never the key itself)."""

    name: str
    prefix: str
    scopes: tuple[str, ...]
    rate_limit: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What a channels process needs of a key that is not revoked."""

    name: str
    digest: str
    scopes: frozenset[str]
    rate_limit: int | None


def digest_of(key: str) -> str:
    """The SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: a recognisable prefix and 32 random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create(
    session: Session, name: str, scopes: Iterable[str], rate_limit: int | None, now: datetime
) -> str:
    """Store a new key under `name`; return the key (the only time it is seen)."""
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyProblem(f"a key named {name!r} exists (names stay taken after a revocation)")
    key = new_key()
    session.add(
        ApiKey(
            name=name,
            digest=digest_of(key),
            prefix=key[:SHOWN_PREFIX],
            scopes=" ".join(sorted(set(scopes))),
            rate_limit=rate_limit,
            created_at=now,
        )
    )
    return key


def listed(session: Session) -> list[KeyRecord]:
    """Every key, oldest first, revoked ones included."""
    rows = session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [
        KeyRecord(
            row.name,
            row.prefix,
            tuple(row.scopes.split()),
            row.rate_limit,
            row.created_at,
            row.last_used_at,
            row.revoked_at,
        )
        for row in rows
    ]


def revoke(session: Session, name: str, now: datetime) -> bool:
    """Revoke the key `name`; False when it already was. KeyProblem for an unknown name."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise KeyProblem(f"no key named {name!r}")
    if row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def active(session: Session) -> list[ActiveKey]:
    """The keys not revoked: what every channels process reloads each half second."""
    rows = session.execute(
        select(ApiKey.name, ApiKey.digest, ApiKey.scopes, ApiKey.rate_limit).where(
            ApiKey.revoked_at.is_(None)
        )
    )
    return [
        ActiveKey(name, digest, frozenset(scopes.split()), rate)
        for name, digest, scopes, rate in rows
    ]


def record_use(session: Session, last_used: dict[str, datetime]) -> None:
    """Set `last_used_at` of the keys named, in one statement for all of them."""
    if not last_used:
        return
    statement = (
        update(ApiKey.__table__)  # type: ignore[arg-type]
        .where(ApiKey.__table__.c.name == bindparam("key_name"))
        .values(last_used_at=bindparam("used"))
    )
    session.execute(statement, [{"key_name": n, "used": t} for n, t in last_used.items()])
