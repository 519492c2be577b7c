"""contacts per customer, channel and day as counters; the acknowledgement with its message

Contact history was counted from the messages table for every message; the dispatcher now
keeps a counter per customer, channel and UTC day, filled here from the messages already kept.
A message keeps the acknowledgement request it caused (re-sent with its forward after a crash)
in `ack`; the forward itself is the stored `body`, so the separate `forward` copy goes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_counts",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contact_counts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("customer_id", "channel", "day", name=op.f("pk_contact_counts")),
    )
    utc_day = (
        "(received_at AT TIME ZONE 'UTC')::date"
        if op.get_bind().dialect.name == "postgresql"
        else "date(received_at)"
    )
    op.execute(
        "INSERT INTO contact_counts (customer_id, channel, day, count) "
        f"SELECT customer_id, channel, {utc_day}, count(*) FROM messages "
        f"GROUP BY customer_id, channel, {utc_day}"
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("ack", sa.Text(), nullable=True))
        batch.drop_column("forward")


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("forward", sa.Text(), nullable=True))
        batch.drop_column("ack")
    op.drop_table("contact_counts")
