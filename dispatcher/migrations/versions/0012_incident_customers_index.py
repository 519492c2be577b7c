"""incident_messages: indexed by incident and customer

Whether an incident holds a customer is one seek in the index on (incident_id, customer_id),
so a batch asks only about the customers who may join an incident: before, it read every
member of each incident near it, thousands of rows per batch inside a storm. The index on
incident_id alone is its first column and goes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_incident_messages_incident_id_customer_id",
        "incident_messages",
        ["incident_id", "customer_id"],
    )
    op.drop_index("ix_incident_messages_incident_id", table_name="incident_messages")


def downgrade() -> None:
    op.create_index("ix_incident_messages_incident_id", "incident_messages", ["incident_id"])
    op.drop_index("ix_incident_messages_incident_id_customer_id", table_name="incident_messages")
