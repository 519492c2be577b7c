"""Replies to customers through the channel they wrote by: which replier answers which channel.

email                      the outbound SMTP relay ([outbound.mail])
sms, whatsapp              Twilio's REST API ([channels.twilio] account_sid)
voice                      an SMS from the number called, when acknowledge_calls_by_sms is on
chat                       the Telegram bot ([channels.telegram])
web, logged                by email when the contact left an email address (`to` has an @);
                           a phone number alone is not answered (there is no number to send
                           from), and the request is dead-lettered saying so
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.replies.base import Permanent, Replier, SendFailed, Transient, Unconfigured
from channels.replies.mail import MailReplier
from channels.replies.telegram import TelegramReplier
from channels.replies.twilio import TwilioReplier
from channels.settings import ChannelSettings, OutboundSettings
from normalizer.acks import AckRequest

__all__ = [
    "Permanent",
    "Replier",
    "Repliers",
    "SendFailed",
    "Transient",
    "Unconfigured",
    "build_repliers",
]


@dataclass(frozen=True)
class Repliers:
    """The configured repliers; a channel without one gets a Permanent failure naming the fix."""

    mail: Replier | None = None
    twilio: Replier | None = None
    telegram: Replier | None = None
    calls_by_sms: bool = False

    def for_request(self, ack: AckRequest) -> Replier:
        """The replier for this request, or Permanent with the reason there is none."""
        match ack.channel:
            case "email":
                return _needed(self.mail, "email replies need [outbound.mail] enabled")
            case "web" | "logged" if "@" in ack.to:
                return _needed(self.mail, f"{ack.channel} replies by email need [outbound.mail]")
            case "web" | "logged":
                raise Permanent(f"{ack.channel} contacts are answered by email only, not by phone")
            case "sms" | "whatsapp":
                return _needed(
                    self.twilio, f"{ack.channel} replies need [channels.twilio] account_sid"
                )
            case "voice" if self.calls_by_sms:
                return _needed(self.twilio, "SMS to callers needs [channels.twilio] account_sid")
            case "voice":
                raise Permanent("calls are not acknowledged: acknowledge_calls_by_sms is off")
            case "chat":
                return _needed(self.telegram, "chat replies need [channels.telegram] enabled")
        raise Permanent(f"no replier for the {ack.channel} channel")

    async def close(self) -> None:
        for replier in (self.mail, self.twilio, self.telegram):
            if replier is not None:
                await replier.close()


def build_repliers(channels: ChannelSettings, outbound: OutboundSettings) -> Repliers:
    """A replier for every service the settings configure."""
    twilio = channels.twilio
    return Repliers(
        mail=MailReplier(outbound.mail) if outbound.mail.enabled else None,
        twilio=TwilioReplier(twilio) if twilio.account_sid else None,
        telegram=TelegramReplier(channels.telegram) if channels.telegram.enabled else None,
        calls_by_sms=twilio.acknowledge_calls_by_sms,
    )


def _needed(replier: Replier | None, reason: str) -> Replier:
    if replier is None:
        raise Unconfigured(f"no replier configured: {reason}")
    return replier
