"""messages.publish_id: which copy of a case-open was decided

A case-open can be in the queue twice (a publish whose confirm was lost, sent again from the
spool). The dispatcher forwards again only on the broker's redelivery of the copy it decided,
named by the id every publish carries; before this, a redelivered second copy could be
forwarded a second time when the first copy's forward had gone out but was not yet marked.
Rows from before have none; their redeliveries are told apart as before, by case-open id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("publish_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as table:
        table.drop_column("publish_id")
