"""What every replier is, and the two ways a send can fail.

    SendFailed
     ├── Transient   worth another try later: the service is down, slow or busy (SMTP 4xx,
     │               HTTP 5xx and 429, connection refused, timeouts, a refused login)
     └── Permanent   another try gets the same answer: the recipient or the request is
                     refused (SMTP 5xx to the mail, HTTP 4xx), or nothing can send it

Repliers translate their library's errors into these at the boundary; the sender decides
from them whether to retry or dead-letter.
"""

from __future__ import annotations

from typing import Protocol

from normalizer.acks import AckRequest


class SendFailed(Exception):
    """A reply was not sent; the message says why, without secrets."""


class Transient(SendFailed):
    """Try again later; `retry_after_s` is the service's own hint, when it gives one."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Permanent(SendFailed):
    """Trying again cannot help; the request goes to the dead letters with this reason."""


class Unconfigured(Permanent):
    """No replier is configured for the channel: a setting, not an incident, so it is
    logged as a warning once per channel and at info level after that."""


class Replier(Protocol):
    """Sends replies through one service."""

    name: str
    """Names the service in logs: smtp, twilio, telegram."""

    async def send(self, ack: AckRequest) -> str:
        """Send the reply; return the service's id for it (Message-ID, SID, message id)."""
        ...

    async def close(self) -> None:
        """Release connections; called once, when the daemon stops."""
        ...
