"""The dispatcher's SQL tables (SQLAlchemy 2 models); Alembic migrations create them.

A customer owns identities (one per normalised address); a provisional customer, made for a
sender nobody named, has `known = false`. A merged customer keeps its row and points at the
customer it was merged into (`merged_into`, always a root); its identities move to that root,
its cases and messages stay where they were and count for the root's history.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite keeps no zone: UTC is stored, and
    attached again on reading), so that comparisons in SQL are comparisons in time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    """A person or organisation contact; from the directory (`known`) or provisional."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(200))
    tier: Mapped[str | None] = mapped_column(String(50))
    is_customer: Mapped[bool | None] = mapped_column(Boolean)
    known: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class Identity(Base):
    """One normalised address of a kind (email, phone, telegram, web), owned by one customer."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    origin: Mapped[str] = mapped_column(String(16))  # message, directory or manual
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Case(Base):
    """A support case the dispatcher opened; its reference is the prefix and the id (C-12)."""

    __tablename__ = "cases"
    __table_args__ = (Index(None, "customer_id", "status"), Index(None, "opened_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16))  # open, assigned, resolved, closed
    queue: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(300))
    assignee: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(Timestamp)
    last_message_at: Mapped[datetime] = mapped_column(Timestamp)
    closed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    linked_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    # What triage decided when the case opened, and the case's topic (`dispatcher.topics`):
    # the report counts and groups by them in SQL.
    bucket: Mapped[str | None] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(200))
    product: Mapped[str | None] = mapped_column(String(200))
    topic: Mapped[str | None] = mapped_column(String(120))
    response_due: Mapped[datetime | None] = mapped_column(Timestamp)
    resolution_due: Mapped[datetime | None] = mapped_column(Timestamp)
    first_response_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """The first responded, resolved or closed event from the helpdesk."""


class CaseParticipant(Base):
    """Someone besides the case's customer who may write into the case (added by the helpdesk)."""

    __tablename__ = "case_participants"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)


class Message(Base):
    """One case-open seen, under its idempotency key, with the decision taken for it.

    `body` is the case-open as forwarded (enriched) and `ack` the acknowledgement request sent
    with it: until `forwarded` is set, a redelivery after a crash forwards exactly that again.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "source_id"),
        Index(None, "customer_id", "received_at"),
        Index(None, "customer_id", "fingerprint"),
        Index(None, "received_at", "channel", "customer_id", "case_id"),
        Index(None, "case_open_id"),  # incidents name their messages by it (the report)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(998))
    case_open_id: Mapped[str] = mapped_column(String(26))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    seen_at: Mapped[datetime] = mapped_column(Timestamp)
    conversation_key: Mapped[str | None] = mapped_column(String(300))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))  # new, duplicate, follow-up
    reason: Mapped[str] = mapped_column(String(500))
    target_queue: Mapped[str] = mapped_column(String(200))
    forwarded: Mapped[bool] = mapped_column(Boolean, default=False)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str | None] = mapped_column(Text)
    """The case-open as forwarded (enriched), kept for `ingest rules replay` and audit."""
    ack: Mapped[str | None] = mapped_column(Text)
    """The acknowledgement request forwarded with it, if any (acknowledgement/1 JSON)."""
    publish_id: Mapped[str | None] = mapped_column(String(32))
    """The publish whose copy was decided (`normalizer.model.PUBLISH_ID`): only the broker's
    redelivery of that copy may forward again."""


class ContactCount(Base):
    """Messages a customer sent on a channel on one UTC day: the contact history, kept as
    counters so that it is never counted from the messages table."""

    __tablename__ = "contact_counts"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class CaseEvent(Base):
    """What happened to a case: opened, updated, reopened by the dispatcher; assigned,
    resolved, closed, reopened by the helpdesk (`external_id` makes those idempotent)."""

    __tablename__ = "case_events"
    __table_args__ = (Index(None, "kind", "case_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(Timestamp)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    case_open_id: Mapped[str | None] = mapped_column(String(26))
    detail: Mapped[str | None] = mapped_column(String(1000))


class Acknowledgement(Base):
    """An acknowledgement requested for an address: counted for the daily cap."""

    __tablename__ = "acknowledgements"
    __table_args__ = (Index(None, "address", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[datetime] = mapped_column(Timestamp)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))


class IdentityMerge(Base):
    """The audit record of a merge (by hand or by the directory import) and of its undoing."""

    __tablename__ = "identity_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    action: Mapped[str] = mapped_column(String(16))  # merge or unmerge
    kept_customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    merged_customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    moved: Mapped[str] = mapped_column(Text)  # JSON: identity ids and member customer ids
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(500))
    undoes: Mapped[int | None] = mapped_column(ForeignKey("identity_merges.id"))
    undone_by: Mapped[int | None] = mapped_column(ForeignKey("identity_merges.id"))


class KbCount(Base):
    """How often an article was suggested (with a case), shown (on the contact form) and
    accepted as the answer (a deflected contact), per UTC day."""

    __tablename__ = "kb_counts"

    article_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # suggested, shown, accepted
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class Deflection(Base):
    """A contact the knowledge base answered: the customer said an article solved it, so no
    case was opened; `answer` is their one line of satisfaction, if they wrote one."""

    __tablename__ = "deflections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(26), unique=True)
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    article_id: Mapped[str] = mapped_column(String(100), index=True)
    language: Mapped[str | None] = mapped_column(String(16))
    touchpoint: Mapped[str | None] = mapped_column(String(200))
    answer: Mapped[str | None] = mapped_column(String(300))


class Incident(Base):
    """Similar messages of enough customers within a window: `formed` (an incident to
    coordinate), or `merged` into another when a message showed two to be one."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # formed or merged
    first_seen: Mapped[datetime] = mapped_column(Timestamp)
    last_seen: Mapped[datetime] = mapped_column(Timestamp, index=True)
    formed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    size: Mapped[int] = mapped_column(Integer)
    customers: Mapped[int] = mapped_column(Integer)
    sample_subject: Mapped[str | None] = mapped_column(String(300))
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))


class IncidentMessage(Base):
    """A message compared for incidents: its MinHash signature, its customer and the
    incident it is part of, if any."""

    __tablename__ = "incident_messages"
    # Read by incident, and whether an incident holds a customer (migration 0012).
    __table_args__ = (Index(None, "incident_id", "customer_id"),)

    case_open_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    subject: Mapped[str | None] = mapped_column(String(300))


class IncidentBand(Base):
    """One LSH band of a message's signature: messages sharing a band are candidates."""

    __tablename__ = "incident_bands"
    # A band's latest rows are one range of the key; on SQLite the key is the table itself
    # (no rowid), so no index is kept beside it (migration 0009).
    __table_args__ = (
        PrimaryKeyConstraint("band", "received_at", "case_open_id"),
        {"sqlite_with_rowid": False},
    )

    band: Mapped[int] = mapped_column(BigInteger)
    case_open_id: Mapped[str] = mapped_column(String(26))
    received_at: Mapped[datetime] = mapped_column(Timestamp)
