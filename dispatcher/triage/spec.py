"""What admins write: the triage section of settings.toml and rules.d/*.toml, validated.

These models only describe and check the files; `load.py` and `conditions.py` turn them into
the rule set the engine runs. Unknown keys are errors, so a typo never silently turns a rule
off. The service side (priorities, calendars, SLA policies, templates) is in `policy_spec.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from normalizer.model import OPEN_CASES_LISTED

DEFAULT_BUCKETS = (
    "reference",
    "divert",
    "consulting",
    "action",
    "problem",
    "referral",
    "escalation",
)
FLAG_NAMES = ("auto_reply", "bounce", "mailing_list", "spam", "edited", "callback_requested")
HISTORY_DAYS = (7, 30, 90)
DECIDED_FIELDS = ("bucket", "category", "product", "priority", "queue", "sla")
"""What a rule sets besides tags; `final` may lock any of them."""
STEM_LANGUAGES = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "sv": "swedish",
}
"""Languages `stem` accepts (ISO 639-1) and the Snowball stemmer each one uses."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ListRef(Spec):
    """`{ list = "NAME" }`: a named list from `[triage.lists]`, wherever a condition takes
    several values (alone, or as one item among others)."""

    list_: str = Field(alias="list", min_length=1)


Values = str | ListRef | list[str | ListRef]
"""One value, several, or a named list (also as an item)."""


class ListFileSpec(Spec):
    """A list kept in a file beside the rules: one entry per line (blank lines and lines
    starting with # skipped), or with `column`, that column of a CSV file with a header row."""

    file: str = Field(min_length=1)
    column: str | None = None


ListSpec = list[str] | ListFileSpec


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


class WordsSpec(Spec):
    """Keywords with their word forms: `stem` matches every inflection a Snowball stemmer
    for that language folds together ("pris" finds "prisen", "priser")."""

    words: Values
    stem: str | None = Field(default=None, description="da, de, en, ... (ISO 639-1)")

    @field_validator("stem")
    @classmethod
    def _known_stemmer(cls, value: str | None) -> str | None:
        if value is not None and value not in STEM_LANGUAGES:
            raise ValueError(
                f"no stemmer for {value!r}; known: {', '.join(sorted(STEM_LANGUAGES))}"
            )
        return value


Keywords = Values | WordsSpec


class KbSpec(Spec):
    """A knowledge-base article suggested for the message scores at least `score_at_least`
    (0 to 1), and, when given, carries one of the tags and is of that audience."""

    score_at_least: float = Field(default=0.0, ge=0, le=1)
    tag: Values | None = None
    audience: Literal["public", "internal"] | None = None


class IncidentSpec(Spec):
    """The message is part of an incident of at least this many messages and customers."""

    size_at_least: int = Field(default=1, ge=1)
    customers_at_least: int = Field(default=1, ge=1)


class MatchSpec(Spec):
    """A named value (a mail header, a structured field): present, or matching `glob` (one
    of several shell-style patterns) or `regex`."""

    name: str = Field(min_length=1, max_length=200)
    glob: Values | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_test(self) -> MatchSpec:
        if self.glob is not None and self.regex is not None:
            raise ValueError("give glob or regex, not both")
        return self


class ConditionSpec(Spec):
    """Every key given must hold (an implicit `all`); `all`, `any` and `not` nest."""

    channel: Values | None = None
    adapter: Values | None = None
    touchpoint: Values | None = Field(default=None, description="Globs, e.g. billing@*")
    sender: Values | None = Field(default=None, description="Globs on the sender address.")
    domain: Values | None = Field(default=None, description="Sender domain or a parent.")
    tier: Values | None = None
    known: bool | None = Field(default=None, description="The directory knows the customer.")
    language: Values | None = None
    keywords: Keywords | None = Field(default=None, description="In the subject or the text.")
    subject_keywords: Keywords | None = None
    text_keywords: Keywords | None = None
    regex: str | None = Field(default=None, description="In the subject or the text.")
    subject_regex: str | None = None
    text_regex: str | None = None
    header: MatchSpec | None = Field(default=None, description="A mail header.")
    field: MatchSpec | None = Field(default=None, description="A structured or captured field.")
    has_attachments: bool | None = None
    attachment_type: Values | None = Field(default=None, description="Globs, e.g. image/*")
    attachment_min_bytes: int | None = Field(default=None, ge=0)
    flag: Values | None = Field(default=None, description="auto_reply, bounce, ...")
    business_hours: str | None = Field(default=None, description="Inside this calendar's hours.")
    outside_business_hours: str | None = None
    open_cases_at_least: int | None = Field(default=None, ge=1)
    contacts: ContactsSpec | None = None
    repeat_contact: bool | None = None
    last_queue: Values | None = None
    control: Values | None = Field(
        default=None, description="A control field the (trusted) source set: priority, queue, tags."
    )
    kb: KbSpec | None = Field(default=None, description="A knowledge-base suggestion.")
    incident: IncidentSpec | None = Field(default=None, description="Part of an incident.")
    queue: Values | None = Field(default=None, description="What earlier rules decided.")
    priority: Values | None = None
    bucket: Values | None = None
    category: Values | None = None
    product: Values | None = None
    tags: Values | None = Field(default=None, description="Any of these tags is set already.")
    condition: str | list[str] | None = Field(
        default=None, description="Named conditions from [triage.conditions]; all must hold."
    )
    all: list[ConditionSpec] | None = None
    any: list[ConditionSpec] | None = None
    not_: ConditionSpec | None = Field(default=None, alias="not")

    @field_validator("flag")
    @classmethod
    def _known_flags(cls, value: Values | None) -> Values | None:
        items = [value] if not isinstance(value, list) else value
        for name in items:
            if isinstance(name, str) and name not in FLAG_NAMES:
                raise ValueError(f"unknown flag {name!r}; known: {', '.join(FLAG_NAMES)}")
        return value

    @field_validator("open_cases_at_least")
    @classmethod
    def _countable(cls, value: int | None) -> int | None:
        if value is not None and value > OPEN_CASES_LISTED:
            raise ValueError(
                f"at most {OPEN_CASES_LISTED}: a history lists the customer's"
                f" {OPEN_CASES_LISTED} latest open cases, so more are never counted"
            )
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
    final: bool | list[Literal["bucket", "category", "product", "priority", "queue", "sla"]] = (
        Field(
            default=False,
            description="true: what this rule sets stays; or the fields that stay as they are "
            "now. Later rules still add tags.",
        )
    )

    @model_validator(mode="after")
    def _final_locks_something(self) -> RuleSpec:
        if self.final is True and not self.final_fields():
            raise ValueError(
                "final = true locks what the rule sets, and it sets none of "
                + ", ".join(DECIDED_FIELDS)
                + '; name the fields to keep instead, e.g. final = ["queue"]'
            )
        return self

    def final_fields(self) -> tuple[str, ...]:
        """The fields this rule makes final."""
        if self.final is True:
            return tuple(name for name in DECIDED_FIELDS if getattr(self.set, name) is not None)
        return tuple(self.final or ())
