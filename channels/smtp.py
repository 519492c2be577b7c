"""The SMTP channel (aiosmtpd): mail a site's MTA relays to us becomes one case-open.

The 250 after DATA is only sent once the case-open is safe (broker confirm or spool), so an MTA
that sees 250 may forget the mail; anything else is a 4xx (retry) or a 5xx with the reason.
DATA itself is read in bounded memory (smtp_data.py), and refused before it is sent (451)
while the daemon cannot take more mail (parsing queue full, memory budget reached).
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, AnyStr

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.base import Built, Busy, CannotKeep, Emit, MemoryFull, NotSafe, Rejected, Wiring
from channels.settings import SmtpChannelSettings
from channels.smtp_data import MailData, read_data
from normalizer.envelope import Envelope as RawEnvelope
from normalizer.envelope import RawMail

log = structlog.get_logger("channels.smtp")

Admit = Callable[[], NotSafe | None]
"""Asked before a mail's data is received: None when there is room for it, else the refusal
(`Busy` or `MemoryFull`) the pipeline would raise."""
READ_BYTES = 1 << 16
SPILL_BYTES = 1 << 20
"""A mail larger than this is written to a file while it arrives, not kept in memory."""


class MailEnvelope(Envelope):
    """aiosmtpd's envelope, plus the file holding the data of a large mail."""

    def __init__(self) -> None:
        super().__init__()
        self.file: Path | None = None


def refusal_status(error: NotSafe) -> str:
    """The SMTP answer to a refusal for now."""
    if isinstance(error, Busy):
        return "451 4.3.2 too much mail in hand right now, try again later"
    if isinstance(error, MemoryFull):
        return "451 4.3.1 insufficient system resources, try again later"
    if isinstance(error, CannotKeep):
        # 4.3.1: "mail system full"; the sending MTA keeps the mail and tries again.
        why = _one_line(str(error))
        return f"451 4.3.1 cannot take the message right now, try again later: {why}"
    return "451 4.3.0 cannot store the message right now, try again later"


class SmtpHandler:
    """aiosmtpd handler: RCPT only for our addresses, DATA answered once the mail is safe."""

    def __init__(self, settings: SmtpChannelSettings, emit: Emit) -> None:
        self._settings = settings
        self._emit = emit

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self._settings.accepts(address):
            log.info("recipient refused", recipient=address, peer=_peer(session))
            return f"550 5.1.1 <{address}>: no such mailbox here"
        if address.lower() not in (r.lower() for r in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await self._take(session, envelope)
        if isinstance(server, LMTP):
            # LMTP answers once per recipient; all of them share the one case.
            return "\r\n".join([answer] * len(envelope.rcpt_tos))
        return answer

    async def _take(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        file = envelope.file if isinstance(envelope, MailEnvelope) else None
        recipients = tuple(address.lower() for address in envelope.rcpt_tos)
        mail = RawEnvelope(
            channel="email",
            adapter="smtp",
            touchpoint=recipients[0],
            received_at=datetime.now(UTC),
            payload=RawMail(raw, recipients, file, envelope.mail_from or None),
        )
        try:
            case_id = await self._emit(mail)
        except Rejected as error:
            return f"554 5.6.0 {_one_line(error.reason)}; kept as {error.quarantine_id}"
        except NotSafe as error:
            return refusal_status(error)
        except Exception:
            log.exception("mail not taken", peer=_peer(session), size=len(raw))
            return "451 4.3.0 local error, try again later"
        return f"250 2.0.0 OK queued as {case_id}"


class IngestSMTP(SMTP):
    """aiosmtpd's SMTP with DATA read in bounded memory and refused early when there is no
    room, and the enhanced status code (RFC 3463) on size refusals."""

    # aiosmtpd sizes its stream reader by this; at 1001 bytes a large mail arrives in a
    # hundred thousand pieces. Commands keep their own limit (`command_size_limit`), and
    # DATA lines are not limited here (the parser copes with long ones).
    line_length_limit = READ_BYTES

    def __init__(
        self, handler: SmtpHandler, *, incoming: Path, admit: Admit, **options: Any
    ) -> None:
        super().__init__(handler, **options)
        self._incoming = incoming
        self._admit = admit

    def _create_envelope(self) -> Envelope:
        return MailEnvelope()

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode()
        if text.startswith("552 Error:"):
            limit = self.data_size_limit
            text = f"552 5.3.4 message too big for this system (limit {limit} bytes)"
        await super().push(text)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        refusal = self._admit()
        if refusal is not None:
            await self.push(refusal_status(refusal))
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = MailData(self._incoming, SPILL_BYTES, self.data_size_limit or 0)
        try:
            await read_data(self._reader, data)
            status = await self._handle_data(data)
        finally:
            data.discard()
        self._set_post_data_state()
        await self.push(status)

    async def _handle_data(self, data: MailData) -> str:
        if data.too_big:
            return "552 Error: Too much mail data"
        assert isinstance(self.envelope, MailEnvelope)
        self.envelope.original_content = self.envelope.content = data.finish()
        self.envelope.file = data.path
        status = await self._call_handler_hook("DATA")
        return "250 OK" if status is MISSING else str(status)


class IngestLMTP(IngestSMTP, LMTP):
    """The same for LMTP."""


class SmtpChannel:
    """The listener: `start()` binds the port, `stop()` closes it and waits for sessions."""

    name = "smtp"

    def __init__(
        self, settings: SmtpChannelSettings, emit: Emit, incoming: Path, admit: Admit
    ) -> None:
        self._settings = settings
        self._handler = SmtpHandler(settings, emit)
        self._server: asyncio.Server | None = None
        self._tls = _tls_context(settings)
        self._incoming = incoming
        self._admit = admit

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._settings.host, self._settings.port
        )
        log.info("smtp listening", host=self._settings.host, port=self._settings.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _protocol(self) -> SMTP:
        settings = self._settings
        protocol = IngestLMTP if settings.lmtp else IngestSMTP
        return protocol(
            self._handler,
            incoming=self._incoming,
            admit=self._admit,
            data_size_limit=settings.max_message_bytes,
            hostname=settings.hostname,
            ident="ingest",
            enable_SMTPUTF8=True,
            tls_context=self._tls,
            require_starttls=settings.require_starttls,
            auth_required=settings.auth_user is not None,
            authenticator=self._authenticate if settings.auth_user else None,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        settings = self._settings
        if not isinstance(auth_data, LoginPassword) or settings.auth_password is None:
            return AuthResult(success=False, handled=False)
        expected = (settings.auth_user or "").encode(), settings.auth_password.get_secret_value()
        user_ok = hmac.compare_digest(auth_data.login, expected[0])
        password_ok = hmac.compare_digest(auth_data.password, expected[1].encode())
        if not (user_ok and password_ok):
            log.warning("smtp auth failed", peer=_peer(session), mechanism=mechanism)
        return AuthResult(success=user_ok and password_ok, handled=False)


def build(settings: SmtpChannelSettings, wiring: Wiring) -> Built:
    """The listener; large mails are written to `incoming/` under the data folder as they
    arrive."""
    return Built(SmtpChannel(settings, wiring.emit, wiring.data_dir / "incoming", wiring.admit))


def _tls_context(settings: SmtpChannelSettings) -> ssl.SSLContext | None:
    """The server side of STARTTLS, when a certificate is configured."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def _peer(session: Session) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
