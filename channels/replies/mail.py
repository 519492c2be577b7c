"""Email replies through the outbound SMTP relay (smtplib, in a thread).

With `auth = "oauth2"` the relay is logged in to with SASL OAUTHBEARER when it offers it, else
XOAUTH2 (or as `mechanism` says), an access token refreshed as needed; a relay
that refuses one gets a fresh one once. A refresh token the provider refused is a lasting
failure: logged once per outage, shown by `readiness()`, and replies wait (retried).

The reply threads onto the original (In-Reply-To, References) and says it is automatic
(RFC 3834 `Auto-Submitted: auto-replied`, plus `X-Auto-Response-Suppress: All` for Exchange
and `Precedence: auto_reply` for older responders), so that no auto-responder answers it.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

import structlog

from channels.oauth2 import TokenRefused, TokenSource, TokenUnavailable, token_path, token_source
from channels.oauth2.store import WriteDurably
from channels.replies.base import Permanent, Transient
from channels.settings import OutboundMailSettings
from normalizer.acks import EMAIL, AckRequest

log = structlog.get_logger("channels.replies.mail")
AUTHORIZE_COMMAND = "ingest outbound authorize"


class MailReplier:
    """Sends each reply in its own SMTP session: acknowledgements are few and far between."""

    name = "smtp"

    def __init__(self, settings: OutboundMailSettings, tokens: TokenSource | None = None) -> None:
        self._settings = settings
        self._tokens = tokens
        self._outage = threading.Lock()
        self.problem: str | None = None
        """A lasting failure to log in that an admin must fix (for /readyz)."""

    def readiness(self) -> str | None:
        return self.problem

    async def send(self, ack: AckRequest) -> str:
        sender = self._settings.from_address or ack.via
        if not EMAIL.match(sender):
            raise Permanent(
                f"no From address for a reply via {ack.via!r}: set outbound.mail.from_address"
            )
        message = compose(ack, sender, self._settings.from_name)
        envelope_sender = "" if self._settings.null_sender else sender
        await asyncio.to_thread(self._deliver, message, envelope_sender, ack.to)
        return str(message["Message-ID"])

    async def close(self) -> None:
        """Nothing stays open between replies."""

    def _deliver(self, message: EmailMessage, envelope_sender: str, recipient: str) -> None:
        with self._session() as smtp:
            try:
                smtp.send_message(message, from_addr=envelope_sender, to_addrs=[recipient])
            except smtplib.SMTPRecipientsRefused as error:
                code, text = error.recipients[recipient]
                raise _by_code(code, text, f"the relay refused {recipient}") from None
            except smtplib.SMTPResponseException as error:
                raise _by_code(
                    error.smtp_code, error.smtp_error, "the relay refused the mail"
                ) from None
            except OSError as error:  # smtplib's own errors are OSErrors too
                raise Transient(f"the relay dropped the session: {_describe(error)}") from None

    def _session(self) -> smtplib.SMTP:
        """A connected, greeted, secured and logged-in session; failures here are the relay's
        or the configuration's, never the reply's, so they are all worth another try."""
        settings = self._settings
        where = f"{settings.host}:{settings.port}"
        context = ssl.create_default_context(cafile=settings.ca_file)
        smtp_class = smtplib.SMTP_SSL if settings.security == "tls" else smtplib.SMTP
        extra = {"context": context} if settings.security == "tls" else {}
        try:
            smtp = smtp_class(
                settings.host,
                settings.port,
                local_hostname=settings.helo_name,
                timeout=settings.timeout_s,
                **extra,  # type: ignore[arg-type]
            )
        except OSError as error:
            raise Transient(f"relay {where} unreachable: {_describe(error)}") from None
        try:
            smtp.ehlo()
            if settings.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if self._tokens is not None and settings.user:
                self._oauth2_login(smtp, settings.user, self._tokens)
            elif settings.user and settings.password:
                smtp.login(settings.user, settings.password.get_secret_value())
        except TokenRefused as error:
            smtp.close()
            self._lasting(str(error))
            raise Transient(f"relay {where}: {error}") from None
        except TokenUnavailable as error:
            smtp.close()
            raise Transient(f"relay {where}: no access token now: {error}") from None
        except OSError as error:
            smtp.close()
            raise Transient(f"relay {where} session failed: {_describe(error)}") from None
        self._lasting(None)
        return smtp

    def _oauth2_login(self, smtp: smtplib.SMTP, user: str, tokens: TokenSource) -> None:
        """AUTH XOAUTH2 (or OAUTHBEARER); a refused token is refreshed and tried once more."""
        token = tokens.access_token()
        try:
            _sasl_bearer(smtp, user, token, self._mechanism(smtp))
            return
        except smtplib.SMTPAuthenticationError:
            tokens.refused(token)
        token = tokens.access_token()
        try:
            _sasl_bearer(smtp, user, token, self._mechanism(smtp))
        except smtplib.SMTPAuthenticationError as error:
            tokens.refused(token)
            raise TokenRefused(
                f"the relay refused a fresh access token for {user} ({_smtp_text(error)})",
                "check user, the scope, and that SMTP AUTH is allowed for this mailbox",
            ) from None

    def _mechanism(self, smtp: smtplib.SMTP) -> str:
        assert self._settings.oauth2 is not None
        chosen = self._settings.oauth2.mechanism
        if chosen == "auto":
            offered = smtp.esmtp_features.get("auth", "").upper().split()
            chosen = "oauthbearer" if "OAUTHBEARER" in offered else "xoauth2"
        return chosen.upper()

    def _lasting(self, problem: str | None) -> None:
        """Log a lasting failure when it starts and when it ends, not on every retry."""
        with self._outage:
            if problem and self.problem is None:
                log.error("outbound relay cannot log in", error=problem)
            elif problem is None and self.problem is not None:
                log.info("outbound relay logs in again")
            self.problem = problem


def mail_tokens(
    settings: OutboundMailSettings, data_dir: Path, write_durably: WriteDurably
) -> TokenSource | None:
    """The relay's access tokens, when it is logged in to with OAuth2."""
    if settings.auth != "oauth2" or settings.oauth2 is None:
        return None
    path = token_path(data_dir, "outbound-mail")
    return token_source(settings.oauth2, "smtp", path, write_durably, AUTHORIZE_COMMAND)


