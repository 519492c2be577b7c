"""Incident detection: many customers saying the same thing at once become one incident."""

NOTICE_SCHEMA = "incident/1"
"""The schema of the notices on the `incidents` queue."""
