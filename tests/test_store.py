"""The store: Alembic migrations, refusing an unmigrated store, SQLite in WAL mode, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dispatcher.database import create_engine, current_revision, head_revision
from dispatcher.store import Store
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
