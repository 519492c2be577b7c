"""What every channel is given and what it may raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from normalizer.envelope import Envelope

Emit = Callable[[Envelope], Awaitable[str]]
"""Hand an envelope to the pipeline; returns the case-open id once the message is safe
(confirmed by the broker or fsynced to the spool). Raises `NotSafe` when neither is possible."""


class NotSafe(Exception):
    """The message could not be made safe; the source must be told to retry later."""


class Rejected(Exception):
    """The input can never become a case-open; the original is kept in quarantine.

    `reason` says why, in words fit for the sender; `quarantine_id` finds the kept original.
    """

    def __init__(self, reason: str, quarantine_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.quarantine_id = quarantine_id


class Listener(Protocol):
    """A channel that runs beside the HTTP server: started before it, stopped before it."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
