"""`ingest backup DIR`: a consistent copy of what one node keeps on disk, taken while it runs.

- The SQLite store through SQLite's online backup API: a snapshot of one moment, whatever the
  dispatchers write meanwhile (a PostgreSQL store is backed up with pg_dump instead).
- The spool, the quarantine and the blob store (and the channels' durable inboxes), file by
  file: each of their files is written to a temporary name, fsynced and renamed, so a file
  is copied whole or not seen; blobs are named by their hash and never change.

Restore (README, "Running in production"): stop the service, put `ingest.db` back where
`[store] url` points and the `data` folder's content into `[paths] data_dir`, owned by the
service user, and start it: the spool drains, the dedup keys and the quarantine are back.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ingest.redact import url_without_password
from ingest.settings import DATABASE_URL, Settings

MANIFEST = "backup.json"
SKIPPED = ("incoming",)  # a spool write that was never renamed into place never counted


class BackupError(Exception):
    """The backup cannot be made; the message says why."""


def backup(settings: Settings, target: Path) -> dict[str, object]:
    """Copy the store and the data folder into `target` (created; must be empty)."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty")
    target.mkdir(parents=True, exist_ok=True)
    store = _sqlite_file(settings.store.url)
    if store is not None:
        _backup_sqlite(store, target / "ingest.db")
    data = settings.paths.data_dir
    copied = _copy_data(data, target / "data") if data.exists() else 0
    manifest: dict[str, object] = {
        "taken_at": datetime.now(UTC).isoformat(),
        "store": url_without_password(settings.store.url),
        "store_file": "ingest.db" if store is not None else None,
        "data_dir": str(data),
        "data_files": copied,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _sqlite_file(url: str) -> Path | None:
    found = DATABASE_URL.match(url)
    if found is None or found["backend"].lower() != "sqlite":
        return None
    database = found["rest"].removeprefix("/").partition("?")[0]
    return Path("/" + database.lstrip("/")) if database and database != ":memory:" else None


def _backup_sqlite(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"the store {source} does not exist")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)  # pages copied under SQLite's own locking: one consistent moment
        finally:
            copy.close()


def _copy_data(source: Path, target: Path) -> int:
    copied = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part in SKIPPED for part in relative.parts) or path.suffix in (
            ".db",
            ".db-wal",
            ".db-shm",
        ):
            continue
        destination = target / relative
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, destination)
            except FileNotFoundError:
                continue  # sent and removed meanwhile (a spooled message the broker took)
            copied += 1
    return copied
