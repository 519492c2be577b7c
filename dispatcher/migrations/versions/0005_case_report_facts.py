"""cases keep what triage decided (bucket, category, product, SLA due times), their topic
and their first response; indexes for the voice-of-the-customer report

The report counts cases by bucket, category and product, measures responses against the SLA
and groups recurring problems by topic, all in SQL: so these live on the case, not only in
the stored forward (which retention deletes), and the first response is kept on the case as
the helpdesk's events arrive. Existing cases are filled from the forward of the message that
opened them, where it is still kept, and from their events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 2000
FACTS = ("bucket", "category", "product", "topic", "response_due", "resolution_due")


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("bucket", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("category", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("product", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("topic", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("response_due", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution_due", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE cases SET first_response_at = (SELECT min(e.at) FROM case_events e "
        "WHERE e.case_id = cases.id AND e.kind IN ('responded', 'resolved', 'closed'))"
    )
    op.create_index(op.f("ix_cases_opened_at"), "cases", ["opened_at"])
    # Covering: contacts by channel and time, per customer and case, never touch the bodies.
    op.create_index(
        op.f("ix_messages_received_at_channel_customer_id_case_id"),
        "messages",
        ["received_at", "channel", "customer_id", "case_id"],
    )
    op.create_index(
        op.f("ix_case_events_kind_case_id_at"), "case_events", ["kind", "case_id", "at"]
    )
    _fill_existing_cases()


def downgrade() -> None:
    op.drop_index(op.f("ix_case_events_kind_case_id_at"), table_name="case_events")
    op.drop_index(
        op.f("ix_messages_received_at_channel_customer_id_case_id"), table_name="messages"
    )
    op.drop_index(op.f("ix_cases_opened_at"), table_name="cases")
    with op.batch_alter_table("cases") as batch:
        for column in ("first_response_at", "resolution_due", "response_due", "topic"):
            batch.drop_column(column)
        for column in ("product", "category"):
            batch.drop_column(column)
        batch.drop_column("bucket")


def _fill_existing_cases() -> None:
    from dispatcher.topics import topic_of  # the same function the dispatcher uses

    bind = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.Integer()),
        sa.column("bucket", sa.String()),
        sa.column("category", sa.String()),
        sa.column("product", sa.String()),
        sa.column("topic", sa.String()),
        sa.column("response_due", sa.DateTime(timezone=True)),
        sa.column("resolution_due", sa.DateTime(timezone=True)),
    )
    update = (
        sa.update(cases)
        .where(cases.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(name) for name in FACTS})
    )
    rows: list[dict[str, Any]] = []
    for case_id, subject, body in _opening_forwards(bind):
        forward = json.loads(body) if body else {}
        triage = forward.get("triage") or {}
        sla = triage.get("sla") or {}
        rows.append(
            {
                "b_id": case_id,
                "bucket": triage.get("bucket"),
                "category": triage.get("category"),
                "product": triage.get("product"),
                "topic": topic_of(subject, forward.get("text"), forward.get("language")),
                "response_due": _instant(sla.get("response_due")),
                "resolution_due": _instant(sla.get("resolution_due")),
            }
        )
        if len(rows) >= BATCH:
            bind.execute(update, rows)
            rows.clear()
    if rows:
        bind.execute(update, rows)


def _opening_forwards(bind: sa.Connection) -> Iterator[tuple[int, str | None, str | None]]:
    """Every case with the forward of the message that opened it (None once pruned), a page
    of cases at a time."""
    query = sa.text(
        "SELECT c.id, c.subject, m.body FROM cases c "
        "LEFT JOIN messages m ON m.case_id = c.id AND m.verdict = 'new' "
        "WHERE c.id > :after ORDER BY c.id LIMIT :page"
    )
    after = 0
    while True:
        rows = bind.execute(query, {"after": after, "page": BATCH}).all()
        if not rows:
            return
        for case_id, subject, body in rows:
            if case_id > after:  # one opening message per case; a second row is skipped
                after = case_id
                yield case_id, subject, body


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if value else None
