"""Consumes case-open, owns the SQL store, deduplicates and forwards to team queues."""
