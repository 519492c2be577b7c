"""The IMAP channel (imapclient): mailboxes watched with IDLE or polling, one thread each."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import structlog

from channels.base import Emit
from channels.imap.ledger import Ledger, WriteDurably
from channels.imap.mailbox import Mailbox, emitter
from channels.settings import ImapChannelSettings

log = structlog.get_logger("channels.imap")
JOIN_TIMEOUT_S = 10.0


class ImapChannel:
    """`start()` starts one watching thread per account; `stop()` ends them after the mail
    each is handling right now."""

    name = "imap"

    def __init__(
        self,
        settings: ImapChannelSettings,
        emit: Emit,
        state_dir: Path,
        write_durably: WriteDurably,
    ) -> None:
        self._settings = settings
        self._emit = emit
        self._state_dir = state_dir
        self._write = write_durably
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    async def start(self) -> None:
        emit_blocking = emitter(self._emit, asyncio.get_running_loop())
        for account in self._settings.accounts:
            ledger = Ledger(self._state_dir / f"{account.name}.json", self._write)
            mailbox = Mailbox(account, emit_blocking, ledger, self._stop)
            thread = threading.Thread(target=mailbox.run, name=f"imap-{account.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("imap started", accounts=[a.name for a in self._settings.accounts])

    async def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("imap account still busy at shutdown", thread=thread.name)
