"""The JSON API's tables: API keys, idempotency records and rate counts (migration 0005)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.tables import Base, Timestamp


class ApiKey(Base):
    """An API key issued to one integration. Only the key's SHA-256 is kept: the key itself
    is shown once, when made. A revoked key keeps its row (and its name) for the record."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to recognise it
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests per window; None: default
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class IdempotencyRecord(Base):
    """The answer given to the first request with an idempotency key, until `expires_at`:
    a repeat with the same request digest gets the same status and case-open id."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request, canonical JSON
    case_id: Mapped[str] = mapped_column(String(26))
    status: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class RateCount(Base):
    """Requests counted for one bucket (an API key or a client address) in one fixed window,
    summed over every channels process."""

    __tablename__ = "rate_counts"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # its start, Unix seconds
    count: Mapped[int] = mapped_column(Integer)
