"""Build the Telegram channel in the configured mode."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from channels.base import Built, Emit, Wiring
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import make_bot
from channels.telegram.intake import Intake
from channels.telegram.later import UpdateInbox, WriteDurably
from channels.telegram.polling import TelegramPolling
from channels.telegram.webhook import TelegramWebhook, webhook_router


def build(settings: TelegramChannelSettings, wiring: Wiring) -> Built:
    """The bot, and in webhook mode its route; updates waiting for the Bot API are kept in
    `telegram-updates/` under the data folder."""
    inbox = wiring.data_dir / "telegram-updates"
    listener, router = telegram_channel(settings, wiring.emit, inbox, wiring.write_durably)
    return Built(listener, router)


def telegram_channel(
    settings: TelegramChannelSettings, emit: Emit, inbox_directory: Path, write: WriteDurably
) -> tuple[TelegramPolling | TelegramWebhook, APIRouter | None]:
    """The listener to start and stop, and in webhook mode the route to mount (with the inbox
    of updates whose attachments wait for the Bot API)."""
    bot = make_bot(settings)
    if settings.mode == "webhook":
        inbox = UpdateInbox(inbox_directory, write)
        intake = Intake(settings, bot, emit, inbox)
        return TelegramWebhook(settings, bot, inbox, intake.retry), webhook_router(settings, intake)
    return TelegramPolling(settings, bot, Intake(settings, bot, emit)), None
