"""The rule set, compiled once per load, and the one small interpreter that runs it.

Rules run in order. A matching rule's actions overwrite what earlier rules set (tags add
up), except fields an earlier rule made `final`; `stop` ends the matching. Conditions see
what earlier rules decided and the fields they captured. Each hit is recorded with the
condition that decided it, so every routing decision explains itself. Control fields from a
trusted source are applied last and recorded the same way.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dispatcher.triage.calendar import Calendar, Duration
from dispatcher.triage.facts import Facts
from dispatcher.triage.nodes import Condition
from dispatcher.triage.policy_spec import TemplateSpec
from dispatcher.triage.state import Hit, State
from normalizer.model import CaseOpen

CONTROL_FIELDS = ("priority", "queue", "tags")
Observer = Callable[["Rule", str | None, State], None]
"""Called with each rule evaluated, its reason (None: no match) and the state before it."""

__all__ = ["Acknowledgement", "Decision", "Hit", "Priority", "Rule", "RuleSet", "SlaDue"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    applies_to: str
    when: Condition | None
    sets: tuple[tuple[str, str], ...] = ()
    """(field, value) for bucket, category, product, priority, queue and sla."""
    tags: tuple[str, ...] = ()
    acknowledge: str | None = None
    stop: bool = False
    final: tuple[str, ...] = ()

    def applies(self, follow_up: bool) -> bool:
        return self.applies_to == "both" or (self.applies_to == "follow-up") == follow_up


@dataclass(frozen=True, slots=True)
class Priority:
    name: str
    definition: str
    response: Duration
    resolution: Duration | None = None
    sla: str | None = None
    calendar: str | None = None


@dataclass(frozen=True, slots=True)
class Trusted:
    touchpoint: str
    senders: tuple[str, ...]

    def vouches_for(self, facts: Facts) -> bool:
        arrived = [t.address.lower() for t in facts.case.touchpoints]
        if self.touchpoint not in arrived:
            return False
        return not self.senders or any(fnmatch.fnmatchcase(facts.sender, s) for s in self.senders)


@dataclass(frozen=True, slots=True)
class SlaDue:
    policy: str
    priority: str
    calendar: str
    response_due: datetime
    resolution_due: datetime | None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    template: str
    language: str
    subject: str | None
    text: str


@dataclass(frozen=True)
class Decision:
    """Where a message goes and why."""

    queue: str
    bucket: str | None = None
    category: str | None = None
    product: str | None = None
    priority: str | None = None
    tags: tuple[str, ...] = ()
    sla_policy: str | None = None
    sla: SlaDue | None = None
    fields: tuple[tuple[str, str], ...] = ()
    """Values the rules captured, by name."""
    acknowledge: Acknowledgement | None = None
    """The acknowledgement the rules ask for, rendered with the case-open id as reference."""
    hits: tuple[Hit, ...] = ()
    set_by: tuple[tuple[str, str], ...] = ()
    """(field, rule) for each field a rule set: the last rule to set it wins."""

    @property
    def reason(self) -> str:
        if not self.hits:
            return f"no rule matched: default queue {self.queue}"
        return "; ".join(f"{hit.rule}: {hit.because}" for hit in self.hits)


@dataclass
class RuleSet:
    """Everything a load produced, ready to evaluate; never changed after compiling."""

    rules: list[Rule]
    default_queue: str
    defaults: dict[str, str | None] = field(default_factory=dict)
    """The fields every message starts with (priority, sla, bucket, category)."""
    priorities: dict[str, Priority] = field(default_factory=dict)
    calendars: dict[str, Calendar] = field(default_factory=dict)
    """By name, `always` included."""
    sla_calendars: dict[str, str] = field(default_factory=dict)
    """SLA policy -> calendar name."""
    templates: dict[str, TemplateSpec] = field(default_factory=dict)
    trusted: list[Trusted] = field(default_factory=list)
    queues: frozenset[str] = frozenset()
    sources: list[str] = field(default_factory=list)
    ack_daily_cap: int = 3

    def __post_init__(self) -> None:
        # Each message walks only the rules for its kind, in order.
        self._for_new = [rule for rule in self.rules if rule.applies(follow_up=False)]
        self._for_follow_up = [rule for rule in self.rules if rule.applies(follow_up=True)]
        self._start = {
            "bucket": None,
            "category": None,
            "product": None,
            **self.defaults,
            "queue": self.default_queue,
        }

    @property
    def local_zone(self) -> ZoneInfo | None:
        """The zone a local time means: the default SLA policy's calendar's, or the only
        calendar's; None when that is not clear."""
        named = self.sla_calendars.get(self.defaults.get("sla") or "")
        zones = [c.zone for c in self.calendars.values() if c.zone is not None]
        if named is not None and self.calendars[named].zone is not None:
            return self.calendars[named].zone
        return zones[0] if len(zones) == 1 else None

    def evaluate(self, facts: Facts, observer: Observer | None = None) -> Decision:
        state = State(dict(self._start))
        for rule in self._for_follow_up if facts.follow_up else self._for_new:
            when = rule.when
            because = "always" if when is None else when.test(facts, state)
            if observer is not None:
                observer(rule, because, state)
            if because is None:
                state.pending.clear()
                continue
            _apply(state, rule, because)
            if rule.stop:
                break
        self._obey_controls(state, facts)
        fields = tuple(state.captured.items())
        return _decision(
            state,
            fields,
            sla_policy=self._policy(state),
            sla=self._sla(state, facts),
            acknowledge=self._ack(state.template, facts, fields),
        )

    def rules_for(self, follow_up: bool) -> list[Rule]:
        """The rules a new message (or a follow-up) walks, in order."""
        return self._for_follow_up if follow_up else self._for_new

    def _obey_controls(self, state: State, facts: Facts) -> None:
        given = {k: v for k, v in facts.controls.items() if k in CONTROL_FIELDS and v}
        if not given:
            return
        source = next((t for t in self.trusted if t.vouches_for(facts)), None)
        if source is None:
            return  # control fields from anyone else are ignored
        tags = [tag.strip() for tag in given.get("tags", "").split(",") if tag.strip()]
        # Only names the configuration knows: a control field never invents a queue.
        sets = [
            (name, value)
            for name, value, known in [
                ("priority", given.get("priority"), self.priorities),
                ("queue", given.get("queue"), self.queues),
            ]
            if value in known
        ]
        shown = ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
        rule = Rule("trusted-source", "both", None, tuple(sets), tuple(tags))  # type: ignore[arg-type]
        _apply(state, rule, f"{source.touchpoint}: {shown}")

    def _policy(self, state: State) -> str | None:
        """A policy a rule set (or made final) wins; then the priority's; then the default."""
        if "sla" in state.set_by or "sla" in state.locked:
            return state.fields.get("sla")
        priority = self.priorities.get(state.fields.get("priority") or "")
        return (priority.sla if priority else None) or state.fields.get("sla")

    def _sla(self, state: State, facts: Facts) -> SlaDue | None:
        priority = self.priorities.get(state.fields.get("priority") or "")
        policy = self._policy(state)
        if priority is None or policy is None:
            return None
        name = priority.calendar or self.sla_calendars[policy]
        calendar = self.calendars[name]
        start = facts.case.received_at.astimezone(UTC)
        resolution = priority.resolution
        return SlaDue(
            policy=policy,
            priority=priority.name,
            calendar=name,
            response_due=calendar.due(start, priority.response),
            resolution_due=None if resolution is None else calendar.due(start, resolution),
        )

    def _ack(
        self, name: str | None, facts: Facts, fields: tuple[tuple[str, str], ...]
    ) -> Acknowledgement | None:
        if name is None:
            return None
        return self.acknowledgement(name, facts.case, facts.case.id, dict(fields))

    def acknowledgement(
        self,
        name: str,
        case: CaseOpen,
        reference: str,
        fields: Mapping[str, str] | None = None,
    ) -> Acknowledgement | None:
        """Template `name` for this message, in its language if the template has it;
        `fields` are the values the rules captured (the source's own fields come too)."""
        spec = self.templates.get(name)
        if spec is None:
            return None
        language = case.language if case.language in spec.text else None
        language = language or spec.default_language
        values = _Values(
            reference=reference,
            subject=case.subject or "",
            name=case.sender.name or "",
            articles=_articles(case),
        )
        values["fields"] = _Fields({**case.fields, **(fields or {})})  # type: ignore[assignment]
        subject = spec.subject.get(language) or spec.subject.get(spec.default_language)
        return Acknowledgement(
            template=name,
            language=language,
            subject=subject.format_map(values) if subject else None,
            text=spec.text[language].format_map(values),
        )


