"""A channel that exists only in the tests: proof that a record is all the daemon needs.

Started, it emits one web message per configured text, each with a source id of its own,
and keeps the case-open ids it was given; it never touches anything but `emit`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from pydantic import Field

from channels.base import Built, Emit, Wiring
from channels.registry import ChannelRecord, ChannelSettings, channel_settings
from channels.settings import ChannelSection
from normalizer.envelope import Envelope
from normalizer.web import WebMessage

ADAPTER = "echo"


class EchoSettings(ChannelSection):
    """`[channels.echo]`: the texts to send, from whom."""

    enabled: bool = False
    sender: str = "echo@example.com"
    texts: list[str] = Field(default_factory=list)


class EchoChannel:
    """Emits its texts once, in the background, between start() and stop()."""

    name = "echo"

    def __init__(self, settings: EchoSettings, emit: Emit) -> None:
        self._settings = settings
        self._emit = emit
        self._task: asyncio.Task[None] | None = None
        self.case_ids: list[str] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._send(), name="echo")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _send(self) -> None:
        for number, text in enumerate(self._settings.texts):
            message = WebMessage.model_validate(
                {"sender": {"email": self._settings.sender}, "text": text}
            )
            envelope = Envelope(
                "web", ADAPTER, "echo", datetime.now(UTC), message, f"echo-{number}"
            )
            self.case_ids.append(await self._emit(envelope))


def build(settings: EchoSettings, wiring: Wiring) -> Built:
    return Built(EchoChannel(settings, wiring.emit))


def never(settings: EchoSettings, wiring: Wiring) -> Built:
    """The builder of a channel that is never enabled: building it is the daemon's mistake."""
    raise AssertionError("the daemon built a channel that is not enabled")


ECHO = ChannelRecord("echo", EchoSettings, payloads=("web",), build="tests.echo_channel:build")
DORMANT = ChannelRecord(
    "dormant", EchoSettings, payloads=("web",), build="tests.echo_channel:never"
)
WithEcho = channel_settings((ECHO, DORMANT), base=ChannelSettings)
"""The `[channels]` table with the test channels' sections besides the shipped ones."""
