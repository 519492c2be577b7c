"""Settings sections of the channel adapters; `ingest.settings` assembles them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ChannelSection(BaseModel):
    """Base of a channel's settings: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class WebChannelSettings(ChannelSection):
    """The JSON API (`POST /api/v1/messages`)."""

    enabled: bool = True
    api_keys: list[str] = Field(
        default_factory=list, description="Bearer keys; set INGEST_CHANNELS__WEB__API_KEYS."
    )
    touchpoint: str = "api"
    max_body_bytes: int = Field(default=262_144, ge=1024)
    default_phone_region: str | None = Field(
        default=None, description="Region for numbers given without +country code, e.g. 'DE'."
    )


class SmtpChannelSettings(ChannelSection):
    """Inbound SMTP from a site's MTA (or as the MX behind a firewall)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    hostname: str = Field(default="localhost", description="The name in the SMTP greeting.")
    lmtp: bool = Field(default=False, description="Speak LMTP instead, for MTAs that deliver so.")
    addresses: list[str] = Field(
        default_factory=lambda: ["support@localhost"],
        description="Touchpoint addresses accepted as recipients.",
    )
    domains: list[str] = Field(
        default_factory=list, description="Domains whose every address is accepted."
    )
    max_message_bytes: int = Field(default=26_214_400, ge=1024)
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain); when set, STARTTLS is offered."
    )
    tls_key_file: Path | None = None
    require_starttls: bool = False
    auth_user: str | None = Field(
        default=None, description="When set, clients must AUTH (over TLS) as this user."
    )
    auth_password: SecretStr | None = Field(
        default=None, description="Set it in the environment: INGEST_CHANNELS__SMTP__AUTH_PASSWORD."
    )

    @model_validator(mode="after")
    def _complete(self) -> SmtpChannelSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.auth_user is None) != (self.auth_password is None):
            raise ValueError("auth_user and auth_password go together")
        if self.auth_user and self.tls_cert_file is None:
            raise ValueError("AUTH needs TLS: set tls_cert_file and tls_key_file")
        return self

    @field_validator("addresses", "domains")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [value.strip().lower() for value in values]

    def accepts(self, address: str) -> bool:
        """Whether mail to this address is ours; anything else is refused (no open relay)."""
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return address in self.addresses or (bool(domain) and domain in self.domains)


class MailSettings(ChannelSection):
    """What the email normaliser needs, shared by SMTP and IMAP."""

    case_ref_pattern: str | None = Field(
        default=r"\[#(C-\d+)\]",
        description="Regular expression of a case reference in subjects; group 1 is the id.",
    )

    @field_validator("case_ref_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value


class TelegramChannelSettings(ChannelSection):
    """A Telegram bot: long polling by default, or a webhook on the daemon's HTTP server."""

    enabled: bool = False
    token: SecretStr | None = Field(
        default=None, description="From @BotFather; set INGEST_CHANNELS__TELEGRAM__TOKEN."
    )
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout_s: int = Field(
        default=30, ge=1, le=50, description="How long one getUpdates call waits for updates."
    )
    webhook_path: str = Field(default="/telegram/webhook", pattern=r"^/[A-Za-z0-9/_.-]*$")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Checked against X-Telegram-Bot-Api-Secret-Token; set it in the "
        "environment: INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="The public URL of the webhook; when set, it is registered with setWebhook.",
    )
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    greeting: str = Field(
        default="Hello! Write your question here and our support team will answer you.",
        min_length=1,
        max_length=4096,
    )
    max_attachment_bytes: int = Field(default=20_971_520, ge=1024)
    request_timeout_s: float = Field(
        default=10.0, gt=0, description="Connect and read timeout of every other Bot API call."
    )

    @model_validator(mode="after")
    def _complete(self) -> TelegramChannelSettings:
        if self.enabled and self.token is None:
            raise ValueError("an enabled Telegram channel needs a token")
        if self.mode == "webhook" and self.webhook_secret is None:
            raise ValueError("webhook mode needs webhook_secret")
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _secret_alphabet(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own rule for secret_token: 1-256 characters A-Z, a-z, 0-9, _ and -.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("use 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value


class ChannelSettings(ChannelSection):
    """One section per channel adapter."""

    web: WebChannelSettings = Field(default_factory=WebChannelSettings)
    smtp: SmtpChannelSettings = Field(default_factory=SmtpChannelSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    telegram: TelegramChannelSettings = Field(default_factory=TelegramChannelSettings)
