"""Chat replies through the Telegram bot (python-telegram-bot), quoting the original message."""

from __future__ import annotations

from telegram import Bot, ReplyParameters
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from channels.replies.base import Permanent, Transient
from channels.settings import TelegramChannelSettings
from channels.telegram.bot import redact
from normalizer.acks import AckRequest


class TelegramReplier:
    """sendMessage to the chat, as a reply to the message that opened the case."""

    name = "telegram"

    def __init__(self, settings: TelegramChannelSettings) -> None:
        assert settings.token is not None, "validated: an enabled channel has a token"
        self._token = settings.token.get_secret_value()
        timeout = settings.request_timeout_s
        self._requests = [
            HTTPXRequest(
                connection_pool_size=size,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
                pool_timeout=timeout,
            )
            for size in (4, 1)
        ]
        self._bot = Bot(
            self._token,
            base_url=settings.base_url,
            base_file_url=settings.base_file_url,
            request=self._requests[0],
            get_updates_request=self._requests[1],  # never used, but the Bot makes one else
        )

    async def send(self, ack: AckRequest) -> str:
        original = _original_message(ack)
        reply = ReplyParameters(original, allow_sending_without_reply=True) if original else None
        try:
            sent = await self._bot.send_message(int(ack.to), ack.text, reply_parameters=reply)
        except RetryAfter as error:
            raise Transient(self._say(error), retry_after_s=_seconds(error)) from None
        except (BadRequest, Forbidden) as error:  # e.g. the user blocked the bot
            raise Permanent(self._say(error)) from None
        except (InvalidToken, NetworkError) as error:  # a refused token is the configuration's
            raise Transient(self._say(error)) from None
        except TelegramError as error:
            raise Permanent(self._say(error)) from None
        return str(sent.message_id)

    async def close(self) -> None:
        for request in self._requests:
            await request.shutdown()

    def _say(self, error: TelegramError) -> str:
        return "Telegram: " + redact(error.message, self._token)


def _original_message(ack: AckRequest) -> int | None:
    """The message id in a source id "<chat_id>:<message_id>" of the same chat."""
    chat, _, message = ack.source_id.partition(":")
    return int(message) if chat == ack.to and message.isdigit() else None


def _seconds(error: RetryAfter) -> float:
    wait = error.retry_after
    return wait if isinstance(wait, int | float) else wait.total_seconds()
