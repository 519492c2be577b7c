"""The web JSON API's submission, validated, and its normalisation into a case-open."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from normalizer.model import CaseOpen, Identity, Logged, LoggedVia, Sender, Touchpoint
from normalizer.phone import to_e164
from normalizer.text import ONE_LINE_PATTERN, clean_line, clean_text, find_control

__all__ = ["ONE_LINE_PATTERN", "WebMessage", "find_control", "normalize_web"]


def _one_line(value: str) -> str:
    why = find_control(value)
    if why:
        raise ValueError(why)
    return value


OneLine = Annotated[
    str, AfterValidator(_one_line), Field(json_schema_extra={"pattern": ONE_LINE_PATTERN})
]
"""A subject, a name, an id: refused (not cleaned) when it holds a control character or a
line break, so that no consumer of the queue has to defend itself against header injection."""
MAX_AGE = timedelta(days=366)
SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def _email(value: str) -> str:
    """An address in RFC 5322 syntax, normalised by email-validator, without asking whether
    it could be delivered: a customer who wrote from a reserved domain (.test, .local) still
    wrote, and their message is kept."""
    from email_validator import EmailNotValidError, validate_email

    local, _, domain = value.rpartition("@")
    head, _, tld = domain.rpartition(".")
    # email-validator refuses special-use domains; check the syntax with one it lets through.
    special = tld.lower() in SPECIAL_USE and head
    checked = f"{local}@{head}.test" if special else value
    try:
        normalized = validate_email(
            checked, check_deliverability=False, test_environment=True
        ).normalized
    except EmailNotValidError as error:
        raise ValueError(f"value is not a valid email address: {error}") from None
    return normalized.removesuffix(".test") + "." + tld if special else normalized


EmailAddress = Annotated[
    str,
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]
Phone = Annotated[str, Field(max_length=40, json_schema_extra={"format": "phone"})]
"""The schema's format "phone": a number that exists, which no pattern can tell."""
RecentTime = Annotated[
    AwareDatetime, WithJsonSchema({"type": "string", "format": "recent-date-time"})
]
"""The schema's format "recent-date-time": a date-time with offset, not in the future and
not older than MAX_AGE, which JSON Schema cannot say."""


class WebSender(BaseModel):
    """Who the message is from: at least an email address or a phone number."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    email: EmailAddress | None = None
    phone: Phone | None = Field(
        default=None,
        description="A phone number that exists: international format (+country code), or "
        "national if the daemon has a default_phone_region. Refused (422) otherwise.",
    )
    name: OneLine | None = Field(default=None, max_length=200)

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

    priority: OneLine | None = Field(default=None, max_length=40)
    queue: OneLine | None = Field(default=None, max_length=200)
    tags: list[Annotated[OneLine, Field(max_length=100)]] = Field(
        default_factory=list, max_length=20
    )

    def as_fields(self) -> dict[str, str]:
        fields = {"priority": self.priority, "queue": self.queue, "tags": ",".join(self.tags)}
        return {name: value for name, value in fields.items() if value}


MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_FIELDS = 50
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
MAX_FIELD_CHARS = 1000


def _field_value(value: str | bool | int | float) -> str | bool | int | float:
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS:
            raise ValueError(f"at most {MAX_FIELD_CHARS} characters")
        _one_line(value)
    return value


FieldValue = Annotated[
    str | bool | int | float,
    AfterValidator(_field_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_FIELD_CHARS, "pattern": ONE_LINE_PATTERN},
                {"type": "boolean"},
                {"type": "integer"},
                {"type": "number"},
            ]
        }
    ),
]
"""A field's value: text on one line (up to 1,000 characters), a number or a boolean; one
error naming the field when it is none of them."""


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
    agent_id: OneLine | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validate_default=True,
        description='Who logged the contact; required with channel "logged".',
    )
    occurred_at: RecentTime | None = Field(
        default=None,
        description="When the customer made contact, if not just now: an ISO 8601 date-time "
        "with offset, within the last 366 days and not in the future (5 minutes of clock "
        "skew allowed); refused (422) otherwise.",
    )
    sender: WebSender
    subject: OneLine | None = Field(default=None, max_length=998)
    text: str = Field(
        min_length=1,
        max_length=100_000,
        description="The message; line breaks are kept, control characters (NUL...) dropped. "
        "Refused (422) when nothing but blanks and control characters.",
        json_schema_extra={"format": "message-text"},
    )
    external_id: OneLine | None = Field(
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
        json_schema_extra={"additionalProperties": False},
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
    def _recent(cls, value: datetime | None) -> datetime | None:
        now = datetime.now(UTC)
        if value is not None and value > now + MAX_CLOCK_SKEW:
            raise ValueError("lies in the future")
        if value is not None and value < now - MAX_AGE:
            raise ValueError(f"lies more than {MAX_AGE.days} days in the past")
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
