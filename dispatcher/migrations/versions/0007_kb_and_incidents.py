"""knowledge-base counters and deflected contacts; incidents, their messages and LSH bands

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_counts",
        sa.Column("article_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("article_id", "kind", "day", name=op.f("pk_kb_counts")),
    )
    op.create_table(
        "deflections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=26), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("article_id", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("touchpoint", sa.String(length=200), nullable=True),
        sa.Column("answer", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deflections")),
        sa.UniqueConstraint("event_id", name=op.f("uq_deflections_event_id")),
    )
    op.create_index(op.f("ix_deflections_at"), "deflections", ["at"])
    op.create_index(op.f("ix_deflections_article_id"), "deflections", ["article_id"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("formed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("sample_subject", sa.String(length=300), nullable=True),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["incidents.id"], name=op.f("fk_incidents_merged_into_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_last_seen"), "incidents", ["last_seen"])
    op.create_table(
        "incident_messages",
        sa.Column("case_open_id", sa.String(length=26), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_messages_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("case_open_id", name=op.f("pk_incident_messages")),
    )
    op.create_index(op.f("ix_incident_messages_received_at"), "incident_messages", ["received_at"])
    op.create_index(op.f("ix_incident_messages_incident_id"), "incident_messages", ["incident_id"])
    op.create_table(
        "incident_bands",
        sa.Column("band", sa.BigInteger(), nullable=False),
        sa.Column("case_open_id", sa.String(length=26), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("band", "case_open_id", name=op.f("pk_incident_bands")),
    )
    op.create_index(
        op.f("ix_incident_bands_band_received_at"), "incident_bands", ["band", "received_at"]
    )


def downgrade() -> None:
    op.drop_table("incident_bands")
    op.drop_table("incident_messages")
    op.drop_table("incidents")
    op.drop_table("deflections")
    op.drop_table("kb_counts")
