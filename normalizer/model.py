"""The canonical case-open message, schema "case-open/1", as DESIGN.md defines it.

Channels hand raw envelopes to the pipeline, the normalizer turns them into a `CaseOpen`, and
the dispatcher forwards the same message enriched with `customer`, `history`, `dedup` and
`triage`. A change that
alters the meaning of a field needs a new schema version, never a silent edit.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SCHEMA = "case-open/1"
MAX_HEADERS = 100
PUBLISH_ID = "x-publish-id"
"""Header with a fresh id on every publish of a case-open, a spooled one's retry included:
two copies of one case-open in the queue differ in it, and the broker's redelivery of one
copy keeps it (see `dispatcher.decide._known`)."""


def new_publish_id() -> str:
    """A fresh value for the `PUBLISH_ID` header, for one publish of a case-open."""
    return secrets.token_hex(8)


Channel = Literal["email", "sms", "whatsapp", "voice", "chat", "web", "logged"]
IdentityKind = Literal["email", "phone", "telegram", "web"]
LoggedVia = Literal["phone-call", "walk-in", "letter", "social"]


class Part(BaseModel):
    """Base of every part of the message: unknown fields are refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Identity(Part):
    """One way to reach a person: a normalised address of a kind."""

    kind: IdentityKind
    address: str = Field(description="Lower-cased email, E.164 phone, Telegram user id, ...")


class Sender(Identity):
    """Who wrote: the address the message came from, a display name, other known addresses."""

    name: str | None = None
    alternates: list[Identity] = Field(
        default_factory=list, description="Further ways to reach the sender given by the source."
    )


class Touchpoint(Part):
    """Where a message arrived: a mailbox address, a Twilio number, a bot, a form or API."""

    kind: Literal["mailbox", "number", "bot", "form", "api", "agent"]
    address: str


class Logged(Part):
    """A contact an agent took in by hand and logged on the customer's behalf."""

    via: LoggedVia = Field(description="How the customer made contact.")
    agent_id: str = Field(min_length=1, description="The agent who logged it.")


class Header(Part):
    """One mail header as received, decoded to text (for triage rules that match headers)."""

    name: str = Field(max_length=200)
    value: str = Field(max_length=2000)


class Thread(Part):
    """What ties the message to an earlier conversation."""

    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    case_ref: str | None = Field(default=None, description="A case reference found in the text.")
    conversation_key: str | None = None
    edit_of: str | None = Field(
        default=None,
        description="For an edited message (flags.edited): the source_id of the message edited.",
    )


class Attachment(Part):
    """A file that came with the message; the bytes live in the blob store, never in here.

    A file the source only links to (Twilio MMS media, a voicemail recording) has a `url` and
    may lack `size`, `sha256` and `ref` until its bytes are fetched; every other attachment has
    all three.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["url"], "properties": {"url": {"type": "string"}}},
                {
                    "required": ["size", "sha256", "ref"],
                    "properties": {
                        "size": {"type": "integer"},
                        "sha256": {"type": "string"},
                        "ref": {"type": "string"},
                    },
                },
            ]
        }
    )

    name: str
    media_type: str
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    ref: str | None = Field(default=None, description="Reference into the blob store.")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="Where the source keeps the file, when it gives a link rather than bytes.",
    )
    duration_s: float | None = Field(
        default=None, ge=0, description="Length of a recording, when the source says."
    )

    @model_validator(mode="after")
    def _stored_or_linked(self) -> Attachment:
        if (self.sha256 is None) != (self.ref is None):
            raise ValueError("sha256 and ref go together")
        if self.url is None and (self.sha256 is None or self.size is None):
            raise ValueError("an attachment without a url needs size, sha256 and ref")
        return self


class Flags(Part):
    """Facts that keep routing out of mail loops and noise."""

    auto_reply: bool = False
    bounce: bool = False
    mailing_list: bool = False
    spam: Literal["ham", "spam", "unknown"] = "unknown"
    edited: bool = False
    callback_requested: bool = Field(
        default=False, description="A caller hung up without a message and wants a call back."
    )
    sender_inferred: bool = Field(
        default=False,
        description="The message named no usable author (a mail without a usable From): the "
        "sender was taken from the next best source (Sender, Reply-To, the envelope sender).",
    )


class Dedup(Part):
    """The dispatcher's deduplication decision, with its reason.

    `new` opened case `case_id`; `duplicate` (level 2) and `follow-up` (level 3) are updates
    of case `case_id`. `linked_case` names an earlier case the new one is linked to (a
    reference from someone who is not its customer, or a follow-up to a long-closed case).
    """

    verdict: Literal["new", "duplicate", "follow-up"]
    reason: str
    case_id: str | None = None
    level: int | None = Field(default=None, ge=1, le=3, description="The dedup level that hit.")
    linked_case: str | None = None
    reopened: bool = False


class CustomerInfo(Part):
    """Who the sender is, as the dispatcher's customer directory knows them."""

    id: int = Field(description="The dispatcher's customer id.")
    external_id: str | None = Field(default=None, description="The directory's id, if known.")
    name: str | None = None
    organisation: str | None = None
    tier: str | None = None
    is_customer: bool | None = None
    known: bool = Field(description="False for a provisional customer nobody has named yet.")


class CaseBrief(Part):
    """One earlier case, in a line."""

    id: str
    status: Literal["open", "assigned", "resolved", "closed"]
    queue: str
    priority: str | None = None
    channel: Channel
    subject: str | None = None
    opened_at: AwareDatetime


