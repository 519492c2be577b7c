"""Replies to customers through the channel they wrote by: which replier answers which channel.

email                      the outbound SMTP relay ([outbound.mail])
sms, whatsapp              Twilio's REST API ([channels.twilio] account_sid)
voice                      an SMS from the number called, when acknowledge_calls_by_sms is on
chat                       the Telegram bot ([channels.telegram])
web, logged                by email when the contact left an email address (`to` has an @);
                           a phone number alone is not answered (there is no number to send
                           from), and the request is dead-lettered saying so

Besides the relay, a service is a channel whose record (`channels.registry`) has a replier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pkgutil import resolve_name

from channels.oauth2 import TokenSource
from channels.registry import ChannelSettingsBase
from channels.replies.base import Permanent, Replier, SendFailed, Transient, Unconfigured
from channels.replies.mail import MailReplier
from channels.settings import OutboundSettings
from normalizer.acks import AckRequest

__all__ = [
    "Permanent",
    "Replier",
    "Repliers",
    "SendFailed",
    "Transient",
    "Unconfigured",
    "build_repliers",
    "route",
    "unanswerable",
]

MAIL = "mail"
"""The service of email replies: the outbound relay, not a channel of its own."""


@dataclass(frozen=True)
class Repliers:
    """The configured repliers by service ("mail", or the channel whose record has the
    replier); a channel without one gets a Permanent failure naming the fix."""

    channels: ChannelSettingsBase
    services: dict[str, Replier] = field(default_factory=dict)

    def for_request(self, ack: AckRequest) -> Replier:
        """The replier for this request, or Permanent with the reason there is none."""
        service, missing = route(ack.channel, ack.to, self.channels)
        return _needed(self.services.get(service), missing)

    def readiness(self) -> str | None:
        """None unless the mail relay has a lasting failure to log in (OAuth2)."""
        mail = self.services.get(MAIL)
        problem = mail.problem if isinstance(mail, MailReplier) else None
        return f"outbound mail relay: {problem}" if problem else None

    async def close(self) -> None:
        for replier in self.services.values():
            await replier.close()


def route(channel: str, to: str, channels: ChannelSettingsBase) -> tuple[str, str]:
    """Which service answers a request of this channel to this address, and what to configure
    when it is missing; raises Permanent for a request no service can answer."""
    match channel:
        case "email":
            return MAIL, "email replies need [outbound.mail] enabled"
        case "web" | "logged" if "@" in to:
            return MAIL, f"{channel} replies by email need [outbound.mail]"
        case "web" | "logged":
            raise Permanent(f"{channel} contacts are answered by email only, not by phone")
    for record in channels.records:
        replier = record.replier
        if replier is None or channel not in replier.answers:
            continue
        if refused := replier.refuses(channel, channels.section(record)):
            raise Permanent(refused)
        return record.name, replier.answers[channel]
    raise Permanent(f"no replier for the {channel} channel")


def unanswerable(
    channel: str, to: str, channels: ChannelSettingsBase, outbound: OutboundSettings
) -> str | None:
    """Why these settings cannot send this acknowledgement, or None when they can: what the
    dispatcher asks before it requests one, so that it never requests what nobody can send.
    (`[outbound] enabled` is left out: it only says whether this node is one of the senders.)"""
    try:
        service, missing = route(channel, to, channels)
    except Permanent as error:
        return str(error)
    return (
        None if service in _configured(channels, outbound) else f"no replier configured: {missing}"
    )


def build_repliers(
    channels: ChannelSettingsBase,
    outbound: OutboundSettings,
    mail_tokens: TokenSource | None = None,
) -> Repliers:
    """A replier for every service the settings configure; `mail_tokens` when the relay is
    logged in to with OAuth2 (`channels.replies.mail.mail_tokens`)."""
    services: dict[str, Replier] = (
        {MAIL: MailReplier(outbound.mail, mail_tokens)} if outbound.mail.enabled else {}
    )
    for record in channels.records:
        if record.name in _configured(channels, outbound) and record.replier is not None:
            services[record.name] = resolve_name(record.replier.build)(channels.section(record))
    return Repliers(channels, services)


def _configured(channels: ChannelSettingsBase, outbound: OutboundSettings) -> set[str]:
    """The services these settings let send."""
    configured = {MAIL} if outbound.mail.enabled else set()
    for record in channels.records:
        if record.replier and record.replier.configured(channels.section(record)):
            configured.add(record.name)
    return configured


def _needed(replier: Replier | None, reason: str) -> Replier:
    if replier is None:
        raise Unconfigured(f"no replier configured: {reason}")
    return replier
