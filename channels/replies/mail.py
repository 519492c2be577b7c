"""Email replies through the outbound SMTP relay (smtplib, in a thread).

The reply threads onto the original (In-Reply-To, References) and says it is automatic
(RFC 3834 `Auto-Submitted: auto-replied`, plus `X-Auto-Response-Suppress: All` for Exchange
and `Precedence: auto_reply` for older responders), so that no auto-responder answers it.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid

from channels.replies.base import Permanent, Transient
from channels.settings import OutboundMailSettings
from normalizer.acks import EMAIL, AckRequest


class MailReplier:
    """Sends each reply in its own SMTP session: acknowledgements are few and far between."""

    name = "smtp"

    def __init__(self, settings: OutboundMailSettings) -> None:
        self._settings = settings

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
            if settings.user and settings.password:
                smtp.login(settings.user, settings.password.get_secret_value())
        except OSError as error:
            smtp.close()
            raise Transient(f"relay {where} session failed: {_describe(error)}") from None
        return smtp


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
