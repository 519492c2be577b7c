"""Long polling through our own getUpdates loop, confirming an update only once it is safe.

How "handled only once safe" is ensured:

- Telegram keeps an update until a getUpdates call passes an `offset` above its update_id;
  that call is the confirmation. python-telegram-bot's Updater advances the offset as soon as
  a batch is fetched, before any handler has run, so a crash would lose the batch. It is not
  used here. This loop keeps `offset` at one past the last update whose outcome is final
  (its case-open safe on the broker or in the spool, the greeting sent, or the update kept in
  quarantine), and passes only that offset to the next getUpdates.
- Updates are handled one at a time, in order. One whose case-open is `NotSafe`, or whose
  attachments cannot be fetched, is tried again with backoff and never skipped: confirming a
  later update would confirm it too.
- A crash at any point before the next getUpdates leaves the update unconfirmed, so Telegram
  serves it again after a restart. If it had already been made safe, the repeat carries the
  same source id and the dispatcher's dedup (channel + source_id) drops it.
- A clean stop confirms the handled updates with one last short getUpdates, so a restart does
  not fetch them again (dedup would absorb them, but a /start would be greeted twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from telegram import Bot
from telegram.error import RetryAfter, TelegramError

from channels.base import NotSafe
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import Backoff, Outage
from channels.telegram.intake import Intake

log = structlog.get_logger("channels.telegram")

ALLOWED_UPDATES = ["message", "edited_message"]
API_DOWN = "telegram bot api unreachable, retrying"
STOP_GRACE_S = 5.0
CONFIRM_TIMEOUT_S = 2.0

T = TypeVar("T")


class TelegramPolling:
    """The polling listener: `start()` runs the loop in a task, `stop()` ends it in order."""

    name = "telegram"

    def __init__(self, settings: TelegramChannelSettings, bot: Bot, intake: Intake) -> None:
        self._settings = settings
        self._bot = bot
        self._intake = intake
        token = bot.token
        self._api_outage = Outage(API_DOWN, "telegram bot api reachable again", token)
        self._unsafe = Outage(
            "telegram update not safe yet, retrying it", "telegram updates safe again", token
        )
        self._offset: int | None = None
        self._confirmed: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._waiting = False
        """True while in a long poll or a backoff sleep, where cancelling loses nothing."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram-polling")
        log.info("telegram polling", poll_timeout_s=self._settings.poll_timeout_s)

    async def stop(self) -> None:
        """Let the update in hand finish (a few seconds at most), then confirm and close."""
        self._stopping = True
        task = self._task
        if task is not None:
            if self._waiting:
                task.cancel()
            _, pending = await asyncio.wait({task}, timeout=STOP_GRACE_S)
            for unfinished in pending:
                unfinished.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("telegram polling failed", exc_info=task.exception())
        await self._confirm()
        await self._bot.shutdown()

    async def _run(self) -> None:
        """Poll until stopped; an unexpected failure is logged and polling starts over."""
        backoff = Backoff()
        while not self._stopping:
            try:
                await self._poll()
            except Exception:
                wait = backoff.next()
                log.exception("telegram polling failed, starting over", retry_in_s=wait)
                self._waiting = True
                await asyncio.sleep(wait)
                self._waiting = False

    async def _poll(self) -> None:
        await self._call(self._bot.initialize)
        # getUpdates is refused while a webhook is set; polling mode means no webhook.
        await self._call(lambda: self._bot.delete_webhook(drop_pending_updates=False))
        while not self._stopping:
            batch = await self._call(self._fetch)
            for update in batch:
                if self._stopping or not await self._settle(update):
                    return
                self._offset = update["update_id"] + 1

    async def _fetch(self) -> list[dict[str, Any]]:
        """The next updates, as raw JSON.

        python-telegram-bot's `get_updates` parses the batch and fails it whole on one update
        it cannot read, which would stall polling on that update for good; the normaliser
        reads each update on its own instead, and quarantines what it cannot use.
        """
        offset = self._offset
        timeout = self._settings.poll_timeout_s
        result = await self._bot.do_api_request(
            "getUpdates",
            api_kwargs={"offset": offset, "timeout": timeout, "allowed_updates": ALLOWED_UPDATES},
            read_timeout=self._settings.request_timeout_s + timeout,
        )
        self._confirmed = offset
        return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """A Bot API call without an update in hand: retried with backoff until it succeeds."""
        backoff = Backoff()
        while True:
            self._waiting = True
            try:
                result = await make()
            except TelegramError as error:
                wait = _wait_for(error, backoff)
                self._api_outage.failed(error, wait)
                await asyncio.sleep(wait)
                continue
            finally:
                self._waiting = False
            self._api_outage.recovered()
            return result

    async def _settle(self, update: dict[str, Any]) -> bool:
        """Handle one update until its outcome is final; False if stopped before that."""
        update_id = update["update_id"]
        backoff = Backoff()
        while True:
            try:
                outcome = await self._intake.take(update)
            except NotSafe as error:
                wait = backoff.next()
                self._unsafe.failed(error, wait)
            except TelegramError as error:
                wait = _wait_for(error, backoff)
                self._api_outage.failed(error, wait)
            except Exception:
                wait = backoff.next()
                log.exception("telegram update failed", update_id=update_id, retry_in_s=wait)
            else:
                self._unsafe.recovered()
                self._api_outage.recovered()
                log.debug("telegram update handled", update_id=update_id, outcome=outcome)
                return True
            if self._stopping:
                return False
            self._waiting = True
            try:
                await asyncio.sleep(wait)
            finally:
                self._waiting = False

    async def _confirm(self) -> None:
        """Tell Telegram about the updates handled since the last getUpdates (best effort)."""
        if self._offset is None or self._offset == self._confirmed:
            return
        with contextlib.suppress(TelegramError, TimeoutError):
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await self._bot.do_api_request(
                    "getUpdates", api_kwargs={"offset": self._offset, "timeout": 0, "limit": 1}
                )
                self._confirmed = self._offset


def _wait_for(error: TelegramError, backoff: Backoff) -> float:
    """Telegram's own flood-control wait when it gives one, else the next backoff step."""
    if isinstance(error, RetryAfter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the int/timedelta transition warning
            after = error.retry_after
        return after.total_seconds() if isinstance(after, timedelta) else float(after)
    return backoff.next()
