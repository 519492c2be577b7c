"""One update in, one outcome out: a case-open made safe, the /start greeting, or quarantine.

`take` returns only when the outcome is final. It raises `NotSafe` when the case-open could
not be made safe, and python-telegram-bot's `NetworkError`/`TimedOut`/`RetryAfter` when the
Bot API could not be reached for an attachment or the greeting; either way the caller must
not count the update as handled, and tries it again later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from telegram import Bot
from telegram.error import BadRequest, EndPointNotFound, Forbidden, NetworkError
from ulid import ULID

from channels.base import Emit, Rejected
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import redact
from channels.telegram.later import PendingUpdate, UpdateInbox
from normalizer.envelope import Envelope
from normalizer.telegram import (
    FileRef,
    TelegramPayload,
    UnprocessableUpdate,
    attachment_files,
    chat_id,
    is_start,
    source_id,
)

log = structlog.get_logger("channels.telegram")


def _source_or_none(update: dict[str, Any]) -> str | None:
    try:
        return source_id(update)
    except UnprocessableUpdate:
        return None  # the pipeline says why and keeps it in quarantine


@dataclass
class _Fetched:
    files: dict[str, bytes] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


class Intake:
    """Turns updates into case-opens through `emit`; shared by polling and the webhook."""

    def __init__(
        self,
        settings: TelegramChannelSettings,
        bot: Bot,
        emit: Emit,
        inbox: UpdateInbox | None = None,
    ) -> None:
        self._settings = settings
        self._bot = bot
        self._emit = emit
        self._inbox = inbox
        self._touchpoint: str | None = None

    async def take(self, update: dict[str, Any]) -> str:
        """Handle one update; the outcome: the case-open id, "greeted" or "quarantined"."""
        try:
            source_id(update)  # raises for an update that is no message we understand
            start, files = is_start(update), attachment_files(update)
        except UnprocessableUpdate:
            # Not a message we understand: the pipeline says why and keeps it in quarantine.
            start, files = False, []
        if start:
            await self._greet(chat_id(update))
            return "greeted"
        try:
            fetched = await self._fetch(files)
        except NetworkError as error:
            if self._inbox is None:
                raise
            return await self._keep(update, error)
        return await self._open(update, fetched)

    async def retry(self, pending: PendingUpdate) -> bool:
        """Fetch a kept update's attachments again and open its case; False while the Bot
        API still cannot be reached (and tries are left: after the last, the attachments are
        named in the text as not kept)."""
        files = attachment_files(pending.update)
        try:
            fetched = await self._fetch(files)
        except NetworkError:
            if not pending.last_try:
                return False
            unreachable = "the Telegram Bot API could not be reached"
            fetched = _Fetched(missing={ref.unique_id: unreachable for ref in files})
        await self._open(pending.update, fetched, pending.case_id, pending.received_at)
        return True

    async def _keep(self, update: dict[str, Any], error: NetworkError) -> str:
        assert self._inbox is not None
        kept = self._inbox.get(int(update["update_id"]))
        if kept is not None:  # Telegram delivering it again: the same reference
            return kept.case_id
        pending = PendingUpdate(case_id=str(ULID()), received_at=datetime.now(UTC), update=update)
        await self._inbox.put(pending)
        log.info(
            "telegram update kept until its attachments can be fetched",
            update_id=pending.update_id,
            id=pending.case_id,
            reason=redact(f"{type(error).__name__}: {error}", self._bot.token),
        )
        return pending.case_id

    async def _open(
        self,
        update: dict[str, Any],
        fetched: _Fetched,
        case_id: str | None = None,
        received_at: datetime | None = None,
    ) -> str:
        envelope = Envelope(
            channel="chat",
            adapter="telegram",
            touchpoint=await self.touchpoint(),
            received_at=received_at or datetime.now(UTC),
            payload=TelegramPayload(update=update, files=fetched.files, missing=fetched.missing),
            source_id=_source_or_none(update),
            case_id=case_id,
        )
        try:
            return await self._emit(envelope)
        except Rejected as error:
            log.warning(
                "telegram update quarantined",
                update_id=update.get("update_id"),
                reason=error.reason,
                quarantine_id=error.quarantine_id,
            )
            return "quarantined"

    async def touchpoint(self) -> str:
        """The bot's @username: from the settings, else getMe (asked until it answers once).

        A message needs nothing else from the Bot API, so it never waits for an unreachable
        one: the touchpoint is then the bot's id (the token's first part), and the log says
        to set `username`.
        """
        if self._touchpoint is None and self._settings.username:
            self._touchpoint = "@" + self._settings.username.removeprefix("@")
        if self._touchpoint is None:
            try:
                me = await self._bot.get_me()
            except NetworkError as error:  # TimedOut and unreachable alike
                bot_id = self._bot.token.partition(":")[0]
                log.warning(
                    "telegram bot name unknown, touchpoint is its id",
                    bot_id=bot_id,
                    reason=redact(f"{type(error).__name__}: {error}", self._bot.token),
                    fix="set [channels.telegram] username",
                )
                return f"telegram-bot-{bot_id}"
            self._touchpoint = f"@{me.username}"
        return self._touchpoint

    async def _greet(self, chat: int) -> None:
        try:
            await self._bot.send_message(chat, self._settings.greeting)
        except (Forbidden, BadRequest) as error:
            # The person blocked the bot or the chat is gone: retrying will not help.
            log.info("greeting not delivered", chat_id=chat, reason=error.message)
            return
        log.info("greeted", chat_id=chat)

    async def _fetch(self, files: list[FileRef]) -> _Fetched:
        """Download each attachment through getFile; note the ones that cannot be had."""
        fetched = _Fetched()
        for ref in files:
            try:
                fetched.files[ref.unique_id] = await self._download(ref)
            except _NotKept as why:
                fetched.missing[ref.unique_id] = str(why)
            except (BadRequest, EndPointNotFound) as error:
                # e.g. "file is too big" (the Bot API serves up to 20 MB) or an expired id.
                fetched.missing[ref.unique_id] = f"the Bot API refused it ({error.message})"
        return fetched

    async def _download(self, ref: FileRef) -> bytes:
        limit = self._settings.max_attachment_bytes
        too_large = _NotKept(f"larger than the {limit}-byte limit")
        if ref.declared_size is not None and ref.declared_size > limit:
            raise too_large
        file = await self._bot.get_file(ref.file_id)
        if file.file_size is not None and file.file_size > limit:
            raise too_large
        data = bytes(await file.download_as_bytearray())
        if len(data) > limit:
            raise too_large
        return data


class _NotKept(Exception):
    """An attachment that will not be kept; str() says why, in the case's text."""
