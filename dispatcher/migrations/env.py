"""Alembic environment: run by `dispatcher.database`, which hands over an open connection."""

from __future__ import annotations

from alembic import context

from dispatcher.access.tables import Base  # the access tables join the metadata too

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
