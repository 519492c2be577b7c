"""Emit each pending call's case-open when it is due, and keep trying until it is safe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from channels.base import Emit, Rejected
from channels.settings import TwilioChannelSettings
from channels.twilio.calls import KEEP_OPENED, CallBook, PendingCall, due_at
from normalizer.envelope import Envelope
from normalizer.twilio import bare_number

log = structlog.get_logger("channels.twilio")

TICK_S = 1.0
MAX_BACKOFF_S = 300.0


class CallOpener:
    """Looks at the book on every change and at least once a second; opens what is due.

    A call's case-open is emitted first and the call marked opened after: a crash in between
    emits it again at the next start, with the same CallSid, and the dispatcher drops the
    repeat.
    """

    def __init__(self, settings: TwilioChannelSettings, book: CallBook, emit: Emit) -> None:
        self._settings = settings
        self._book = book
        self._emit = emit

    async def run(self) -> None:
        """Run until cancelled."""
        if len(self._book):
            log.info("pending calls resumed", calls=len(self._book))
        while True:
            self._book.changed.clear()
            try:
                await self.open_due()
            except Exception:
                # The book cannot be written (disk full, say): keep going, it is all on disk.
                log.exception("pending calls not processed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._book.changed.wait()

    async def open_due(self) -> None:
        """Emit every call that is due; forget markers of calls opened long ago."""
        now = datetime.now(UTC)
        for call in self._book.calls():
            due = due_at(call, self._settings)
            if due is not None and due <= now:
                await self._open(call)
            elif call.opened_at is not None and call.opened_at + KEEP_OPENED <= now:
                await self._book.forget(call.call_sid)

    async def _open(self, call: PendingCall) -> None:
        try:
            opened = await self._emit(_envelope(call))
        except Rejected as error:
            # Kept in quarantine (a withheld caller id, say): done here, replayable there.
            await self._book.change(call.call_sid, _opened(error.quarantine_id))
            log.warning("call quarantined", call_sid=call.call_sid, reason=error.reason)
            return
        except Exception as error:
            await self._later(call, error)
            return
        await self._book.change(call.call_sid, _opened(opened))
        log.info(
            "call opened",
            call_sid=call.call_sid,
            id=opened,
            recording=call.recording_url is not None,
            transcript=call.transcript is not None,
        )

    async def _later(self, call: PendingCall, error: Exception) -> None:
        """Try again after a growing pause (NotSafe: the broker and spool are unavailable)."""
        pause = min(5.0 * 2**call.attempts, MAX_BACKOFF_S)
        log.warning("call not opened yet", call_sid=call.call_sid, error=repr(error), retry_s=pause)
        retry_at = datetime.now(UTC) + timedelta(seconds=pause)
        await self._book.change(
            call.call_sid,
            lambda current: current.model_copy(
                update={"retry_at": retry_at, "attempts": current.attempts + 1}
            ),
        )


def _envelope(call: PendingCall) -> Envelope:
    return Envelope(
        channel="voice",
        adapter="twilio",
        touchpoint=bare_number(call.called) or "unknown",
        received_at=call.started_at,
        payload=call.payload(),
        source_id=call.call_sid,
    )


def _opened(case_id: str) -> Callable[[PendingCall], PendingCall]:
    def apply(call: PendingCall) -> PendingCall:
        return call.model_copy(update={"opened_id": case_id, "opened_at": datetime.now(UTC)})

    return apply
