"""MMS and WhatsApp media fetched from Twilio after the message was acknowledged.

With `fetch_media` on, a message with media is written to a durable inbox (one fsynced JSON
file per MessageSid, under `var/twilio-media/`) and Twilio gets its TwiML answer at once, with
a case reference named in advance. A background fetcher then downloads each media item (with
the account's credentials when `account_sid` is set, within `media_max_bytes` and a timeout),
and emits the case-open under that reference with the bytes stored and the links kept. An item
that cannot be fetched after `media_fetch_attempts` tries stays a link. The inbox file is
removed only once the case-open is safe; a restart resumes whatever is still in the inbox, and
a repeated webhook for a message still in the inbox gets the same reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from channels.base import Emit, Rejected
from channels.settings import TwilioChannelSettings
from channels.twilio.calls import WriteDurably
from normalizer.envelope import Envelope
from normalizer.twilio import TwilioMedia, TwilioMessage, bare_number, message_channel

log = structlog.get_logger("channels.twilio")

TICK_S = 1.0
MAX_BACKOFF_S = 300.0


class PendingMessage(BaseModel):
    """A message acknowledged to Twilio whose media are still to be fetched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    received_at: AwareDatetime
    message: TwilioMessage
    attempts: int = 0
    retry_at: AwareDatetime | None = None


class MediaInbox:
    """One durable file per MessageSid; `changed` wakes the fetcher."""

    def __init__(self, directory: Path, write: WriteDurably) -> None:
        self._directory = directory
        self._write = write
        self.changed = asyncio.Event()
        directory.mkdir(parents=True, exist_ok=True)

    def get(self, message_sid: str) -> PendingMessage | None:
        try:
            return PendingMessage.model_validate_json(self._path(message_sid).read_bytes())
        except FileNotFoundError:
            return None

    def pending(self) -> list[PendingMessage]:
        found = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                found.append(PendingMessage.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError, json.JSONDecodeError):
                log.exception("unreadable pending message left aside", file=str(path))
        return found

    async def put(self, pending: PendingMessage) -> None:
        data = pending.model_dump_json().encode()
        await asyncio.to_thread(self._write, self._path(pending.message.message_sid), data)
        self.changed.set()

    async def remove(self, message_sid: str) -> None:
        await asyncio.to_thread(self._path(message_sid).unlink, missing_ok=True)

    def _path(self, message_sid: str) -> Path:
        return self._directory / f"{Path(message_sid).name}.json"


class MediaFetcher:
    """Fetches the media of every pending message, then emits it; runs until cancelled."""

    def __init__(self, settings: TwilioChannelSettings, inbox: MediaInbox, emit: Emit) -> None:
        self._settings = settings
        self._inbox = inbox
        self._emit = emit

    async def run(self) -> None:
        auth = None
        if self._settings.account_sid and self._settings.auth_token:
            auth = (self._settings.account_sid, self._settings.auth_token.get_secret_value())
        timeout = httpx.Timeout(self._settings.media_fetch_timeout_s)
        async with httpx.AsyncClient(auth=auth, timeout=timeout, follow_redirects=True) as client:
            while True:
                self._inbox.changed.clear()
                for pending in self._inbox.pending():
                    if pending.retry_at is None or pending.retry_at <= datetime.now(UTC):
                        await self._handle(client, pending)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await self._inbox.changed.wait()

    async def _handle(self, client: httpx.AsyncClient, pending: PendingMessage) -> None:
        last_try = pending.attempts + 1 >= self._settings.media_fetch_attempts
        media, missing = await self._fetch_all(client, pending.message.media)
        if missing and not last_try:
            await self._later(pending, f"{missing} media item(s) not fetched")
            return
        message = pending.message.model_copy(update={"media": media})
        try:
            case_id = await self._emit(_envelope(pending, message))
        except Rejected as error:
            log.warning("message quarantined", message_sid=message.message_sid, reason=error.reason)
        except Exception as error:
            await self._later(pending.model_copy(update={"message": message}), repr(error))
            return
        else:
            log.info("message with media opened", id=case_id, fetched=len(media) - missing)
        await self._inbox.remove(message.message_sid)

    async def _fetch_all(
        self, client: httpx.AsyncClient, items: list[TwilioMedia]
    ) -> tuple[list[TwilioMedia], int]:
        fetched, missing = [], 0
        for item in items:
            if item.content is None:
                content = await self._fetch(client, item.url)
                missing += content is None
                item = item.model_copy(update={"content": content})
            fetched.append(item)
        return fetched, missing

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> bytes | None:
        """The bytes, or None (logged) when the server, the network or the size says no."""
        limit = self._settings.media_max_bytes
        try:
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        log.warning("media over the size limit, kept as a link", limit=limit)
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            log.warning("media not fetched", error=_without_query(repr(error)))
            return None

    async def _later(self, pending: PendingMessage, why: str) -> None:
        pause = min(2.0 * 2**pending.attempts, MAX_BACKOFF_S)
        log.warning("message with media waits", message_sid=pending.message.message_sid, why=why)
        retry_at = datetime.now(UTC) + timedelta(seconds=pause)
        await self._inbox.put(
            pending.model_copy(update={"attempts": pending.attempts + 1, "retry_at": retry_at})
        )


def _envelope(pending: PendingMessage, message: TwilioMessage) -> Envelope:
    return Envelope(
        channel=message_channel(message.sender),
        adapter="twilio",
        touchpoint=bare_number(message.recipient),
        received_at=pending.received_at,
        payload=message,
        source_id=message.message_sid,
        case_id=pending.case_id,
    )


def _without_query(text: str) -> str:
    """Media URLs may carry signed query strings: keep them out of the logs."""
    return text.split("?", 1)[0]
