"""The service side of the triage files, validated: priorities and their targets, business
calendars, SLA policies, acknowledgement templates, trusted sources, and the `[triage]`
section itself (with what an included file may add)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from dispatcher.triage.spec import (
    DEFAULT_BUCKETS,
    ConditionSpec,
    ListSpec,
    RuleSpec,
    Spec,
)

DURATION = re.compile(r"^(?=\d)(?:(\d+)bd)?(?:(\d+)b?h)?(?:(\d+)m)?$")
"""`3bd` business days, `4bh` or `4h` hours and `30m` minutes of open time, or a mix
(`1bd4h`); every part counts on the SLA policy's calendar."""
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPLATE_VALUES = ("reference", "name", "subject", "fields", "articles")


def _duration(value: str) -> str:
    if not DURATION.match(value):
        raise ValueError('a duration such as "45m", "4h", "4bh", "3bd" or "1h30m"')
    return value


class PrioritySpec(Spec):
    """A priority agents understand, with its targets; `sla` names the SLA policy (and so
    the calendar) a case of this priority runs on unless a rule set one, `calendar` the
    clock it always runs on."""

    name: str = Field(min_length=1, max_length=40)
    definition: str
    response: str
    resolution: str | None = Field(default=None, description="Optional: response only.")
    sla: str | None = Field(default=None, description="An SLA policy name.")
    calendar: str | None = Field(default=None, description='A calendar, or "always".')

    @field_validator("response", "resolution")
    @classmethod
    def _targets(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)


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
    """An acknowledgement per language; `{reference}`, `{subject}`, `{name}`,
    `{fields[NAME]}` (a structured or captured field) and `{articles}` (the public
    knowledge-base articles suggested for the message, one "title: link" a line) are
    filled in."""

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


class IncludedSpec(Spec):
    """An included rules file: rules, and optionally more priorities, calendars, SLA
    policies, templates, named lists and named conditions."""

    rules: list[RuleSpec] = Field(default_factory=list)
    priorities: list[PrioritySpec] = Field(default_factory=list)
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    sla: list[SlaSpec] = Field(default_factory=list)
    templates: dict[str, TemplateSpec] = Field(default_factory=dict)
    lists: dict[str, ListSpec] = Field(default_factory=dict)
    conditions: dict[str, ConditionSpec] = Field(default_factory=dict)


class TriageSpec(IncludedSpec):
    """The `[triage]` section (and, merged into it, each included file)."""

    include: list[str] = Field(default_factory=list, description="Globs, relative to the file.")
    tests: list[str] = Field(
        default_factory=list, description="Golden test files run by `rules check` and reloads."
    )
    default_priority: str | None = None
    default_sla: str | None = None
    default_bucket: str | None = None
    default_category: str | None = None
    buckets: list[str] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))
    trusted: list[TrustedSpec] = Field(default_factory=list)
    ack_daily_cap: int = Field(default=3, ge=0, description="Acknowledgements per address a day.")

    @field_validator("tests", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value
