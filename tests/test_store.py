"""The store: Alembic migrations, refusing an unmigrated store, SQLite in WAL mode, PostgreSQL,
rows inserted together."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.database import (
    create_engine,
    current_revision,
    head_revision,
    insert_rows,
    is_transient,
)
from dispatcher.store import Store
from dispatcher.tables import IncidentMessage
from tests.daemon import Daemon, ingest_command
from tests.local import LocalDaemon

NO_AUTO_MIGRATE = {"INGEST_STORE__AUTO_MIGRATE": "false"}


async def test_an_unmigrated_store_stops_start_up_with_one_clear_line(
    make_process: Callable[..., Daemon], store_url: str
) -> None:
    daemon = make_process(store_url=store_url).start(role="dispatcher", env=NO_AUTO_MIGRATE)
    assert await daemon.wait_exit(30) == 1
    lines = daemon.log_text().strip().splitlines()
    assert lines[-1] == (
        f"ingest: cannot start: the store at {store_url} is not migrated (at no revision, this "
        f"version needs {head_revision()}): run `ingest db upgrade`, or set "
        "[store] auto_migrate = true"
    )


async def test_db_upgrade_migrates_once_and_then_the_daemon_starts(
    make_daemon: Callable[..., LocalDaemon], store_url: str
) -> None:
    daemon = make_daemon(store_url=store_url)
    first = await ingest_command(daemon.settings_path, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().endswith(f"migrated from nothing to {head_revision()}\n")
    again = await ingest_command(daemon.settings_path, "db", "upgrade")
    assert again.stdout.decode().endswith(f"already at {head_revision()}\n")

    daemon.start(role="dispatcher", env=NO_AUTO_MIGRATE)
    await daemon.wait_ready()


async def test_auto_migrate_brings_a_fresh_store_to_head(store_url: str) -> None:
    store = await Store.open(store_url, auto_migrate=True)
    try:
        assert current_revision(store.engine) == head_revision()
    finally:
        await store.close()


async def test_rows_inserted_together_come_back_as_given(store_url: str) -> None:
    """`insert_rows` (COPY on PostgreSQL): text with what COPY escapes, bytes, None and a
    datetime in another zone come back as given; a row that breaks a constraint raises
    SQLAlchemy's IntegrityError, which is not taken for a passing fault."""
    table = IncidentMessage.__table__
    india = timezone(timedelta(hours=5, minutes=30))
    rows = [
        {
            "case_open_id": "01KCOPY000000000000000000A",
            "customer_id": 7,
            "received_at": datetime(2026, 12, 1, 9, 30, 15, 250_000, tzinfo=india),
            "signature": bytes([0, 1, 92, 10, 9, 255]),
            "incident_id": None,
            "subject": "tab\there, line\nbreak, back\\slash, \"quoted\" 'single' ü 😀 \x1f end",
        },
        {
            "case_open_id": "01KCOPY000000000000000000B",
            "customer_id": 8,
            "received_at": datetime(2026, 12, 1, 4, 0, tzinfo=UTC),
            "signature": b"",
            "incident_id": None,
            "subject": None,
        },
    ]
    store = await Store.open(store_url, auto_migrate=True)
    try:
        await store.run(insert_rows, table, rows)

        def read(session: Session) -> list[dict[str, object]]:
            query = select(table).order_by(table.c.case_open_id)
            return [dict(row._mapping) for row in session.execute(query)]

        assert await store.run(read) == rows  # aware datetimes compare as instants
        with pytest.raises(IntegrityError) as raised:
            await store.run(insert_rows, table, rows[1:])
        assert not is_transient(raised.value)
        assert await store.run(read) == rows
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/wal.db")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


async def test_db_prune_on_the_command_line(make_daemon: Callable[..., LocalDaemon]) -> None:
    daemon = make_daemon()
    pruned = await ingest_command(daemon.settings_path, "db", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.decode() == (
        "pruned 0 messages, 0 fingerprints, 0 contact counters, 0 incident bands\n"
    )
    status = await ingest_command(daemon.settings_path, "db", "status")
    assert (
        status.stdout.decode()
        == f"store at {head_revision()}; this version needs {head_revision()}\n"
    )
