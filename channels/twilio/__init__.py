"""The Twilio channel: SMS, MMS and WhatsApp messages, calls and voicemail, over webhooks.

Routes on the daemon's HTTP server (every request form-encoded and signed by Twilio):

    POST /twilio/sms                    messages; TwiML reply once the case-open is safe
    POST /twilio/voice                  a call comes in; TwiML greets and records
    POST /twilio/voice/recording        <Record> action and recording status callback
    POST /twilio/voice/transcription    the voicemail's transcript
    POST /twilio/voice/status           optional call status callback: the call ended

Messages are emitted while Twilio waits, so a 2xx means the case-open is safe and a 503 asks
Twilio to retry. A call's parts are collected in a durable book of pending calls and emitted
as one case-open by a background opener (see `calls` and `opener`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from fastapi import APIRouter

from channels.base import Built, Emit, Wiring
from channels.settings import TwilioChannelSettings
from channels.twilio.calls import CallBook, WriteDurably
from channels.twilio.media import MediaFetcher, MediaInbox
from channels.twilio.messages import messages_router
from channels.twilio.opener import CallOpener
from channels.twilio.references import References
from channels.twilio.voice import voice_router
from channels.twilio.webhook import Gate

log = structlog.get_logger("channels.twilio")


class TwilioChannel:
    """The webhook routes, plus the opener of pending calls run between start() and stop()."""

    name = "twilio"

    def __init__(
        self,
        settings: TwilioChannelSettings,
        emit: Emit,
        calls_directory: Path,
        write: WriteDurably,
        media_directory: Path,
        references_directory: Path,
    ) -> None:
        self._settings = settings
        self._book = CallBook(calls_directory, write)
        self._opener = CallOpener(settings, self._book, emit)
        inbox = MediaInbox(media_directory, write) if settings.fetch_media else None
        self._fetcher = MediaFetcher(settings, inbox, emit) if inbox else None
        self._references = References(references_directory)
        self._tasks: list[asyncio.Task[None]] = []
        gate = Gate(settings)
        self.router = APIRouter()
        self.router.include_router(messages_router(settings, gate, emit, self._references, inbox))
        self.router.include_router(voice_router(settings, gate, self._book))

    async def start(self) -> None:
        if not self._settings.verify_signatures:
            log.warning("twilio signatures are NOT verified: anyone can post cases")
        self._tasks.append(asyncio.create_task(self._opener.run(), name="twilio-calls"))
        prune = self._references.prune_forever()
        self._tasks.append(asyncio.create_task(prune, name="twilio-references"))
        if self._fetcher is not None:
            self._tasks.append(asyncio.create_task(self._fetcher.run(), name="twilio-media"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def build(settings: TwilioChannelSettings, wiring: Wiring) -> Built:
    """The webhook routes and the opener of pending calls, their state under the data folder."""
    data = wiring.data_dir
    twilio = TwilioChannel(
        settings,
        wiring.emit,
        data / "twilio-calls",
        wiring.write_durably,
        data / "twilio-media",
        data / "twilio-messages",
    )
    return Built(twilio, twilio.router)
