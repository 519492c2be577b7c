"""Sample messages for trying rules without the broker: a message of any channel written as
plain fields (or an .eml or JSON file), with the customer and history it assumes and when it
arrives, turned into the facts the rules see.

A sample goes through the channel's own payload and the same `normalize` the running daemon
calls, with the same options: its language is detected exactly as the daemon would detect it
for that channel (a Telegram chat takes the app's language, a web message the one it names,
the others are detected among `[normalizer] languages`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, ValidationError

from dispatcher.triage.facts import Customer, Facts, History
from dispatcher.triage.spec import Spec
from normalizer.envelope import (
    Envelope,
    Options,
    Payload,
    RawMail,
    normalize,
    with_language,
)
from normalizer.errors import Unprocessable
from normalizer.model import CaseOpen, Channel, Incident, Kb, KbSuggestion, LoggedVia
from normalizer.telegram import TelegramPayload
from normalizer.twilio import TwilioCall, TwilioMedia, TwilioMessage
from normalizer.web import WebMessage

CHANNELS = ("email", "sms", "whatsapp", "voice", "chat", "web", "logged")
DEFAULT_SENDERS = {
    "email": "customer@example.com",
    "web": "customer@example.com",
    "logged": "customer@example.com",
    "sms": "+4520123456",
    "whatsapp": "+4520123456",
    "voice": "+4520123456",
    "chat": "100001",
}
SAMPLE_NUMBER = "+4535550100"
"""Our number, for SMS, WhatsApp and calls when a sample does not say."""
SAMPLE_BOT = "@support_bot"
RECORDING_URL = "https://api.twilio.com/samples/recording"
ADAPTERS = {
    "email": "smtp",
    "web": "web-api",
    "logged": "web-api",
    "sms": "twilio",
    "whatsapp": "twilio",
    "voice": "twilio",
    "chat": "telegram",
}


class SampleError(ValueError):
    """The sample cannot be made into a message; the text says why."""


class Sample(Spec):
    """Sample models are built on first use: the daemon and most commands never need them."""

    model_config = ConfigDict(**Spec.model_config, defer_build=True)


class AttachmentSample(Sample):
    """A file the message carries (bytes of this size are made up for it)."""

    name: str = "file"
    type: str = Field(min_length=3, description="Its media type, e.g. image/png.")
    size: int = Field(default=1000, ge=0, le=50_000_000)


class CustomerSample(Sample):
    known: bool = False
    tier: str | None = Field(default=None, description="A tier makes the customer known.")


class HistorySample(Sample):
    open_cases: int = Field(default=0, ge=0)
    contacts_7d: int = Field(default=0, ge=0)
    contacts_30d: int = Field(default=0, ge=0)
    contacts_90d: int = Field(default=0, ge=0)
    repeat: bool = False
    last_queue: str | None = None


class KbSample(Sample):
    """An article the knowledge base suggests for the message (as `kb.suggestions` would)."""

    id: str = Field(min_length=1)
    score: float = Field(ge=0, le=1)
    tags: list[str] = Field(default_factory=list)
    audience: Literal["public", "internal"] = "public"
    title: str = "Article"
    url: str | None = "https://help.example.com/article"


class IncidentSample(Sample):
    """The incident the message is part of."""

    size: int = Field(ge=1)
    customers: int | None = Field(default=None, ge=1, description="Default: the size.")


class SampleSpec(Sample):
    """One message as an admin writes it; everything but the text has a default."""

    channel: Channel = "email"
    file: str | None = Field(default=None, description="An .eml, a case-open or web JSON.")
    text: str | None = None
    subject: str | None = None
    from_: str | None = Field(default=None, alias="from")
    sender_name: str | None = None
    to: str | None = Field(default=None, description="Our address or number it reached.")
    language: str | None = Field(default=None, description="Instead of detecting one.")
    at: str | None = Field(default=None, description="When it arrives; local time allowed.")
    via: LoggedVia = "phone-call"
    headers: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentSample] = Field(default_factory=list)
    customer: CustomerSample = Field(default_factory=CustomerSample)
    history: HistorySample = Field(default_factory=HistorySample)
    kb: list[KbSample] = Field(default_factory=list, description="Suggestions, best first.")
    incident: IncidentSample | None = None
    follow_up: bool = False


@dataclass(frozen=True)
class SampleDefaults:
    """What the settings say about messages: the normaliser's options and where each
    channel's messages arrive (the daemon's touchpoints)."""

    options: Options = field(default_factory=Options)
    touchpoints: dict[str, str] = field(default_factory=dict)


def parse_at(text: str, zone: ZoneInfo | None) -> datetime:
    """ISO 8601 with an offset; or a local time ("2026-11-24 10:00") in `zone` or in a zone
    named after it ("2026-11-24 10:00 Europe/Copenhagen")."""
    given, _, name = text.strip().rpartition(" ")
    if not given or not ("/" in name or name.upper() == "UTC"):
        given, name = text.strip(), ""
    try:
        moment = datetime.fromisoformat(given)
        if name:
            zone = ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise SampleError(
            f"not a time: {text!r}; write 2026-11-24T10:00+01:00, or a local time such as "
            "2026-11-24 10:00 (optionally followed by a zone, e.g. Europe/Copenhagen)"
        ) from None
    if moment.tzinfo is not None:
        return moment
    if zone is None:
        raise SampleError(
            f"{text!r} has no offset and the rules name no single calendar whose zone it "
            "could be in; add an offset (+01:00) or a zone name"
        )
    return moment.replace(tzinfo=zone)


def sample_facts(
    sample: SampleSpec,
    defaults: SampleDefaults,
    zone: ZoneInfo | None,
    base: Path,
    case_id: str,
) -> Facts:
    """The facts the rules would see for this sample."""
    received = parse_at(sample.at, zone) if sample.at else datetime.now(UTC)
    case = _intake(_case(sample, defaults, received.astimezone(UTC), base, case_id), sample)
    customer, history = sample.customer, sample.history
    return Facts(
        case,
        follow_up=sample.follow_up,
        customer=Customer(known=customer.known or customer.tier is not None, tier=customer.tier),
        history=History(
            open_cases=history.open_cases,
            contacts={7: history.contacts_7d, 30: history.contacts_30d, 90: history.contacts_90d},
            repeat_contact=history.repeat,
            last_queue=history.last_queue,
        ),
    )


def _intake(case: CaseOpen, sample: SampleSpec) -> CaseOpen:
    """The knowledge-base suggestions and the incident the sample assumes."""
    found: dict[str, object] = {}
    if sample.kb:
        suggestions = [
            KbSuggestion(
                id=item.id,
                title=item.title,
                url=item.url,
                audience=item.audience,
                language=case.language or "en",
                tags=item.tags,
                score=item.score,
            )
            for item in sample.kb
        ]
        found["kb"] = Kb(suggestions=suggestions)
    if sample.incident is not None:
        given = sample.incident
        found["incident"] = Incident(
            id="I-1",
            size=given.size,
            customers=given.customers or given.size,
            first_seen=case.received_at,
        )
    return case.model_copy(update=found) if found else case


def _case(
    sample: SampleSpec, defaults: SampleDefaults, received: datetime, base: Path, case_id: str
) -> CaseOpen:
    if sample.file is not None:
        return _from_file(base / sample.file, sample, defaults, received, case_id)
    if sample.text is None and sample.channel != "voice":
        raise SampleError("give the message's text (or a file)")
    builder = _BUILDERS[sample.channel]
    fallback = SAMPLE_BOT if sample.channel == "chat" else SAMPLE_NUMBER
    touchpoint = sample.to or defaults.touchpoints.get(sample.channel) or fallback
    try:
        payload = builder(sample, touchpoint, received)
    except ValidationError as error:
        item = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in item["loc"])
        raise SampleError(f"not a valid {sample.channel} message: {where}: {item['msg']}") from None
    return _normalized(
        sample,
        Envelope(sample.channel, ADAPTERS[sample.channel], touchpoint, received, payload),
        defaults,
        case_id,
    )


def _normalized(
    sample: SampleSpec, envelope: Envelope, defaults: SampleDefaults, case_id: str
) -> CaseOpen:
    options = defaults.options
    if sample.language:
        options = replace(options, languages=())  # given: nothing to detect
    try:
        case = normalize(envelope, case_id, options).case
    except Unprocessable as error:
        raise SampleError(f"the daemon could not use this message: {error}") from None
    if sample.language and sample.channel not in ("web", "logged", "chat"):
        case = case.model_copy(update={"language": sample.language})
    return case


def _from_file(
    path: Path, sample: SampleSpec, defaults: SampleDefaults, received: datetime, case_id: str
) -> CaseOpen:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SampleError(f"{path}: {error.strerror}") from None
    if path.suffix.lower() == ".json":
        return _json(data, path, sample, defaults, received, case_id)
    if path.suffix.lower() == ".eml":
        touchpoint = sample.to or defaults.touchpoints.get("email") or "support@localhost"
        envelope = Envelope("email", "smtp", touchpoint, received, RawMail(data, (touchpoint,)))
        return _normalized(sample, envelope, defaults, case_id)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SampleError(f"{path}: a plain-text sample must be UTF-8") from None
    return _case(
        sample.model_copy(update={"file": None, "text": text}),
        defaults,
        received,
        path.parent,
        case_id,
    )


def _json(
    data: bytes,
    path: Path,
    sample: SampleSpec,
    defaults: SampleDefaults,
    received: datetime,
    case_id: str,
) -> CaseOpen:
    try:
        values = json.loads(data)
        if isinstance(values, dict) and "schema" in values:
            case = CaseOpen.model_validate(values).model_copy(update={"received_at": received})
            return with_language(case, defaults.options)
        message = WebMessage.model_validate(values)
    except ValueError as error:
        raise SampleError(f"{path}: neither a case-open nor a web message: {error}") from None
    touchpoint = sample.to or defaults.touchpoints.get("web") or "api"
    envelope = Envelope(message.channel, "web-api", touchpoint, received, message)
    return _normalized(sample, envelope, defaults, case_id)


def _email(sample: SampleSpec, touchpoint: str, received: datetime) -> Payload:
    _refuse(sample)
    mail = EmailMessage()
    sender = sample.from_ or DEFAULT_SENDERS["email"]
    mail["From"] = formataddr((sample.sender_name or "", sender))
    mail["To"] = touchpoint
    if sample.subject is not None:
        mail["Subject"] = sample.subject
    mail["Date"] = format_datetime(received)
    mail["Message-ID"] = f"<sample-{received.timestamp():.0f}@rules.test>"
    for name, value in sample.headers.items():
        mail[name] = value
    mail.set_content(sample.text or "")
    bodies = []
    for number, item in enumerate(sample.attachments):
        main, _, sub = item.type.partition("/")
        # A stand-in body, swapped for the real one after the generator has run: it writes
        # a large body line by line, which would take longer than the rest of a test file.
        mail.add_attachment(
            f"@@body-{number}@@".encode(),
            maintype=main,
            subtype=sub or "octet-stream",
            filename=item.name,
        )
        bodies.append(base64.encodebytes(bytes(item.size)))
    data = mail.as_bytes()
    for number, body in enumerate(bodies):
        stand_in = base64.encodebytes(f"@@body-{number}@@".encode()).rstrip()
        data = data.replace(stand_in, body.rstrip(), 1)
    return RawMail(data, (touchpoint,))


def _web(sample: SampleSpec, touchpoint: str, received: datetime) -> Payload:
    _refuse(sample, attachments=True, headers=True)
    sender = sample.from_ or DEFAULT_SENDERS[sample.channel]
    values: dict[str, Any] = {
        "channel": sample.channel,
        "sender": {"email" if "@" in sender else "phone": sender, "name": sample.sender_name},
        "subject": sample.subject,
        "text": sample.text,
        "language": sample.language,
        "fields": sample.fields,
    }
    if sample.channel == "logged":
        values |= {"via": sample.via, "agent_id": sample.to or "agent"}
    return WebMessage.model_validate(values)


def _twilio_message(sample: SampleSpec, touchpoint: str, received: datetime) -> Payload:
    _refuse(sample, headers=True, subject=True)
    prefix = "whatsapp:" if sample.channel == "whatsapp" else ""
    media = [
        TwilioMedia(url=f"{RECORDING_URL}/{n}", media_type=item.type)
        for n, item in enumerate(sample.attachments)
    ]
    return TwilioMessage(
        message_sid="SMsample",
        sender=prefix + (sample.from_ or DEFAULT_SENDERS[sample.channel]),
        recipient=prefix + touchpoint,
        body=sample.text or "",
        profile_name=sample.sender_name,
        media=media,
    )


def _voice(sample: SampleSpec, touchpoint: str, received: datetime) -> Payload:
    _refuse(sample, headers=True, subject=True, attachments=True)
    return TwilioCall(
        call_sid="CAsample",
        caller=sample.from_ or DEFAULT_SENDERS["voice"],
        called=touchpoint,
        recording_url=RECORDING_URL if sample.text else None,
        duration_s=30 if sample.text else None,
        transcript=sample.text,
    )


def _chat(sample: SampleSpec, touchpoint: str, received: datetime) -> Payload:
    _refuse(sample, headers=True, subject=True, attachments=True)
    user = sample.from_ or DEFAULT_SENDERS["chat"]
    if not user.isdigit():
        raise SampleError(f"a Telegram sender is a user id (digits), not {user!r}")
    person = {"id": int(user), "is_bot": False, "first_name": sample.sender_name or "Customer"}
    if sample.language:
        person["language_code"] = sample.language  # the Telegram app's language
    message = {
        "message_id": 1,
        "date": int(received.timestamp()),
        "chat": {"id": int(user), "type": "private"},
        "from": person,
        "text": sample.text,
    }
    return TelegramPayload(update={"update_id": 1, "message": message})


def _refuse(sample: SampleSpec, **what: bool) -> None:
    given = {
        "headers": bool(sample.headers),
        "subject": sample.subject is not None,
        "attachments": bool(sample.attachments),
    }
    for name in what:
        if given[name]:
            raise SampleError(f"a {sample.channel} message has no {name}")
    if sample.fields and sample.channel not in ("web", "logged"):
        raise SampleError("structured fields come only with web and logged messages")


_BUILDERS = {
    "email": _email,
    "web": _web,
    "logged": _web,
    "sms": _twilio_message,
    "whatsapp": _twilio_message,
    "voice": _voice,
    "chat": _chat,
}
