"""Webhook updates whose attachments wait for the Bot API: kept, answered, fetched later.

When the Bot API cannot be reached for an attachment (getFile or the download), the update is
written to a durable inbox (one fsynced JSON file per update, under `var/telegram-updates/`)
with a case id named in advance, and Telegram gets its 200 at once. A background task tries
the attachments again with a growing pause; once they are fetched (or after `ATTEMPTS` tries,
when they are named in the text as not kept) the case-open is emitted under that id. The file
is removed only once the case-open is safe, so a restart resumes what is left. As with Twilio's
media (`channels/twilio/media.py`), which this follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

log = structlog.get_logger("channels.telegram")

WriteDurably = Callable[[Path, bytes], None]
ATTEMPTS = 12
TICK_S = 1.0
MAX_BACKOFF_S = 300.0


class PendingUpdate(BaseModel):
    """An update answered to Telegram whose attachments are still to be fetched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    received_at: AwareDatetime
    update: dict[str, Any]
    attempts: int = 0
    retry_at: AwareDatetime | None = None

    @property
    def update_id(self) -> int:
        return int(self.update["update_id"])

    @property
    def last_try(self) -> bool:
        return self.attempts + 1 >= ATTEMPTS


class UpdateInbox:
    """One durable file per update id; `changed` wakes the fetcher."""

    def __init__(self, directory: Path, write: WriteDurably) -> None:
        self._directory = directory
        self._write = write
        self.changed = asyncio.Event()
        directory.mkdir(parents=True, exist_ok=True)

    def get(self, update_id: int) -> PendingUpdate | None:
        try:
            return PendingUpdate.model_validate_json(self._path(update_id).read_bytes())
        except FileNotFoundError:
            return None

    def pending(self) -> list[PendingUpdate]:
        found = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                found.append(PendingUpdate.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError, json.JSONDecodeError):
                log.exception("unreadable pending update left aside", file=str(path))
        return found

    async def put(self, pending: PendingUpdate) -> None:
        data = pending.model_dump_json().encode()
        await asyncio.to_thread(self._write, self._path(pending.update_id), data)
        self.changed.set()

    async def remove(self, update_id: int) -> None:
        await asyncio.to_thread(self._path(update_id).unlink, missing_ok=True)

    def _path(self, update_id: int) -> Path:
        return self._directory / f"{int(update_id)}.json"


Retry = Callable[[PendingUpdate], Awaitable[bool]]
"""Try a pending update again: True once its outcome is final (safe or quarantined)."""


async def fetch_later(inbox: UpdateInbox, retry: Retry) -> None:
    """Work through the inbox until cancelled, each update when its pause is over."""
    while True:
        inbox.changed.clear()
        for pending in inbox.pending():
            if pending.retry_at is None or pending.retry_at <= datetime.now(UTC):
                await _one(inbox, retry, pending)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TICK_S):
                await inbox.changed.wait()


async def _one(inbox: UpdateInbox, retry: Retry, pending: PendingUpdate) -> None:
    try:
        final = await retry(pending)
    except Exception as error:  # the pipeline could not make it safe: try again later
        log.warning("telegram update waits", update_id=pending.update_id, why=repr(error))
        final = False
    if final:
        await inbox.remove(pending.update_id)
        return
    pause = min(2.0 * 2**pending.attempts, MAX_BACKOFF_S)
    retry_at = datetime.now(UTC) + timedelta(seconds=pause)
    await inbox.put(
        pending.model_copy(update={"attempts": pending.attempts + 1, "retry_at": retry_at})
    )
