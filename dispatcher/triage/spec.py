"""What admins write: the triage section of settings.toml and rules.d/*.toml, validated.

These models only describe and check the files; `compile.py` turns them into the rule set the
engine runs. Unknown keys are errors, so a typo never silently turns a rule off.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_BUCKETS = (
    "reference",
    "divert",
    "consulting",
    "action",
    "problem",
    "referral",
    "escalation",
)
FLAG_NAMES = ("auto_reply", "bounce", "mailing_list", "spam", "edited")
TEXT_FIELDS = ("subject", "text")
HISTORY_DAYS = (7, 30, 90)
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

OneOrMany = str | list[str]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ContactsSpec(Spec):
    """Contacts in the last `days` (7, 30 or 90), at least `at_least` of them."""

    days: int
    at_least: int = Field(ge=1)

    @field_validator("days")
    @classmethod
    def _known_window(cls, value: int) -> int:
        if value not in HISTORY_DAYS:
            raise ValueError(f"days must be one of {', '.join(map(str, HISTORY_DAYS))}")
        return value


class ConditionSpec(Spec):
    """Every key given must hold (an implicit `all`); `all`, `any` and `not` nest."""

    channel: OneOrMany | None = None
    adapter: OneOrMany | None = None
    touchpoint: OneOrMany | None = Field(default=None, description="Globs, e.g. billing@*")
    sender: OneOrMany | None = Field(default=None, description="Globs on the sender address.")
    domain: OneOrMany | None = Field(default=None, description="Sender domain or a parent.")
    tier: OneOrMany | None = None
    known: bool | None = Field(default=None, description="The directory knows the customer.")
    language: OneOrMany | None = None
    keywords: list[str] | None = Field(default=None, description="In the subject or the text.")
    subject_keywords: list[str] | None = None
    text_keywords: list[str] | None = None
    regex: str | None = Field(default=None, description="In the subject or the text.")
    subject_regex: str | None = None
    text_regex: str | None = None
    has_attachments: bool | None = None
    attachment_type: OneOrMany | None = Field(default=None, description="Globs, e.g. image/*")
    attachment_min_bytes: int | None = Field(default=None, ge=0)
    flag: OneOrMany | None = Field(default=None, description="auto_reply, bounce, ...")
    business_hours: str | None = Field(default=None, description="Inside this calendar's hours.")
    outside_business_hours: str | None = None
    open_cases_at_least: int | None = Field(default=None, ge=1)
    contacts: ContactsSpec | None = None
    repeat_contact: bool | None = None
    last_queue: OneOrMany | None = None
    control: OneOrMany | None = Field(
        default=None, description="A control field the (trusted) source set: priority, queue, tags."
    )
    all: list[ConditionSpec] | None = None
    any: list[ConditionSpec] | None = None
    not_: ConditionSpec | None = Field(default=None, alias="not")

    @field_validator("flag")
    @classmethod
    def _known_flags(cls, value: OneOrMany | None) -> OneOrMany | None:
        for name in [value] if isinstance(value, str) else value or []:
            if name not in FLAG_NAMES:
                raise ValueError(f"unknown flag {name!r}; known: {', '.join(FLAG_NAMES)}")
        return value

    @field_validator("keywords", "subject_keywords", "text_keywords")
    @classmethod
    def _non_empty_words(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not word.strip() for word in value)):
            raise ValueError("give at least one keyword, none of them empty")
        return value

    @model_validator(mode="after")
    def _says_something(self) -> ConditionSpec:
        if not self.model_fields_set:
            raise ValueError("an empty condition; leave `when` out to match every message")
        return self


class ActionSpec(Spec):
    """What a matching rule sets; later rules override earlier ones, tags add up."""

    bucket: str | None = None
    category: str | None = None
    product: str | None = None
    priority: str | None = None
    queue: str | None = None
    tags: list[str] = Field(default_factory=list)
    sla: str | None = Field(default=None, description="An SLA policy name.")


class RuleSpec(Spec):
    """One rule: a name, when it applies, what it sets, whether matching stops there."""

    name: str = Field(min_length=1, max_length=100)
    applies_to: Literal["new", "follow-up", "both"] = "new"
    when: ConditionSpec | None = None
    set: ActionSpec = Field(default_factory=ActionSpec)
    acknowledge: str | None = Field(default=None, description="An acknowledgement template.")
    stop: bool = False


class PrioritySpec(Spec):
    """A priority agents understand, with its targets (e.g. "1h", "90m", "8h30m")."""

    name: str = Field(min_length=1, max_length=40)
    definition: str
    response: str
    resolution: str

    @field_validator("response", "resolution")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not value or not DURATION.match(value):
            raise ValueError('a duration such as "45m", "4h" or "1h30m"')
        return value


class CalendarSpec(Spec):
    """Business hours: a timezone, opening hours per weekday ("08:00-17:00"), holidays."""

    timezone: str
    hours: dict[str, str]
    holidays: list[str] = Field(default_factory=list, description="ISO dates, e.g. 2026-12-24")

    @field_validator("hours")
    @classmethod
    def _weekdays(cls, value: dict[str, str]) -> dict[str, str]:
        for day, span in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", span):
                raise ValueError(f"{day}: opening hours look like 08:00-17:00, not {span!r}")
        return value


class SlaSpec(Spec):
    """An SLA policy: which calendar the clock runs on; the priorities give the targets."""

    name: str
    calendar: str = Field(description='A calendar name, or "always" for around the clock.')


class TemplateSpec(Spec):
    """An acknowledgement per language; `{reference}`, `{subject}`, `{name}` are filled in."""

    subject: dict[str, str] = Field(default_factory=dict)
    text: dict[str, str]
    default_language: str = "en"

    @model_validator(mode="after")
    def _default_present(self) -> TemplateSpec:
        if self.default_language not in self.text:
            raise ValueError(f"no text for the default language {self.default_language!r}")
        return self


class TrustedSpec(Spec):
    """Where control fields (priority, queue, tags) are obeyed: these touchpoints only,
    and, when `senders` is given, only from those senders."""

    touchpoint: str
    senders: list[str] = Field(default_factory=list)


class TriageSpec(Spec):
    """The `[triage]` section (and, merged into it, each included file)."""

    include: list[str] = Field(default_factory=list, description="Globs, relative to the file.")
    default_priority: str | None = None
    default_sla: str | None = None
    buckets: list[str] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))
    rules: list[RuleSpec] = Field(default_factory=list)
    priorities: list[PrioritySpec] = Field(default_factory=list)
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla: list[SlaSpec] = Field(default_factory=list)
    templates: dict[str, TemplateSpec] = Field(default_factory=dict)
    trusted: list[TrustedSpec] = Field(default_factory=list)
    ack_daily_cap: int = Field(default=3, ge=0, description="Acknowledgements per address a day.")


class IncludedSpec(Spec):
    """An included rules file: rules, and optionally more priorities, calendars, templates."""

    rules: list[RuleSpec] = Field(default_factory=list)
    priorities: list[PrioritySpec] = Field(default_factory=list)
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla: list[SlaSpec] = Field(default_factory=list)
    templates: dict[str, TemplateSpec] = Field(default_factory=dict)