def _articles(case: CaseOpen) -> str:
    """The public articles suggested for the message, one "title: link" a line."""
    kb = case.kb
    found = [s for s in kb.suggestions if s.audience == "public" and s.url] if kb else []
    return "\n".join(f"{s.title}: {s.url}" for s in found)


class _Values(dict[str, str]):
    """Template values; an unknown placeholder stays as written instead of failing (the
    load refuses templates with unknown placeholders)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class _Fields(dict[str, str]):
    """`{fields[NAME]}`: a field this message does not have is left empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _apply(state: State, rule: Rule, because: str) -> None:
    """A matching rule's actions, except on fields an earlier rule made final."""
    fields, locked = state.fields, state.locked
    kept = None
    for name, value in rule.sets:
        if name in locked:
            if fields.get(name) != value:
                kept = kept or []
                kept.append(f"{name} stays {fields.get(name)}: final since {locked[name]}")
            continue
        fields[name] = value
        state.set_by[name] = rule.name
    for name in rule.final:
        locked.setdefault(name, rule.name)
    tags = state.tags
    for tag in rule.tags:
        tags[tag] = None
    if state.pending:
        state.captured.update(state.pending)
        state.pending.clear()
    if rule.acknowledge:
        state.template = rule.acknowledge
    state.hits.append(Hit(rule.name, f"{because} ({'; '.join(kept)})" if kept else because))


def _decision(
    state: State,
    captured: tuple[tuple[str, str], ...],
    sla_policy: str | None,
    sla: SlaDue | None,
    acknowledge: Acknowledgement | None,
) -> Decision:
    fields = state.fields
    return Decision(
        queue=fields["queue"] or "",
        bucket=fields.get("bucket"),
        category=fields.get("category"),
        product=fields.get("product"),
        priority=fields.get("priority"),
        tags=tuple(state.tags),
        sla_policy=sla_policy,
        sla=sla,
        fields=captured,
        acknowledge=acknowledge,
        hits=tuple(state.hits),
        set_by=tuple(state.set_by.items()),
    )
