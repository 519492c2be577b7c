"""Load the triage configuration: the `[triage]` section of the settings file and the files
it includes, validated in full, cross-checked, and compiled into a `RuleSet`.

Every problem is reported with its file and line (as near as TOML allows) and the reason;
nothing is compiled unless everything is valid, so no message is ever routed by a
half-loaded rule set.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dispatcher.triage.calendar import Calendar, CalendarError, parse_duration
from dispatcher.triage.conditions import ConditionError, Context, compile_condition
from dispatcher.triage.engine import Priority, Rule, RuleSet, Trusted
from dispatcher.triage.spec import IncludedSpec, RuleSpec, TriageSpec

ALWAYS = "always"
Model = TypeVar("Model", bound=BaseModel)


class RulesError(Exception):
    """The rules cannot be used; `problems` holds one "file:line: reason" per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Source:
    """One file's text and what it declared, for error lines."""

    path: Path
    text: str
    prefix: str  # "triage." in the settings file, "" in an included file

    def line_of(self, loc: tuple[int | str, ...]) -> int:
        """The line of the innermost key of `loc` found in order, e.g. ("rules", 2, "when")."""
        lines = self.text.splitlines()
        line = 0
        for index, part in enumerate(loc):
            if isinstance(part, int) and index > 0:
                header = re.compile(
                    rf"^\s*\[\[\s*{re.escape(self.prefix + str(loc[index - 1]))}\s*\]\]"
                )
                hits = [n for n, text in enumerate(lines) if header.match(text)]
                if part < len(hits):
                    line = hits[part]
            elif isinstance(part, str):
                key = re.compile(rf"^\s*(\[+[^\]]*\b)?{re.escape(part)}\b")
                found = next((n for n in range(line, len(lines)) if key.match(lines[n])), None)
                line = found if found is not None else line
        return line + 1


