"""Settings sections of the channel adapters; `ingest.settings` assembles them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    """Inbound SMTP; the listener itself arrives with the email channel."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)


class ChannelSettings(ChannelSection):
    """One section per channel adapter."""

    web: WebChannelSettings = Field(default_factory=WebChannelSettings)
    smtp: SmtpChannelSettings = Field(default_factory=SmtpChannelSettings)
