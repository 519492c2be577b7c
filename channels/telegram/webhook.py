"""Webhook mode: Telegram POSTs each update to the daemon's HTTP server.

How "handled only once safe" is ensured: the answer is 200 only once the update's outcome is
final (its case-open safe on the broker or in the spool, the greeting sent, the update kept in
quarantine, or kept in the durable inbox until its attachments can be fetched: `later.py`).
When the case-open cannot be made safe, or the Bot API cannot be reached for the greeting, the
answer is 503 and Telegram delivers the update again later; a crash before
the answer is a failed delivery that Telegram retries too. A repeat of an update that had been
made safe carries the same source id, and the dispatcher's dedup drops it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from telegram import Bot
from telegram.error import TelegramError

from channels.base import NotSafe
from channels.http import read_body, require_media_type
from channels.problems import PROBLEM_SCHEMA, PROBLEM_TYPE, Problem
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import Backoff, Outage, redact
from channels.telegram.intake import Intake
from channels.telegram.later import Retry, UpdateInbox, fetch_later
from channels.telegram.polling import ALLOWED_UPDATES, API_DOWN

log = structlog.get_logger("channels.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1_048_576
RETRY_AFTER_S = "10"


def webhook_router(settings: TelegramChannelSettings, intake: Intake) -> APIRouter:
    """The route Telegram posts updates to, checked with the secret token header."""
    assert settings.webhook_secret is not None, "validated: webhook mode has a secret"
    secret = settings.webhook_secret.get_secret_value().encode()
    token = settings.token.get_secret_value() if settings.token else ""
    router = APIRouter(tags=["telegram"])
    problem = {"content": {PROBLEM_TYPE: {"schema": PROBLEM_SCHEMA}}}

    @router.post(
        settings.webhook_path,
        summary="A Telegram update; answered 200 once its case-open is safe.",
        responses={
            400: {"description": "Not an update", **problem},
            403: {"description": "Missing or wrong secret token header", **problem},
            413: {"description": "Body over the limit", **problem},
            415: {"description": "Body is not application/json", **problem},
            503: {"description": "Not safe yet; Telegram delivers it again", **problem},
        },
    )
    async def telegram_update(request: Request) -> JSONResponse:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            raise Problem(403, "Forbidden", f"the {SECRET_HEADER} header is missing or wrong")
        body = await read_body(request, MAX_UPDATE_BYTES)
        require_media_type(request, "application/json")
        update = _parse(body)
        try:
            outcome = await intake.take(update)
        except NotSafe as error:
            raise _retry_later(str(error)) from None
        except TelegramError as error:
            reason = redact(f"{type(error).__name__}: {error}", token)
            log.warning("telegram update not taken", reason=reason)
            raise _retry_later("the Telegram Bot API cannot be reached right now") from None
        return JSONResponse({"status": "accepted", "outcome": outcome})

    return router


def _parse(body: bytes) -> dict[str, Any]:
    try:
        update = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Problem(400, "Bad Request", f"the body is not JSON: {error}") from None
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise Problem(400, "Bad Request", "the body is not a Telegram update (no update_id)")
    return update


def _retry_later(detail: str) -> Problem:
    return Problem(503, "Service Unavailable", detail, headers={"Retry-After": RETRY_AFTER_S})


class TelegramWebhook:
    """The webhook listener: registers the webhook URL (when configured), closes the bot."""

    name = "telegram"

    def __init__(
        self, settings: TelegramChannelSettings, bot: Bot, inbox: UpdateInbox, retry: Retry
    ) -> None:
        self._settings = settings
        self._bot = bot
        self._inbox = inbox
        self._retry = retry
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._tasks = {
            asyncio.create_task(self._register(), name="telegram-webhook"),
            asyncio.create_task(fetch_later(self._inbox, self._retry), name="telegram-later"),
        }
        log.info("telegram webhook", path=self._settings.webhook_path)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._bot.shutdown()

    async def _register(self) -> None:
        """getMe, then setWebhook when a public URL is configured; retried until done."""
        outage = Outage(API_DOWN, "telegram bot api reachable again", self._bot.token)
        backoff = Backoff()
        while True:
            try:
                await self._bot.initialize()
                secret = self._settings.webhook_secret
                if self._settings.webhook_url and secret:
                    await self._bot.set_webhook(
                        self._settings.webhook_url,
                        secret_token=secret.get_secret_value(),
                        allowed_updates=ALLOWED_UPDATES,
                    )
                    log.info("telegram webhook registered", url=self._settings.webhook_url)
            except TelegramError as error:
                wait = backoff.next()
                outage.failed(error, wait)
                await asyncio.sleep(wait)
                continue
            outage.recovered()
            return
