"""The Bot API client, and logging of its failures that never shows the token."""

from __future__ import annotations

import warnings

import structlog
from telegram import Bot
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from channels.settings import TelegramChannelSettings

log = structlog.get_logger("channels.telegram")


def make_bot(settings: TelegramChannelSettings) -> Bot:
    """A Bot for the configured API server; long polls get their own connection."""
    assert settings.token is not None, "validated: an enabled channel has a token"
    timeout = settings.request_timeout_s

    def request(pool_size: int) -> HTTPXRequest:
        return HTTPXRequest(
            connection_pool_size=pool_size,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
        )

    # getUpdates goes through do_api_request to get the updates' raw JSON (see polling.py);
    # the library suggests its parsing get_updates instead, which is not wanted here.
    warnings.filterwarnings(
        "ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning
    )
    return Bot(
        settings.token.get_secret_value(),
        base_url=settings.base_url,
        base_file_url=settings.base_file_url,
        request=request(8),
        # getUpdates adds its long-poll timeout to this read timeout itself.
        get_updates_request=request(1),
    )


def redact(text: str, token: str) -> str:
    """The token appears in every Bot API URL; it must never reach a log line."""
    return text.replace(token, "<token>") if token else text


class Outage:
    """Logs a failure once per outage (repeats at debug), and the recovery once."""

    def __init__(self, failing: str, recovered: str, token: str) -> None:
        self._failing = failing
        self._recovered = recovered
        self._token = token
        self._down = False

    def failed(self, error: BaseException, retry_in_s: float) -> None:
        reason = redact(f"{type(error).__name__}: {error}", self._token)
        if self._down:
            log.debug(f"still {self._failing}", error=reason, retry_in_s=retry_in_s)
            return
        self._down = True
        log.warning(self._failing, error=reason, retry_in_s=retry_in_s)

    def recovered(self) -> None:
        if self._down:
            self._down = False
            log.info(self._recovered)


class Backoff:
    """Exponential waits: 0.5 s doubling up to `max_s`; `reset()` after a success."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._next_s = first_s

    def next(self) -> float:
        wait = self._next_s
        self._next_s = min(self._next_s * 2, self._max_s)
        return wait

    def reset(self) -> None:
        self._next_s = self._first_s
