"""What every channel is given and what it may raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from normalizer.envelope import Envelope

if TYPE_CHECKING:
    from fastapi import APIRouter

    from channels.self_service import SelfService
    from channels.web_access import ApiAccess

Emit = Callable[[Envelope], Awaitable[str]]
"""Hand an envelope to the pipeline; returns the case-open id once the message is safe
(confirmed by the broker or fsynced to the spool). Raises `NotSafe` when neither is possible."""


class NotSafe(Exception):
    """The message could not be made safe; the source must be told to retry later."""


class CannotKeep(NotSafe):
    """Neither the broker nor the local spool can take the message now (the broker is
    unreachable or refusing, the spool full or unwritable); the message says which. SMTP
    says 451 4.3.1 ("mail system full")."""


class Busy(NotSafe):
    """Too much is in hand to take this message now (every parsing worker busy and the queue
    in front of them full); the source must retry later. SMTP says 451 4.3.2."""


class MemoryFull(NotSafe):
    """The daemon is past its memory budget (`[limits] memory_mb`); the source must retry
    later. SMTP says 451 4.3.1."""


class Rejected(Exception):
    """The input can never become a case-open; the original is kept in quarantine.

    `reason` says why, in words fit for the sender; `quarantine_id` finds the kept original.
    """

    def __init__(self, reason: str, quarantine_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.quarantine_id = quarantine_id


class Listener(Protocol):
    """A channel with its own connections or threads: started after the pipeline is ready,
    stopped before it closes."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the daemon hands every channel it builds."""

    emit: Emit
    data_dir: Path
    """The daemon's data folder; a channel keeps its state in a folder of its own below it."""
    write_durably: Callable[[Path, bytes], None]
    admit: Callable[[], NotSafe | None]
    """Whether a new message can be taken now (the memory budget and parsing workers)."""
    access: ApiAccess | None = None
    """Given when the channel needs "api-access"."""
    self_service: SelfService | None = None
    """Given when the channel needs "self-service" and there is a knowledge base."""


@dataclass(frozen=True, slots=True)
class Built:
    """A built channel: a listener to start and stop, routes for the HTTP server, or both."""

    listener: Listener | None = None
    router: APIRouter | None = None
    readiness: Callable[[], str | None] | None = None
    """A lasting problem of the channel for `/readyz` (None while there is none)."""
