"""Build the Telegram channel in the configured mode."""

from __future__ import annotations

from fastapi import APIRouter

from channels.base import Emit
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import make_bot
from channels.telegram.intake import Intake
from channels.telegram.polling import TelegramPolling
from channels.telegram.webhook import TelegramWebhook, webhook_router


def telegram_channel(
    settings: TelegramChannelSettings, emit: Emit
) -> tuple[TelegramPolling | TelegramWebhook, APIRouter | None]:
    """The listener to start and stop, and in webhook mode the route to mount."""
    bot = make_bot(settings)
    intake = Intake(settings, bot, emit)
    if settings.mode == "webhook":
        return TelegramWebhook(settings, bot), webhook_router(settings, intake)
    return TelegramPolling(settings, bot, intake), None
