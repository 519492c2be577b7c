"""A stand-in outbound SMTP relay on loopback (aiosmtpd), capturing what the daemon sends.

It can refuse recipients (as a relay refuses an unknown or blocked address), ask for a login
(a password, or an OAuth2 access token with SASL XOAUTH2 or OAUTHBEARER, checked by token
introspection at a stand-in provider, as Microsoft 365 and Gmail check theirs), and be stopped
and started again on the same port, as if the relay went away and came back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import warnings
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import httpx
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
    `tls` is "starttls" (required before MAIL) or "tls" (implicit, as on port 465);
    `introspection_url` asks for an OAuth2 login instead (XOAUTH2, OAUTHBEARER)."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        tls: str | None = None,
        certificate: tuple[object, object] | None = None,
        introspection_url: str | None = None,
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
        self._introspection_url = introspection_url
        self.logins: list[tuple[str, str, bool]] = []  # (mechanism, user, accepted)
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
        oauth2 = self._introspection_url is not None
        needs_login = self._credentials is not None or oauth2
        with warnings.catch_warnings():
            # AUTH without TLS is what a test on loopback wants; aiosmtpd warns about it.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            protocol = SMTP(
                self,
                hostname="relay.test",
                authenticator=self._authenticate if self._credentials else None,
                auth_required=needs_login,
                auth_exclude_mechanism=["LOGIN", "PLAIN"] if oauth2 else OAUTH2_MECHANISMS,
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

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """user=<user>^Aauth=Bearer <token>^A^A; a refusal is a JSON challenge, then 535."""
        fields = await _initial(server, args)
        parts = dict(part.split("=", 1) for part in fields.split("\x01") if "=" in part)
        return await self._bearer(server, "XOAUTH2", parts.get("user", ""), parts.get("auth", ""))

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        """n,a=<user>,^Aauth=Bearer <token>^A^A (RFC 7628)."""
        fields = await _initial(server, args)
        header, _, rest = fields.partition("\x01")
        user = header.split("a=", 1)[1].split(",", 1)[0] if "a=" in header else ""
        user = user.replace("=2C", ",").replace("=3D", "=")
        parts = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        return await self._bearer(server, "OAUTHBEARER", user, parts.get("auth", ""))

    async def _bearer(self, server: SMTP, mechanism: str, user: str, auth: str) -> AuthResult:
        token = auth.removeprefix("Bearer ")
        assert self._introspection_url is not None
        async with httpx.AsyncClient() as client:
            answer = (await client.post(self._introspection_url, data={"token": token})).json()
        accepted = bool(answer.get("active")) and answer.get("username") == user
        self.logins.append((mechanism, user, accepted))
        if not accepted:
            error = {"status": "401", "schemes": "bearer", "scope": "mail"}
            await server.challenge_auth(json.dumps(error))  # the client answers empty
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user.encode())

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


OAUTH2_MECHANISMS = ["XOAUTH2", "OAUTHBEARER"]


async def _initial(server: SMTP, args: list[str]) -> str:
    """The client's first SASL message: sent with AUTH, or asked for with an empty challenge."""
    if len(args) > 1:
        return base64.b64decode(args[1]).decode()
    blob = await server.challenge_auth("")
    return blob.decode() if isinstance(blob, bytes) else ""
