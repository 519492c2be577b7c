"""The rule set, compiled once per load, and the one small interpreter that runs it.

Rules run in order. A matching rule's actions overwrite what earlier rules set (tags add
up); `stop` ends the matching. Each hit is recorded with the condition that decided it, so
every routing decision explains itself. Control fields from a trusted source are applied
last and recorded the same way.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from dispatcher.triage.calendar import Calendar
from dispatcher.triage.conditions import Check
from dispatcher.triage.facts import Facts
from dispatcher.triage.spec import ActionSpec, TemplateSpec
from normalizer.model import CaseOpen

CONTROL_FIELDS = ("priority", "queue", "tags")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    applies_to: str
    when: Check | None
    actions: ActionSpec
    acknowledge: str | None
    stop: bool

    def applies(self, follow_up: bool) -> bool:
        return self.applies_to == "both" or (self.applies_to == "follow-up") == follow_up


@dataclass(frozen=True, slots=True)
class Priority:
    name: str
    definition: str
    response: timedelta
    resolution: timedelta


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
class Hit:
    """A rule that matched, and the condition that decided it."""

    rule: str
    because: str


@dataclass(frozen=True, slots=True)
class SlaDue:
    policy: str
    priority: str
    response_due: datetime
    resolution_due: datetime


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
    default_priority: str | None = None
    default_sla: str | None = None
    priorities: dict[str, Priority] = field(default_factory=dict)
    sla_calendars: dict[str, Calendar] = field(default_factory=dict)
    templates: dict[str, TemplateSpec] = field(default_factory=dict)
    trusted: list[Trusted] = field(default_factory=list)
    queues: frozenset[str] = frozenset()
    sources: list[str] = field(default_factory=list)
    ack_daily_cap: int = 3

    def __post_init__(self) -> None:
        # Each message walks only the rules for its kind, in order.
        self._for_new = [rule for rule in self.rules if rule.applies(follow_up=False)]
        self._for_follow_up = [rule for rule in self.rules if rule.applies(follow_up=True)]

    def evaluate(self, facts: Facts) -> Decision:
        outcome = _Outcome(
            {"queue": self.default_queue, "priority": self.default_priority},
            sla_policy=self.default_sla,
        )
        for rule in self._for_follow_up if facts.follow_up else self._for_new:
            because = "always" if rule.when is None else rule.when(facts)
            if because is None:
                continue
            outcome.apply(rule.actions, Hit(rule.name, because))
            outcome.template = rule.acknowledge or outcome.template
            if rule.stop:
                break
        self._obey_controls(outcome, facts)
        decision = outcome.decision()
        return replace(
            decision,
            sla=self._sla(decision, facts),
            acknowledge=self._ack(outcome.template, facts),
        )

    def _obey_controls(self, outcome: _Outcome, facts: Facts) -> None:
        given = {k: v for k, v in facts.controls.items() if k in CONTROL_FIELDS and v}
        if not given:
            return
        source = next((t for t in self.trusted if t.vouches_for(facts)), None)
        if source is None:
            return  # control fields from anyone else are ignored
        tags = [tag.strip() for tag in given.get("tags", "").split(",") if tag.strip()]
        # Only names the configuration knows: a control field never invents a queue.
        actions = ActionSpec(
            priority=given.get("priority") if given.get("priority") in self.priorities else None,
            queue=given.get("queue") if given.get("queue") in self.queues else None,
            tags=tags,
        )
        shown = ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
        outcome.apply(actions, Hit("trusted-source", f"{source.touchpoint}: {shown}"))

    def _sla(self, decision: Decision, facts: Facts) -> SlaDue | None:
        priority = self.priorities.get(decision.priority or "")
        calendar = self.sla_calendars.get(decision.sla_policy or "")
        if priority is None or calendar is None or decision.sla_policy is None:
            return None
        start = facts.case.received_at.astimezone(UTC)
        return SlaDue(
            policy=decision.sla_policy,
            priority=priority.name,
            response_due=calendar.add(start, priority.response),
            resolution_due=calendar.add(start, priority.resolution),
        )

    def _ack(self, name: str | None, facts: Facts) -> Acknowledgement | None:
        return None if name is None else self.acknowledgement(name, facts.case, facts.case.id)

    def acknowledgement(self, name: str, case: CaseOpen, reference: str) -> Acknowledgement | None:
        """Template `name` for this message, in its language if the template has it."""
        spec = self.templates.get(name)
        if spec is None:
            return None
        language = case.language if case.language in spec.text else None
        language = language or spec.default_language
        values = _Values(
            reference=reference,
            subject=case.subject or "",
            name=case.sender.name or "",
        )
        subject = spec.subject.get(language) or spec.subject.get(spec.default_language)
        return Acknowledgement(
            template=name,
            language=language,
            subject=subject.format_map(values) if subject else None,
            text=spec.text[language].format_map(values),
        )


class _Values(dict[str, str]):
    """Template values; an unknown placeholder stays as written instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass
class _Outcome:
    """What the rules have set so far for one message (mutable while the rules run)."""

    fields: dict[str, str | None]
    sla_policy: str | None = None
    tags: dict[str, None] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    template: str | None = None
    set_by: dict[str, str] = field(default_factory=dict)

    def apply(self, actions: ActionSpec, hit: Hit) -> None:
        for name in ("bucket", "category", "product", "priority", "queue"):
            value = getattr(actions, name)
            if value is not None:
                self.fields[name] = value
                self.set_by[name] = hit.rule
        if actions.sla is not None:
            self.sla_policy = actions.sla
            self.set_by["sla"] = hit.rule
        self.tags.update(dict.fromkeys(actions.tags))
        self.hits.append(hit)

    def decision(self) -> Decision:
        return Decision(
            **self.fields,  # type: ignore[arg-type]
            sla_policy=self.sla_policy,
            tags=tuple(self.tags),
            hits=tuple(self.hits),
            set_by=tuple(self.set_by.items()),
        )
