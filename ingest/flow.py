"""Whether RabbitMQ has blocked our connection (a memory or disk alarm), as state to act on.

Under an alarm the broker stops reading from every connection that publishes and says so with
`connection.blocked` (reason "low on memory" or "low on disk"), then `connection.unblocked`
when the alarm clears. It tells a connection only when it next publishes, so the first publish
under an alarm is always left waiting; everything after it can be answered at once.

aiormq (7.x) reads both frames but offers no callback for them, only a private event its
writer waits on; so `watch` wraps its two handlers on the one connection object, keeping what
they do. If a later aiormq renames them, `watch` says so in the log once and the daemon falls
back to the publish timeout (the broker tests catch that at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("ingest.broker")

_HANDLERS = ("_Connection__handle_connection_blocked", "_Connection__handle_connection_unblocked")


class Flow:
    """The blocked state of the current broker connection."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._signal: asyncio.Future[None] | None = None

    @property
    def blocked(self) -> bool:
        return self.reason is not None

    @property
    def signal(self) -> asyncio.Future[None]:
        """Done once the broker blocks publishing; a fresh one after each unblock. A future,
        not an event, so that a publish can wait on it beside its confirm without a task."""
        if self._signal is None:
            self._signal = asyncio.get_running_loop().create_future()
        return self._signal

    def watch(self, connection: Any) -> None:
        """Follow `connection.blocked`/`unblocked` on an aio-pika connection."""
        raw = getattr(getattr(connection, "transport", None), "connection", None)
        if raw is None or not all(hasattr(raw, name) for name in _HANDLERS):
            log.warning("broker alarms not followed: this aiormq has no blocked handlers")
            return
        on_blocked, on_unblocked = (getattr(raw, name) for name in _HANDLERS)
        setattr(raw, _HANDLERS[0], self._wrap(on_blocked, self._block))
        setattr(raw, _HANDLERS[1], self._wrap(on_unblocked, self._unblock))

    def reset(self) -> None:
        """A new connection starts unblocked (the broker repeats a block on the next publish)."""
        self._unblock(None)

    @staticmethod
    def _wrap(
        original: Callable[[Any], Awaitable[None]], then: Callable[[Any], None]
    ) -> Callable[[Any], Awaitable[None]]:
        async def handler(frame: Any) -> None:
            then(frame)
            await original(frame)

        return handler

    def _block(self, frame: Any) -> None:
        self.reason = str(getattr(frame, "reason", "") or "a resource alarm")
        if not self.signal.done():
            self.signal.set_result(None)
        log.warning("broker blocked publishing", reason=self.reason)

    def _unblock(self, _: Any) -> None:
        was = self.reason
        self.reason = None
        if self._signal is not None and self._signal.done():
            self._signal = None
        if was is not None:
            log.info("broker unblocked publishing", was=was)
