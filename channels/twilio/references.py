"""The reference named to a message's sender, kept per MessageSid so that a retry names it again.

Twilio retries a message whose answer it did not get (a timeout, a dropped connection, our
503). The retry is dropped by the dispatcher as a repeat (same MessageSid), so the reference in
its answer must be the one the first attempt emitted under: the case-open id is chosen here,
once per MessageSid, and written (fsynced) before the message is emitted. Two attempts at the
same moment agree too: a reference is linked into place, which fails for the second, and that
one reads the first one's.

Files `<directory>/<MessageSid>` hold the id; they are pruned after `KEEP_REFERENCES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import structlog
from ulid import ULID

log = structlog.get_logger("channels.twilio")

KEEP_REFERENCES = timedelta(days=2)
"""Longer than Twilio keeps retrying a message."""
PRUNE_EVERY_S = 3600.0


class References:
    """MessageSid to case-open id, one small durable file each."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def reference(self, message_sid: str) -> str:
        """The case-open id of this message: the one named before, else a new one, kept."""
        return await asyncio.to_thread(self._reference, message_sid)

    def _reference(self, message_sid: str) -> str:
        path = self._directory / Path(message_sid).name
        with contextlib.suppress(FileNotFoundError):
            return path.read_text(encoding="ascii")
        case_id = str(ULID())
        descriptor, name = tempfile.mkstemp(dir=self._directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(case_id.encode("ascii"))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(name, path)  # never replaces: the first attempt's reference stays
            except FileExistsError:
                return path.read_text(encoding="ascii")
        finally:
            os.unlink(name)
        folder = os.open(self._directory, os.O_RDONLY)  # make the link durable
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        return case_id

    async def prune_forever(self) -> None:
        """Forget references older than `KEEP_REFERENCES`, now and every hour."""
        while True:
            removed = await asyncio.to_thread(self.prune)
            if removed:
                log.info("twilio message references pruned", removed=removed)
            await asyncio.sleep(PRUNE_EVERY_S)

    def prune(self, now: float | None = None) -> int:
        """Remove references (and leftovers of a crash) older than `KEEP_REFERENCES`."""
        oldest = (now or time.time()) - KEEP_REFERENCES.total_seconds()
        removed = 0
        for path in self._directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < oldest:
                    path.unlink()
                    removed += 1
        return removed
