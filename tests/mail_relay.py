"""A stand-in outbound SMTP relay on loopback (aiosmtpd), capturing what the daemon sends.

It can refuse recipients (as a relay refuses an unknown or blocked address), ask for a login,
and be stopped and started again on the same port, as if the relay went away and came back.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.daemon import free_port


@dataclass(frozen=True)
class Received:
    """One mail as the relay accepted it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


class MailRelay:
    """`refuse[address] = "550 ..."` refuses that recipient; `credentials` asks for AUTH;
    `tls` is "starttls" (required before MAIL) or "tls" (implicit, as on port 465)."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        tls: str | None = None,
        certificate: tuple[object, object] | None = None,
    ) -> None:
        self.port = free_port()
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        if certificate is not None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(*certificate)  # type: ignore[arg-type]
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}
        self._protocols: list[SMTP] = []
        self._credentials = credentials
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        implicit = self._context if self._tls == "tls" else None
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", self.port, ssl=implicit
        )

    async def stop(self) -> None:
        """Stop listening and drop the sessions still open, as a relay that goes away."""
        if self._server is not None:
            self._server.close()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            await self._server.wait_closed()
            self._server = None

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is what a test on loopback wants; aiosmtpd warns about it.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            protocol = SMTP(
                self,
                hostname="relay.test",
                authenticator=self._authenticate if self._credentials else None,
                auth_required=self._credentials is not None,
                auth_require_tls=False,
                tls_context=self._context if self._tls == "starttls" else None,
                require_starttls=self._tls == "starttls",
            )
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._credentials is None:
            return AuthResult(success=False, handled=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=given == self._credentials, auth_data=auth_data.login)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(envelope.mail_from or "", list(envelope.rcpt_tos), message, login, tls)
        )
        return "250 2.0.0 queued"