class ContactCounts(Part):
    """How often the customer wrote in the last `days` days, by channel."""

    days: int
    total: int
    by_channel: dict[str, int] = Field(default_factory=dict)


OPEN_CASES_LISTED = 20
"""The open cases a history lists: the customer's latest."""


class History(Part):
    """What happened before this message: open cases, contacts, last queue, recent cases."""

    open_cases: list[CaseBrief] = Field(default_factory=list, max_length=OPEN_CASES_LISTED)
    contacts: list[ContactCounts] = Field(default_factory=list)
    last_queue: str | None = None
    recent_cases: list[CaseBrief] = Field(default_factory=list)
    repeat_contact: bool = False
    repeat_reason: str | None = None


class RuleHit(Part):
    """A triage rule that matched, and the condition that decided it."""

    rule: str
    because: str


class SlaDue(Part):
    """When the case must be answered and solved, on the SLA policy's business calendar
    (or the calendar its priority names); a priority may have no resolution target."""

    policy: str
    priority: str
    calendar: str | None = Field(default=None, description='The clock\'s calendar, or "always".')
    response_due: AwareDatetime
    resolution_due: AwareDatetime | None = None


class Triage(Part):
    """The dispatcher's routing decision; `rules` lists the rules that matched, in order, and
    `matched` says for each which condition decided it."""

    queue: str
    bucket: str | None = None
    category: str | None = None
    product: str | None = None
    priority: str | None = None
    tags: list[str] = Field(default_factory=list)
    sla: SlaDue | None = None
    rules: list[str] = Field(default_factory=list)
    matched: list[RuleHit] = Field(default_factory=list)
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Values the rules captured with named regex groups (order numbers, ...).",
    )
    acknowledge: str | None = Field(
        default=None, description="The acknowledgement template the rules chose, if any."
    )
    acknowledged: bool = Field(
        default=False,
        description="An acknowledgement was requested (not capped, not a loop risk).",
    )
    not_acknowledged: str | None = Field(
        default=None,
        description="Why no acknowledgement was requested although the rules chose a template "
        "(no replier configured for the channel, the daily cap, a loop risk, no address).",
    )
    reason: str


class KbSuggestion(Part):
    """A knowledge-base article that may answer the message, with why it was found."""

    id: str
    title: str
    url: str | None = None
    audience: Literal["public", "internal"]
    language: str
    tags: list[str] = Field(default_factory=list)
    score: float = Field(ge=0, le=1, description="The share of the message it answers, 0 to 1.")
    matched: list[str] = Field(default_factory=list, description="The terms that matched.")


class Kb(Part):
    """What the knowledge base found for the message, best first."""

    suggestions: list[KbSuggestion] = Field(default_factory=list)


class Incident(Part):
    """Many customers saying the same thing at once: the incident this message is part of."""

    id: str = Field(description="I-<number>")
    size: int = Field(ge=1, description="Messages in the incident so far.")
    customers: int = Field(ge=1, description="Distinct customers among them.")
    first_seen: AwareDatetime
    formed_at: AwareDatetime | None = None
    sample_subject: str | None = None


class CaseOpen(Part):
    """One customer request, from any channel, ready to become (or join) a case."""

    id: str = Field(description="Unique and time-sortable (a ULID).", min_length=26, max_length=26)
    schema_: Literal["case-open/1"] = Field(default=SCHEMA, alias="schema")
    received_at: AwareDatetime
    sent_at: AwareDatetime | None = None
    channel: Channel
    adapter: str = Field(description="The adapter that took it in: smtp, imap, web-api, ...")
    source_id: str = Field(
        min_length=1, max_length=998, description="The source's own id; with channel, unique."
    )
    touchpoints: list[Touchpoint] = Field(
        min_length=1, description="Every touchpoint the message reached; the first is primary."
    )
    sender: Sender
    subject: str | None = None
    text: str = ""
    language: str | None = None
    thread: Thread = Field(default_factory=Thread)
    attachments: list[Attachment] = Field(default_factory=list)
    flags: Flags = Field(default_factory=Flags)
    raw_ref: str | None = Field(default=None, description="Reference to the stored original.")
    controls: dict[str, str] = Field(
        default_factory=dict,
        description="Control fields the source set (priority, queue, tags: X-Ingest-* mail "
        "headers, the API's `controls`); triage obeys them only from trusted touchpoints.",
    )
    logged: Logged | None = Field(
        default=None, description='Who logged the contact and how it came (channel "logged").'
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Structured fields the source gave (the JSON API's `fields`), as text.",
    )
    headers: list[Header] = Field(
        default_factory=list,
        max_length=MAX_HEADERS,
        description=f"A mail's headers, decoded, in order (the first {MAX_HEADERS}).",
    )
    customer: CustomerInfo | None = Field(default=None, description="Set by the dispatcher.")
    history: History | None = Field(default=None, description="Set by the dispatcher.")
    dedup: Dedup | None = Field(default=None, description="Set by the dispatcher.")
    triage: Triage | None = Field(default=None, description="Set by the dispatcher.")
    kb: Kb | None = Field(default=None, description="Set by the dispatcher (knowledge base).")
    incident: Incident | None = Field(
        default=None, description="Set by the dispatcher when the message is part of an incident."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        """The wire form: UTF-8 JSON with the public field names."""
        return self.model_dump_json(by_alias=True, exclude_none=False).encode()
