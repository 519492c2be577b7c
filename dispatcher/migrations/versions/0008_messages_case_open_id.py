"""an index on messages.case_open_id, for the report's incidents

An incident names its messages by case-open id; the report counts the cases and queues of
each incident by joining those to the messages that opened or updated the cases, which
without this index reads every message.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_messages_case_open_id"), "messages", ["case_open_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_case_open_id"), table_name="messages")
