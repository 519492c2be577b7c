"""Every channel, one record each: the daemon, the settings and the repliers read them here.

A new channel is a folder under `channels/` and one record in `CHANNELS`: its settings
section `[channels.<name>]`, the payload kinds it emits (`normalizer.envelope.PAYLOAD_KINDS`),
the function that builds it, its replier, and the loggers to keep quiet. The functions are
named as "module:attribute" and imported only when used, so that loading the settings (every
`ingest` command) does not import every channel's client library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pkgutil import resolve_name
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, create_model

from channels.settings import (
    ChannelSection,
    ContactFormSettings,
    ImapChannelSettings,
    MailSettings,
    SmtpChannelSettings,
    TelegramChannelSettings,
    TwilioChannelSettings,
    WebChannelSettings,
)

if TYPE_CHECKING:
    from channels.base import Built, Wiring

Need = Literal["api-access", "self-service"]
"""What a channel may need the daemon to open for it: "api-access" the store's API keys, rate
counts and idempotency records (configured by `[channels.web]`); "self-service" the
knowledge base's lookups (`[kb] path`)."""


@dataclass(frozen=True, slots=True)
class ReplierRecord:
    """How a channel's service answers customers (acknowledgements)."""

    build: str
    """ "module:attribute" of a callable taking the channel's settings section, returning a
    `channels.replies.base.Replier`."""
    answers: Mapping[str, str]
    """The case-open channels it answers, each with what to configure when it cannot."""
    configured: Callable[[Any], bool]
    """Whether the channel's settings let it send (it is built only then)."""
    refuses: Callable[[str, Any], str | None] = lambda _channel, _settings: None
    """Why requests of this case-open channel are never answered with these settings."""


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One channel: everything the rest of the daemon needs to know about it."""

    name: str
    """Its settings section, `[channels.<name>]`."""
    settings: type[ChannelSection]
    """The section's model; it has an `enabled` field."""
    payloads: tuple[str, ...]
    """The payload kinds its envelopes carry (`normalizer.envelope.PAYLOAD_KINDS`)."""
    build: str
    """ "module:attribute" of `(section, Wiring) -> Built`."""
    needs: frozenset[Need] = frozenset()
    replier: ReplierRecord | None = None
    chatty_loggers: tuple[str, ...] = ()
    """Its libraries' loggers, at warning unless the daemon logs at debug."""
    secret_loggers: tuple[str, ...] = ()
    """Loggers that name URLs holding a token, or customers' messages: warning always."""

    def builder(self) -> Callable[[Any, Wiring], Built]:
        built: Callable[[Any, Wiring], Built] = resolve_name(self.build)
        return built


def _calls_unless_by_sms(channel: str, settings: TwilioChannelSettings) -> str | None:
    if channel == "voice" and not settings.acknowledge_calls_by_sms:
        return "calls are not acknowledged: acknowledge_calls_by_sms is off"
    return None


CHANNELS: tuple[ChannelRecord, ...] = (
    ChannelRecord(
        "web",
        WebChannelSettings,
        payloads=("web",),
        build="channels.web:build",
        needs=frozenset({"api-access"}),
    ),
    ChannelRecord(
        "contact",
        ContactFormSettings,
        payloads=("contact",),
        build="channels.contact:build",
        needs=frozenset({"self-service"}),
    ),
    ChannelRecord(
        "smtp",
        SmtpChannelSettings,
        payloads=("mail",),
        build="channels.smtp:build",
        chatty_loggers=("mail.log",),
    ),
    ChannelRecord("imap", ImapChannelSettings, payloads=("mail",), build="channels.imap:build"),
    ChannelRecord(
        "twilio",
        TwilioChannelSettings,
        payloads=("twilio-message", "twilio-call"),
        build="channels.twilio:build",
        replier=ReplierRecord(
            "channels.replies.twilio:TwilioReplier",
            answers={
                "sms": "sms replies need [channels.twilio] account_sid",
                "whatsapp": "whatsapp replies need [channels.twilio] account_sid",
                "voice": "SMS to callers needs [channels.twilio] account_sid",
            },
            configured=lambda twilio: twilio.account_sid is not None,
            refuses=_calls_unless_by_sms,
        ),
        secret_loggers=("twilio",),
    ),
    ChannelRecord(
        "telegram",
        TelegramChannelSettings,
        payloads=("telegram",),
        build="channels.telegram:build",
        replier=ReplierRecord(
            "channels.replies.telegram:TelegramReplier",
            answers={"chat": "chat replies need [channels.telegram] enabled"},
            configured=lambda telegram: telegram.enabled,
        ),
        secret_loggers=("telegram", "httpx", "httpcore"),
    ),
)


class ChannelSettingsBase(ChannelSection):
    """The `[channels]` table: one section per record, and `mail`, shared by SMTP and IMAP."""

    records: ClassVar[tuple[ChannelRecord, ...]] = ()
    mail: MailSettings = Field(default_factory=MailSettings)

    def section(self, record: ChannelRecord) -> ChannelSection:
        section: ChannelSection = getattr(self, record.name)
        return section

    def enabled(self) -> list[tuple[ChannelRecord, ChannelSection]]:
        """The enabled channels with their sections, in the order of the records."""
        sections = [(record, self.section(record)) for record in self.records]
        return [(record, section) for record, section in sections if section.enabled]  # type: ignore[attr-defined]

    def needs(self) -> frozenset[Need]:
        """What the enabled channels need the daemon to open for them."""
        return frozenset().union(*(record.needs for record, _ in self.enabled()))


def channel_settings(
    records: tuple[ChannelRecord, ...], base: type[ChannelSettingsBase] = ChannelSettingsBase
) -> type[ChannelSettingsBase]:
    """A `[channels]` model with a section for each record, besides those of `base`."""
    sections: dict[str, Any] = {
        record.name: (record.settings, Field(default_factory=record.settings)) for record in records
    }
    model = create_model("ChannelSettings", __base__=base, **sections)
    model.records = (*base.records, *records)
    return model


ChannelSettings = channel_settings(CHANNELS)
