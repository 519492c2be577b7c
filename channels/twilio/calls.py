"""Calls waiting for their voicemail callbacks, kept as one durable JSON file per CallSid.

Twilio tells us about one call in several requests that arrive in any order: the call itself,
the recording, its transcription, the call's end. Each request is written here (fsynced)
before it is answered, so a daemon restart loses nothing: the book is read back at start-up
and the waiting goes on. When a call is complete (or has waited long enough), its case-open
is emitted; the file then stays as a marker for a day, so that late or repeated callbacks of
an opened call are recognised instead of starting a second case.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from channels.settings import TwilioChannelSettings
from normalizer.twilio import TwilioCall

log = structlog.get_logger("channels.twilio")

GREETING_ALLOWANCE_S = 60.0
"""Time a caller may spend on the greeting before recording starts."""
KEEP_OPENED = timedelta(days=1)
"""How long an opened call's marker outlives it, to recognise late callbacks."""


class PendingCall(BaseModel):
    """What Twilio has told us about one call so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_sid: str
    caller: str = ""
    called: str = ""
    started_at: AwareDatetime
    recording_url: str | None = None
    recording_sid: str | None = None
    duration_s: float | None = None
    recording_at: AwareDatetime | None = None
    transcript: str | None = None
    transcript_at: AwareDatetime | None = None
    """When the transcription callback came, completed or failed."""
    ended_at: AwareDatetime | None = None
    recording_absent: bool = False
    retry_at: AwareDatetime | None = None
    attempts: int = 0
    opened_id: str | None = None
    """The case-open id (or quarantine id) once the call was handed on."""
    opened_at: AwareDatetime | None = None

    def payload(self) -> TwilioCall:
        """The call as the normaliser takes it."""
        return TwilioCall(
            call_sid=self.call_sid,
            caller=self.caller,
            called=self.called,
            recording_url=self.recording_url,
            recording_sid=self.recording_sid,
            duration_s=self.duration_s,
            transcript=self.transcript,
        )


def due_at(call: PendingCall, settings: TwilioChannelSettings) -> datetime | None:
    """When the call's case-open should be emitted; None once it has been.

    Complete (recording and transcript, or a recording without transcription): now. A
    recording still waiting for its transcript, or a transcript for its recording:
    `transcript_wait_s`. No recording after the call ended: `recording_wait_s`, then it is a
    callback request. No word of the call's end (no status callback configured): the longest
    possible recording plus the greeting, then the same.
    """
    if call.opened_id is not None:
        return None
    transcript_wait = timedelta(seconds=settings.transcript_wait_s)
    if call.recording_at and (call.transcript_at or not settings.transcribe):
        due = max(call.recording_at, call.transcript_at or call.recording_at)
    elif call.recording_at:
        due = call.recording_at + transcript_wait
    elif call.transcript_at:
        due = call.transcript_at + transcript_wait
    elif call.recording_absent and call.ended_at:
        due = call.ended_at
    elif call.ended_at:
        due = call.ended_at + timedelta(seconds=settings.recording_wait_s)
    else:
        longest = settings.voice_max_recording_s + GREETING_ALLOWANCE_S + settings.recording_wait_s
        due = call.started_at + timedelta(seconds=longest)
    return max(due, call.retry_at) if call.retry_at else due


WriteDurably = Callable[[Path, bytes], None]
"""Write a whole file or none, fsynced (the daemon passes `ingest.durable.write_durably`)."""


class CallBook:
    """The pending calls in memory, each change written durably to `<directory>/<CallSid>.json`.

    One lock serialises changes: callbacks of one call can arrive at the same moment.
    """

    def __init__(self, directory: Path, write: WriteDurably) -> None:
        self._directory = directory
        self._write = write
        directory.mkdir(parents=True, exist_ok=True)
        self._calls = {call.call_sid: call for call in self._load()}
        self._lock = asyncio.Lock()
        self.changed = asyncio.Event()
        """Set on every change, so the opener looks again at once."""

    def __len__(self) -> int:
        return len(self._calls)

    def calls(self) -> list[PendingCall]:
        """Every call in the book, oldest first."""
        return sorted(self._calls.values(), key=lambda call: call.started_at)

    async def change(
        self, call_sid: str, apply: Callable[[PendingCall], PendingCall]
    ) -> PendingCall:
        """Apply a change to a call (a new one if unknown); return once it is on disk."""
        async with self._lock:
            current = self._calls.get(call_sid) or PendingCall(
                call_sid=call_sid, started_at=datetime.now(UTC)
            )
            updated = apply(current)
            if current.opened_id and updated != current:
                log.info("callback after the call's case opened", call_sid=call_sid)
            data = updated.model_dump_json(indent=2).encode()
            await asyncio.to_thread(self._write, self._path(call_sid), data)
            self._calls[call_sid] = updated
        self.changed.set()
        return updated

    async def forget(self, call_sid: str) -> None:
        """Remove a call's file (its marker has served its time).

        Not fsynced: should the unlink be lost in a crash, the marker is simply removed again.
        """
        async with self._lock:
            await asyncio.to_thread(self._path(call_sid).unlink, missing_ok=True)
            self._calls.pop(call_sid, None)

    def _path(self, call_sid: str) -> Path:
        return self._directory / f"{call_sid}.json"

    def _load(self) -> list[PendingCall]:
        for leftover in self._directory.glob(".*.tmp"):
            leftover.unlink()  # a write cut short by a crash was never acknowledged
        calls = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                calls.append(PendingCall.model_validate_json(path.read_bytes()))
            except (OSError, ValidationError, json.JSONDecodeError) as error:
                # Never silently: set the file aside for a person to look at.
                os.replace(path, path.with_suffix(".unreadable"))
                log.error("pending call unreadable, set aside", file=str(path), error=str(error))
        return calls
