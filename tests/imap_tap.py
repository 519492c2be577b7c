"""A TCP proxy in front of Dovecot that delivers mail at the moment the adapter sends a command.

To test what happens to mail arriving while the adapter fetches or flags, a test arms the tap
with mails; each time the adapter sends one of the watched commands (UID FETCH, UID STORE),
the next armed mail is APPENDed over a connection of the tap's own *before* the command goes
on to Dovecot. Dovecot then announces it (`* n EXISTS`) in its answer to that very command.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from tests.daemon import free_port
from tests.imap_server import Dovecot

WATCHED = (b" UID FETCH ", b" UID STORE ")
IDLE = (b" IDLE\r\n",)
"""To deliver a mail as the adapter starts IDLE: the server then announces it right behind
IDLE's continuation, often in the same packet."""


@dataclass
class Appended:
    """A mail the tap delivered: its subject, and when the APPEND was done (monotonic)."""

    subject: str
    at: float = field(default=0.0)
    during: bytes = b""


class ImapTap:
    """127.0.0.1:<port> to the Dovecot; `arm(subject, raw)` queues a mail for the next
    watched command (`on`: which); `appended` lists what was delivered, in order."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.port = free_port()
        self._dovecot = dovecot
        self._armed: deque[tuple[str, bytes, tuple[bytes, ...]]] = deque()
        self.appended: list[Appended] = []
        self.failures: list[str] = []  # APPENDs that failed: the test says why it saw none
        self.commands: list[tuple[float, bytes]] = []  # what the adapter sent, for a failure
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def arm(self, subject: str, raw: bytes, on: tuple[bytes, ...] = WATCHED) -> None:
        self._armed.append((subject, raw, on))

    @property
    def armed(self) -> int:
        return len(self._armed)

    async def start(self) -> ImapTap:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.drop()

    async def drop(self) -> None:
        """Reset every connection, as a server restart or a network failure would; new
        connections are still taken."""
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._dovecot.port
        )
        self._writers.update({writer, upstream_writer})
        pipes = [
            asyncio.create_task(self._commands(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        self._tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
            self._tasks.discard(pipe)
        for w in (writer, upstream_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server, a line at a time (literals pass as lines of their own)."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                self.commands.append((time.monotonic(), line[:60]))
                command = line.upper()
                if self._armed and any(word in command for word in self._armed[0][2]):
                    subject, raw, _ = self._armed.popleft()
                    try:
                        await asyncio.to_thread(self._dovecot.append, raw)
                    except Exception as error:  # reported by the test
                        self.failures.append(f"{subject}: {error!r}")
                    else:
                        self.appended.append(Appended(subject, time.monotonic(), line.strip()))
                writer.write(line)
                await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
