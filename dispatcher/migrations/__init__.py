"""Alembic migrations of the dispatcher store, shipped inside the package."""