@dataclass
class _Collected:
    settings: _Source | None = None
    spec: TriageSpec | None = None
    included: list[tuple[_Source, IncludedSpec]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def watched_files(settings_path: Path) -> list[Path]:
    """The settings file and every file its `include` globs match right now."""
    files = [settings_path]
    try:
        data = tomllib.loads(settings_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return files
    patterns = data.get("triage", {}).get("include", [])
    for pattern in patterns if isinstance(patterns, list) else []:
        if isinstance(pattern, str):
            files.extend(sorted(settings_path.parent.glob(pattern)))
    return files


def load_rules(settings_path: Path, queues: list[str], default_queue: str) -> RuleSet:
    """Read, validate and compile; raise RulesError listing every problem found."""
    collected = _collect(settings_path)
    if collected.problems or collected.spec is None:
        raise RulesError(collected.problems)
    return _compile(collected, queues, default_queue)


def _collect(settings_path: Path) -> _Collected:
    collected = _Collected()
    source, data = _read(settings_path, "triage.", collected)
    if source is None:
        return collected
    collected.settings = source
    collected.spec = _validate(TriageSpec, data.get("triage", {}), source, collected)
    if collected.spec is None:
        return collected
    for pattern in collected.spec.include:
        paths = sorted(settings_path.parent.glob(pattern))
        for path in paths:
            included, values = _read(path, "", collected)
            if included is not None:
                spec = _validate(IncludedSpec, values, included, collected)
                if spec is not None:
                    collected.included.append((included, spec))
    return collected


def _read(path: Path, prefix: str, collected: _Collected) -> tuple[_Source | None, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as error:
        collected.problems.append(f"{path}: cannot be read: {error.strerror}")
        return None, {}
    except tomllib.TOMLDecodeError as error:
        collected.problems.append(f"{path}: not valid TOML: {error}")
        return None, {}
    collected.sources.append(str(path))
    return _Source(path, text, prefix), data


def _validate(
    model: type[Model], data: object, source: _Source, collected: _Collected
) -> Model | None:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            loc = tuple(item["loc"])
            where = ".".join(str(part) for part in loc)
            shown = f"{source.prefix}{where}" if where else source.prefix.rstrip(".")
            collected.problems.append(
                f"{source.path}:{source.line_of(loc)}: {shown}: {item['msg']}"
            )
        return None


def _compile(collected: _Collected, queues: list[str], default_queue: str) -> RuleSet:
    spec = collected.spec
    assert spec is not None and collected.settings is not None
    problems: list[str] = []
    parts = [(collected.settings, spec), *collected.included]
    rules_with_origin = [
        (source, index, rule) for source, part in parts for index, rule in enumerate(part.rules)
    ]
    calendars = _calendars(parts, problems)
    priorities = _priorities(parts, problems)
    sla = {policy.name: policy.calendar for _, part in parts for policy in part.sla}
    templates = {name: t for _, part in parts for name, t in part.templates.items()}
    sla_calendars: dict[str, Calendar] = {}
    for name, calendar in sla.items():
        if calendar != ALWAYS and calendar not in calendars:
            problems.append(f"triage.sla {name}: unknown calendar {calendar!r}")
        sla_calendars[name] = calendars.get(calendar, Calendar(ALWAYS, None))
    known = _Known(set(queues), set(spec.buckets), set(priorities), set(sla), set(templates))
    for label, value, kind in [
        ("default_priority", spec.default_priority, "priorities"),
        ("default_sla", spec.default_sla, "sla"),
    ]:
        if value is not None and value not in getattr(known, kind):
            problems.append(f"triage.{label}: unknown {kind} name {value!r}")
    context = Context({**calendars, ALWAYS: Calendar(ALWAYS, None)})
    rules = []
    names: set[str] = set()
    for source, index, rule in rules_with_origin:
        where = f"{source.path}:{source.line_of(('rules', index))}"
        if rule.name in names:
            problems.append(f"{where}: a second rule named {rule.name!r}")
        names.add(rule.name)
        problems.extend(f"{where}: rule {rule.name!r}: {p}" for p in known.check(rule))
        try:
            when = compile_condition(rule.when, context) if rule.when else None
        except (ConditionError, CalendarError) as error:
            problems.append(f"{where}: rule {rule.name!r}: {error}")
            continue
        rules.append(Rule(rule.name, rule.applies_to, when, rule.set, rule.acknowledge, rule.stop))
    if problems:
        raise RulesError(problems)
    return RuleSet(
        rules=rules,
        default_queue=default_queue,
        default_priority=spec.default_priority,
        default_sla=spec.default_sla,
        priorities=priorities,
        sla_calendars=sla_calendars,
        templates=templates,
        trusted=[
            Trusted(t.touchpoint.lower(), tuple(s.lower() for s in t.senders)) for t in spec.trusted
        ],
        queues=frozenset(queues),
        sources=collected.sources,
        ack_daily_cap=spec.ack_daily_cap,
    )


@dataclass(frozen=True)
class _Known:
    """The names rules may refer to; anything else fails the load."""

    queues: set[str]
    buckets: set[str]
    priorities: set[str]
    sla: set[str]
    templates: set[str]

    def check(self, rule: RuleSpec) -> list[str]:
        problems = []
        actions = rule.set
        for kind, value in [
            ("queues", actions.queue),
            ("buckets", actions.bucket),
            ("priorities", actions.priority),
            ("sla", actions.sla),
            ("templates", rule.acknowledge),
        ]:
            if value is not None and value not in getattr(self, kind):
                known = ", ".join(sorted(getattr(self, kind))) or "none defined"
                problems.append(f"unknown {kind} name {value!r} (known: {known})")
        return problems


def _calendars(parts: list[tuple[Any, Any]], problems: list[str]) -> dict[str, Calendar]:
    calendars = {}
    for _, part in parts:
        for name, spec in part.calendars.items():
            if name in calendars or name == ALWAYS:
                problems.append(f"triage.calendars.{name}: defined twice (or reserved)")
            try:
                calendars[name] = Calendar(name, spec)
            except CalendarError as error:
                problems.append(f"triage.calendars.{name}: {error}")
    return calendars


def _priorities(parts: list[tuple[Any, Any]], problems: list[str]) -> dict[str, Priority]:
    priorities = {}
    for _, part in parts:
        for spec in part.priorities:
            if spec.name in priorities:
                problems.append(f"triage.priorities: {spec.name!r} defined twice")
            priorities[spec.name] = Priority(
                spec.name,
                spec.definition,
                parse_duration(spec.response),
                parse_duration(spec.resolution),
            )
    return priorities
