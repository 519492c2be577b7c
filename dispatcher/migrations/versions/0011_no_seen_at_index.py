"""messages: no index on seen_at

No query reads messages by the time they were seen (retention and reports go by received_at),
yet every message written kept that index up to date: one B-tree insert in seven for nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_seen_at", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_seen_at", "messages", ["seen_at"], unique=False)
