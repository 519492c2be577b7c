"""The IMAP channel (imapclient): mailboxes watched with IDLE or polling, one thread each."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import structlog

from channels.base import Built, Emit, Wiring
from channels.imap.ledger import Ledger, WriteDurably
from channels.imap.mailbox import Mailbox, emitter
from channels.oauth2 import TokenSource, token_path, token_source
from channels.settings import ImapAccount, ImapChannelSettings

log = structlog.get_logger("channels.imap")
JOIN_TIMEOUT_S = 10.0


class ImapChannel:
    """`start()` starts one watching thread per account; `stop()` ends them after the mail
    each is handling right now. `readiness()` names the accounts an admin must mend.

    OAuth2 accounts keep their refresh token under `data_dir` (`tokens_for`), where
    `ingest imap authorize` writes it."""

    name = "imap"

    def __init__(
        self,
        settings: ImapChannelSettings,
        emit: Emit,
        state_dir: Path,
        write_durably: WriteDurably,
        data_dir: Path,
    ) -> None:
        self._settings = settings
        self._emit = emit
        self._state_dir = state_dir
        self._write = write_durably
        self._data_dir = data_dir
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mailboxes: dict[str, Mailbox] = {}

    async def start(self) -> None:
        emit_blocking = emitter(self._emit, asyncio.get_running_loop())
        for account in self._settings.accounts:
            ledger = Ledger(self._state_dir / f"{account.name}.json", self._write)
            tokens = tokens_for(account, self._data_dir, self._write)
            mailbox = Mailbox(account, emit_blocking, ledger, self._stop, tokens)
            self._mailboxes[account.name] = mailbox
            thread = threading.Thread(target=mailbox.run, name=f"imap-{account.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("imap started", accounts=[a.name for a in self._settings.accounts])

    def readiness(self) -> str | None:
        """None while no account has a lasting failure, else each one's and the fix."""
        problems = [
            f"account {name}: {mailbox.problem}"
            for name, mailbox in self._mailboxes.items()
            if mailbox.problem
        ]
        return "; ".join(problems) or None

    async def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("imap account still busy at shutdown", thread=thread.name)


def authorize_command(account: ImapAccount) -> str:
    return f"ingest imap authorize {account.name}"


def tokens_for(
    account: ImapAccount, data_dir: Path, write_durably: WriteDurably
) -> TokenSource | None:
    """The account's access tokens, when it logs in with OAuth2."""
    if account.auth != "oauth2" or account.oauth2 is None:
        return None
    path = token_path(data_dir, f"imap-{account.name}")
    return token_source(account.oauth2, "imap", path, write_durably, authorize_command(account))


def build(settings: ImapChannelSettings, wiring: Wiring) -> Built:
    """The mailboxes' watcher, its ledgers in `imap/` under the data folder; its readiness
    names the accounts that log in with OAuth2 and whose tokens are refused."""
    imap = ImapChannel(
        settings, wiring.emit, wiring.data_dir / "imap", wiring.write_durably, wiring.data_dir
    )
    oauth2 = any(account.auth == "oauth2" for account in settings.accounts)
    return Built(imap, readiness=imap.readiness if oauth2 else None)
