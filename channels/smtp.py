"""The SMTP channel (aiosmtpd): mail a site's MTA relays to us becomes one case-open.

The 250 after DATA is only sent once the case-open is safe (broker confirm or spool), so an MTA
that sees 250 may forget the mail; anything else is a 4xx (retry) or a 5xx with the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from datetime import UTC, datetime
from typing import AnyStr

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from channels.base import Emit, NotSafe, Rejected
from channels.settings import SmtpChannelSettings
from normalizer.envelope import Envelope as RawEnvelope
from normalizer.envelope import RawMail

log = structlog.get_logger("channels.smtp")


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
        recipients = tuple(address.lower() for address in envelope.rcpt_tos)
        mail = RawEnvelope(
            channel="email",
            adapter="smtp",
            touchpoint=recipients[0],
            received_at=datetime.now(UTC),
            payload=RawMail(raw, recipients),
        )
        try:
            case_id = await self._emit(mail)
        except Rejected as error:
            return f"554 5.6.0 {_one_line(error.reason)}; kept as {error.quarantine_id}"
        except NotSafe:
            return "451 4.3.0 cannot store the message right now, try again later"
        except Exception:
            log.exception("mail not taken", peer=_peer(session), size=len(raw))
            return "451 4.3.0 local error, try again later"
        return f"250 2.0.0 OK queued as {case_id}"


class SizeCodedSMTP(SMTP):
    """aiosmtpd's SMTP with the enhanced status code (RFC 3463) on its size refusals."""

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode()
        if text.startswith("552 Error:"):
            limit = self.data_size_limit
            text = f"552 5.3.4 message too big for this system (limit {limit} bytes)"
        await super().push(text)


class SizeCodedLMTP(SizeCodedSMTP, LMTP):
    """The same for LMTP."""


class SmtpChannel:
    """The listener: `start()` binds the port, `stop()` closes it and waits for sessions."""

    name = "smtp"

    def __init__(self, settings: SmtpChannelSettings, emit: Emit) -> None:
        self._settings = settings
        self._handler = SmtpHandler(settings, emit)
        self._server: asyncio.Server | None = None
        self._tls = _tls_context(settings)

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
        protocol = SizeCodedLMTP if settings.lmtp else SizeCodedSMTP
        return protocol(
            self._handler,
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