def _sasl_bearer(smtp: smtplib.SMTP, user: str, token: str, mechanism: str) -> None:
    """One AUTH exchange; on a refusal the relay sends a JSON challenge, answered empty."""
    if mechanism == "OAUTHBEARER":
        escaped = user.replace("=", "=3D").replace(",", "=2C")
        first = f"n,a={escaped},\x01auth=Bearer {token}\x01\x01"
    else:
        first = f"user={user}\x01auth=Bearer {token}\x01\x01"

    def answer(challenge: bytes | None = None) -> str:
        return first if challenge is None else ""

    smtp.auth(mechanism, answer, initial_response_ok=True)


def _smtp_text(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{error.smtp_code} {text}"


def compose(ack: AckRequest, sender: str, sender_name: str | None = None) -> EmailMessage:
    """The reply as a mail: plain UTF-8 text, threaded onto the original when it can be."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((sender_name, sender)) if sender_name else sender
    message["To"] = ack.to
    message["Subject"] = ack.subject or f"Your request {ack.case_id}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    original = _original_message_id(ack)
    if original:
        message["In-Reply-To"] = original
        message["References"] = original
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message["Precedence"] = "auto_reply"
    message["X-Ingest-Case"] = ack.case_id
    message.set_content(ack.text)
    message["Content-Language"] = ack.language  # after set_content, which clears Content-*
    return message


def _original_message_id(ack: AckRequest) -> str | None:
    """The original's Message-ID in brackets; only mail has one (a mail without a Message-ID
    has a sha256 source id, web and logged contacts an idempotency key)."""
    if ack.channel != "email" or ack.source_id.startswith("sha256:"):
        return None
    bare = ack.source_id.strip().removeprefix("<").removesuffix(">")
    return f"<{bare}>" if bare and " " not in bare else None


def _by_code(code: int, text: bytes | str, what: str) -> Transient | Permanent:
    """SMTP's own verdict: 5xx is final, 4xx (or anything odd) is worth another try."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    reason = f"{what}: {code} {text}".strip()
    return Permanent(reason) if 500 <= code < 600 else Transient(reason)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
