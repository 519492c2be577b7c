"""The web JSON API's submission, validated, and its normalisation into a case-open."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from normalizer.model import CaseOpen, Identity, Logged, LoggedVia, Sender, Touchpoint
from normalizer.phone import to_e164
from normalizer.text import clean_line, clean_text


class WebSender(BaseModel):
    """Who the message is from: at least an email address or a phone number."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    email: EmailStr | None = Field(default=None, max_length=320)
    phone: str | None = Field(
        default=None,
        max_length=40,
        description="International format (+country code), or national if a region is set.",
    )
    name: str | None = Field(default=None, max_length=200)

    @field_validator("phone")
    @classmethod
    def _phone_to_e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        region = (info.context or {}).get("default_phone_region")
        return to_e164(value, region)

    @model_validator(mode="after")
    def _reachable(self) -> WebSender:
        if not (self.email or self.phone):
            raise ValueError("give at least one way to reach the sender: email or phone")
        return self


class WebControls(BaseModel):
    """Routing an internal, trusted form may set; ignored unless its touchpoint is trusted."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    priority: str | None = Field(default=None, max_length=40)
    queue: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)

    def as_fields(self) -> dict[str, str]:
        fields = {"priority": self.priority, "queue": self.queue, "tags": ",".join(self.tags)}
        return {name: value for name, value in fields.items() if value}


MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_FIELDS = 50
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
FieldValue = Annotated[str, StringConstraints(max_length=1000)] | bool | int | float


class WebMessage(BaseModel):
    """A message submitted to `POST /api/v1/messages`: one the customer sent through the web
    (`channel` "web", the default), or a contact an agent logs on the customer's behalf
    (`channel` "logged", with `via` and `agent_id`)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    channel: Literal["web", "logged"] = Field(
        default="web", description='"logged" for a contact an agent took in by hand.'
    )
    via: LoggedVia | None = Field(
        default=None,
        validate_default=True,
        description='How the customer made contact; required with channel "logged".',
    )
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validate_default=True,
        description='Who logged the contact; required with channel "logged".',
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the customer made contact, if not just now."
    )
    sender: WebSender
    subject: str | None = Field(default=None, max_length=998)
    text: str = Field(min_length=1, max_length=100_000)
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id for this message; repeats of it open no second case.",
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="BCP 47 tag."
    )
    controls: WebControls | None = Field(
        default=None, description="Priority, queue, tags; obeyed only from a trusted touchpoint."
    )
    fields: dict[FieldName, FieldValue] = Field(
        default_factory=dict,
        max_length=MAX_FIELDS,
        description="Structured fields of your own (order number, product, plan, ...): "
        "triage rules can match them; they are carried in the case-open as text.",
    )

    @field_validator("via", "agent_id")
    @classmethod
    def _only_when_logged(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "channel" not in info.data:
            return value  # the channel itself is invalid and reported
        logged = info.data["channel"] == "logged"
        if logged and value is None:
            raise ValueError('required for channel "logged"')
        if not logged and value is not None:
            raise ValueError('only for channel "logged"')
        return value

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("lies in the future")
        return value

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not clean_text(value):
            raise ValueError("the text is empty")
        return value


def normalize_web(
    message: WebMessage,
    *,
    case_id: str,
    source_id: str,
    received_at: datetime,
    touchpoint: str,
) -> CaseOpen:
    """Turn a validated web submission into a case-open; pure, so the caller gives id and time.

    A logged contact reached the agent who logged it first (its primary touchpoint), then the
    API; both are listed, so that triage can match the agent and trust the API as for any
    other message.
    """
    logged = None
    touchpoints = [Touchpoint(kind="api", address=touchpoint)]
    if message.channel == "logged" and message.via and message.agent_id:
        logged = Logged(via=message.via, agent_id=message.agent_id)
        touchpoints.insert(0, Touchpoint(kind="agent", address=message.agent_id))
    return CaseOpen(
        id=case_id,
        received_at=received_at,
        sent_at=message.occurred_at,
        channel=message.channel,
        adapter="web-api",
        source_id=source_id,
        touchpoints=touchpoints,
        sender=_sender(message.sender),
        subject=clean_line(message.subject) if message.subject else None,
        text=clean_text(message.text),
        language=message.language,
        controls=message.controls.as_fields() if message.controls else {},
        logged=logged,
        fields={
            name: clean_line(value) if isinstance(value, str) else json.dumps(value)
            for name, value in message.fields.items()
        },
    )


def _sender(sender: WebSender) -> Sender:
    identities = []
    if sender.email:
        identities.append(Identity(kind="email", address=sender.email.lower()))
    if sender.phone:
        identities.append(Identity(kind="phone", address=sender.phone))
    primary, *alternates = identities
    name = clean_line(sender.name) if sender.name else None
    return Sender(
        kind=primary.kind, address=primary.address, name=name or None, alternates=alternates
    )
