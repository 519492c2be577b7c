"""One IMAP account, watched from its own thread: fetch new mail, make it safe, then mark it.

imapclient is synchronous, so each account runs in a thread and hands mail to the event loop's
`emit`, waiting for the answer. A mail is flagged \\Seen or moved only after `emit` returned
(the case-open is safe), and its UID is saved only after that. Mail that can never become a
case-open goes to the unprocessable folder; when nothing can be made safe (NotSafe), the
mail stays where it is and is tried again after a pause.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from channels.base import Emit, NotSafe, Rejected
from channels.imap.ledger import Ledger, Position
from channels.oauth2 import TokenRefused, TokenSource, TokenUnavailable
from channels.settings import ImapAccount
from normalizer.envelope import Envelope, RawMail

log = structlog.get_logger("channels.imap")

EmitBlocking = Callable[[Envelope], str]
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE", b"RFC822.SIZE"]
IDLE_CHECK_S = 1.0
NOT_SAFE_PAUSE_S = 5.0
CONNECTION_ERRORS = (IMAPClientError, OSError)  # timeouts and TLS errors are OSErrors


class Stopped(Exception):
    """The daemon is stopping; leave the session at once."""


class TokenNotAccepted(TokenRefused):
    """The server refused a freshly refreshed access token: a setting, not an expiry."""


class Mailbox:
    """The watch over one account: connect, catch up, wait for news, reconnect on failure."""

    def __init__(
        self,
        account: ImapAccount,
        emit: EmitBlocking,
        ledger: Ledger,
        stop: threading.Event,
        tokens: TokenSource | None = None,
    ) -> None:
        self._account = account
        self._emit = emit
        self._ledger = ledger
        self._stop = stop
        self._tokens = tokens
        self._log = log.bind(account=account.name)
        self._failing = False
        self._delay = 1.0
        self.problem: str | None = None
        """A lasting failure an admin must fix (for /readyz), until the session works."""

    def run(self) -> None:
        """Until stopped: keep a session, backing off after each failure (logged once)."""
        while not self._stop.is_set():
            try:
                with self._connect() as client:
                    self._watch(client)
            except Stopped:
                return
            except CONNECTION_ERRORS as error:
                self._failed("imap session failed", error)
            except TokenRefused as error:  # lasting: only an admin can mend it
                self.problem = str(error)
                self._failed("imap account cannot log in", error, lasting=True)
            except TokenUnavailable as error:
                self._failed("imap account cannot get an access token", error)
            except LookupError as error:  # the password variable is not set
                self._failed("imap account cannot log in", error)
            if self._stop.wait(self._delay):
                return
            self._delay = min(self._delay * 2, self._account.reconnect_max_s)

    def _failed(self, event: str, error: Exception, lasting: bool = False) -> None:
        """Log the first failure of an outage; the rest only at debug level."""
        report = self._log.warning
        if self._failing:
            report = self._log.debug
        elif lasting:
            report = self._log.error
        report(event, error=str(error) or repr(error), retry_in_s=self._delay)
        self._failing = True

    def _watching(self) -> None:
        """The session works (folder selected, caught up): an outage, if any, is over."""
        if self._failing:
            self._log.info("imap session back")
        self._failing, self._delay, self.problem = False, 1.0, None

    def _connect(self) -> IMAPClient:
        if self._tokens is None:
            account = self._account
            return self._open(lambda client: client.login(account.user, account.password()))
        tokens = self._tokens
        token = tokens.access_token()
        try:
            return self._open(lambda client: self._oauth2_login(client, token))
        except LoginError:
            # Revoked or expired early, or cached too long: once more with a fresh one.
            tokens.refused(token)
        token = tokens.access_token()
        try:
            return self._open(lambda client: self._oauth2_login(client, token))
        except LoginError as error:
            tokens.refused(token)
            raise TokenNotAccepted(
                f"the server refused a fresh access token for {self._account.user} ({error})",
                "check user, the scope, and that IMAP is allowed for this mailbox",
            ) from None

    def _oauth2_login(self, client: IMAPClient, token: str) -> None:
        """SASL OAUTHBEARER (RFC 7628) when chosen or offered, else XOAUTH2."""
        assert self._account.oauth2 is not None
        mechanism = self._account.oauth2.mechanism
        if mechanism == "auto":
            offered = client.has_capability("AUTH=OAUTHBEARER")
            mechanism = "oauthbearer" if offered else "xoauth2"
        if mechanism == "oauthbearer":
            client.oauthbearer_login(self._account.user, token)
        else:
            client.oauth2_login(self._account.user, token)

    def _open(self, log_in: Callable[[IMAPClient], object]) -> IMAPClient:
        account = self._account
        context = ssl.create_default_context(cafile=account.ca_file)
        client = IMAPClient(
            account.host,
            port=account.port,
            ssl=account.security == "tls",
            ssl_context=context,
            timeout=account.timeout_s,
        )
        try:
            if account.security == "starttls":
                client.starttls(context)
            log_in(client)
        except BaseException:
            client.shutdown()
            raise
        return client

    def _watch(self, client: IMAPClient) -> None:
        account = self._account
        status = client.select_folder(account.folder)
        uidvalidity = int(status[b"UIDVALIDITY"])
        self._ensure_folders(client)
        position = self._ledger.load()
        if position is None or position.uidvalidity != uidvalidity:
            if position is not None:
                self._log.warning("imap folder renumbered (UIDVALIDITY), scanning it again")
            position = self._first_scan(client, uidvalidity, int(status[b"UIDNEXT"]))
        idle = account.idle and client.has_capability("IDLE")
        self._log.info(
            "imap watching", folder=account.folder, after_uid=position.last_uid, idle=idle
        )
        self._watching()
        while True:
            _news_announced(client)  # what was announced so far, this round takes
            position = self._take_new(client, position)
            if _news_announced(client):
                continue  # mail came while we fetched or flagged: take it before waiting
            self._wait_for_news(client, idle)

    def _first_scan(self, client: IMAPClient, uidvalidity: int, uidnext: int) -> Position:
        """Take what is waiting: unseen mail (or all of it, when mail is moved away)."""
        criteria = ["UNSEEN"] if self._account.after == "seen" else ["ALL"]
        waiting = sorted(uid for uid in client.search(criteria) if uid < uidnext)
        for uid in waiting:
            self._take(client, uid)
        position = Position(uidvalidity, uidnext - 1)
        self._ledger.save(position)
        return position

    def _take_new(self, client: IMAPClient, position: Position) -> Position:
        """Everything above the saved UID, in order, saving the position after each mail."""
        found = client.search(["UID", f"{position.last_uid + 1}:*"])
        # "n:*" also matches the highest UID when it is below n: keep only the new ones.
        for uid in sorted(uid for uid in found if uid > position.last_uid):
            self._take(client, uid)
            position = Position(position.uidvalidity, uid)
            self._ledger.save(position)
        return position

    def _take(self, client: IMAPClient, uid: int) -> None:
        """One mail: fetch, emit, then mark or move; retry while it cannot be made safe."""
        account = self._account
        fetched = client.fetch([uid], [b"RFC822.SIZE", b"INTERNALDATE"]).get(uid)
        if fetched is None:  # expunged meanwhile by someone else
            return
        size = int(fetched[b"RFC822.SIZE"])
        if size > account.max_message_bytes:
            self._log.warning(
                "imap mail over the size limit, set aside unread",
                uid=uid,
                size=size,
                folder=account.unprocessable_folder,
            )
            self._move(client, uid, account.unprocessable_folder)
            return
        data = client.fetch([uid], [b"BODY.PEEK[]"])[uid][b"BODY[]"]
        envelope = Envelope(
            channel="email",
            adapter="imap",
            touchpoint=account.touchpoint,
            received_at=_aware(fetched[b"INTERNALDATE"]),
            payload=RawMail(bytes(data), (account.touchpoint,)),
        )
        while True:
            try:
                case_id = self._emit(envelope)
                break
            except Rejected as error:
                self._log.warning(
                    "imap mail unprocessable, moved aside",
                    uid=uid,
                    reason=error.reason,
                    quarantine_id=error.quarantine_id,
                    folder=account.unprocessable_folder,
                )
                self._move(client, uid, account.unprocessable_folder)
                return
            except NotSafe:
                self._log.warning("imap mail cannot be made safe now, will retry", uid=uid)
                if self._stop.wait(NOT_SAFE_PAUSE_S):
                    raise Stopped from None
                client.noop()  # keep the session alive while waiting
        if account.after == "move":
            self._move(client, uid, account.move_to)
        else:
            client.add_flags([uid], [b"\\Seen"])
        self._log.info("imap mail taken", uid=uid, id=case_id)

    def _move(self, client: IMAPClient, uid: int, folder: str) -> None:
        if client.has_capability("MOVE"):
            client.move([uid], folder)
            return
        client.copy([uid], folder)
        client.delete_messages([uid])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()

    def _ensure_folders(self, client: IMAPClient) -> None:
        folders: Iterable[str] = [self._account.unprocessable_folder]
        if self._account.after == "move":
            folders = [*folders, self._account.move_to]
        for folder in folders:
            if not client.folder_exists(folder):
                client.create_folder(folder)
                self._log.info("imap folder created", folder=folder)

    def _wait_for_news(self, client: IMAPClient, idle: bool) -> None:
        """Return when the server may have new mail (IDLE), or after the poll interval."""
        if not idle:
            if self._stop.wait(self._account.poll_interval_s):
                raise Stopped
            client.noop()
            return
        client.idle()
        try:
            if _news_announced(client) or _buffered(client):
                return
            renew_at = time.monotonic() + self._account.idle_renew_s
            while time.monotonic() < renew_at:
                if self._stop.is_set():
                    raise Stopped
                if _readable(client, IDLE_CHECK_S):
                    return  # news, or the session ended: idle_done's answer tells which
        finally:
            client.idle_done()


def _news_announced(client: IMAPClient) -> bool:
    """Whether the server told of new mail (EXISTS) in the answer to one of our commands
    since the last look; forgets it (and RECENT, which comes with it).

    A server announces mail that arrives during a FETCH or STORE in that command's answer,
    and not again when IDLE starts: unless it is acted on, the mail waits for the next
    event, which may be the IDLE renewal minutes later. imapclient keeps such unsolicited
    answers in imaplib's `untagged_responses` and offers no public way to read them.
    """
    kept = client._imap.untagged_responses
    kept.pop("RECENT", None)
    return bool(kept.pop("EXISTS", None))


def _readable(client: IMAPClient, timeout_s: float) -> bool:
    """Whether the server sent something (or closed the connection) within `timeout_s`.

    Not imapclient's `idle_check`: it takes a reset or an end of file for "nothing yet", so
    a session the server or the network dropped during IDLE went unnoticed (in a loop that
    kept a core busy) until the IDLE renewal, ten minutes later by default."""
    poller = select.poll()
    poller.register(client.socket().fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(timeout_s * 1000))


def _buffered(client: IMAPClient) -> bool:
    """Whether the reader already holds bytes the server sent: `_readable` only polls the
    socket, which does not see them.

    A server announces mail that came just before IDLE right behind IDLE's continuation,
    often in the same packet; reading the continuation buffers the announcement too, and the
    mail would wait for the next event (the IDLE renewal, minutes later). Asked without
    blocking: buffered bytes, or one read of what the socket has now."""
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return bool(client._imap.file.peek(1))
    except OSError:  # nothing there (a TLS socket says so with an error)
        return False
    finally:
        sock.settimeout(timeout)


def _aware(value: object) -> datetime:
    """The server's arrival time when it gave one with a zone, else now."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return datetime.now(UTC)


def emitter(emit: Emit, loop: asyncio.AbstractEventLoop) -> EmitBlocking:
    """Call the pipeline's async `emit` from a mailbox thread and wait for its answer."""

    def emit_blocking(envelope: Envelope) -> str:
        return asyncio.run_coroutine_threadsafe(emit(envelope), loop).result()

    return emit_blocking
