"""Load the triage configuration: the `[triage]` section of the settings file and the files
it includes, validated in full, cross-checked, and compiled into a `RuleSet`.

Every problem is reported with its file and line (as near as TOML allows) and the reason:
schema mistakes and unknown names together, whichever file they are in. Nothing is used
unless everything is valid (and, when asked, the golden tests pass), so no message is ever
routed by a half-loaded rule set.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.triage.calendar import Calendar, CalendarError, parse_duration
from dispatcher.triage.conditions import compile_condition, named_condition
from dispatcher.triage.engine import Priority, Rule, RuleSet, Trusted
from dispatcher.triage.lists import ListError, read_list
from dispatcher.triage.names import unknown
from dispatcher.triage.nodes import ConditionError, Context, Known
from dispatcher.triage.policy_spec import TEMPLATE_VALUES, IncludedSpec, TriageSpec
from dispatcher.triage.spec import DECIDED_FIELDS, ConditionSpec, RuleSpec
from dispatcher.triage.validate import Source, validate

ALWAYS = "always"
GoldenCheck = Callable[[RuleSet, list[Path]], list[str]]
"""Runs golden test files against a compiled rule set; one problem line per failure."""


class RulesError(Exception):
    """The rules cannot be used; `problems` holds one "file:line: reason" per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Collected:
    parts: list[tuple[Source, IncludedSpec]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def spec(self) -> TriageSpec | None:
        first = self.parts[0][1] if self.parts else None
        return first if isinstance(first, TriageSpec) else None


def watched_files(settings_path: Path) -> list[Path]:
    """The settings file, every file its `include` globs match right now, the files named
    lists are read from and the golden test files."""
    files = [settings_path]
    section = _toml(settings_path).get("triage", {})
    tables = [(settings_path.parent, section)]
    for pattern in _strings(section.get("include")):
        for path in sorted(settings_path.parent.glob(pattern)):
            files.append(path)
            tables.append((path.parent, _toml(path)))
    files.extend(settings_path.parent / name for name in _strings(section.get("tests")))
    for base, table in tables:
        lists = table.get("lists", {})
        for spec in lists.values() if isinstance(lists, dict) else []:
            if isinstance(spec, dict) and isinstance(spec.get("file"), str):
                files.append(base / spec["file"])
    return files


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _strings(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str)]


def load_rules(
    settings_path: Path,
    queues: list[str],
    default_queue: str,
    golden: GoldenCheck | None = None,
) -> RuleSet:
    """Read, validate and compile; raise RulesError listing every problem found. With
    `golden`, the `[triage] tests` files must pass too."""
    collected = _collect(settings_path)
    rule_set = _compile(collected, queues, default_queue) if collected.spec else None
    if collected.problems or rule_set is None:
        raise RulesError(collected.problems)
    spec = collected.spec
    assert spec is not None
    if golden is not None and spec.tests:
        failures = golden(rule_set, [settings_path.parent / name for name in spec.tests])
        if failures:
            raise RulesError(failures)
    return rule_set


def acknowledging_rules(settings_path: Path) -> list[tuple[str, list[str] | None]]:
    """Each rule that asks for an acknowledgement, with the channels its `when.channel`
    names (None: any channel), for `rules check` to hold against the configured repliers."""
    found: list[tuple[str, list[str] | None]] = []
    for _, part in _collect(settings_path).parts:
        for rule in part.rules:
            if rule.acknowledge is not None:
                channel = rule.when.channel if rule.when is not None else None
                found.append((rule.name, _strings(channel) or None))
    return found


def _collect(settings_path: Path) -> _Collected:
    collected = _Collected()
    source, data = _read(settings_path, "triage.", collected)
    if source is None:
        return collected
    spec, problems = validate(TriageSpec, data.get("triage", {}), source)
    collected.problems.extend(problems)
    if spec is None:
        return collected
    collected.parts.append((source, spec))
    for pattern in spec.include:
        for path in sorted(settings_path.parent.glob(pattern)):
            included, values = _read(path, "", collected)
            if included is not None:
                part, problems = validate(IncludedSpec, values, included)
                collected.problems.extend(problems)
                if part is not None:
                    collected.parts.append((included, part))
    return collected


def _read(path: Path, prefix: str, collected: _Collected) -> tuple[Source | None, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as error:
        collected.problems.append(f"{path}: cannot be read: {error.strerror}")
        return None, {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        collected.problems.append(f"{path}: not valid TOML: {error}")
        return None, {}
    collected.sources.append(str(path))
    return Source(path, text, prefix), data


def _compile(collected: _Collected, queues: list[str], default_queue: str) -> RuleSet:
    spec = collected.spec
    assert spec is not None
    parts, problems = collected.parts, collected.problems
    calendars = _calendars(parts, problems)
    sla = _sla(parts, calendars, problems)
    priorities = _priorities(parts, calendars, set(sla), problems)
    templates = _templates(parts, problems)
    known = Known(set(queues), set(spec.buckets), set(priorities), set(sla), set(templates))
    defaults = _defaults(spec, parts[0][0], known, problems)
    lists, broken = _lists(parts, problems)
    context = Context(calendars, known, lists, _named(parts, problems))
    context.broken_lists = broken
    for source, part in parts:
        for name in part.conditions:
            try:
                named_condition(name, context)
            except (ConditionError, CalendarError) as error:
                problems.append(source.problem(("conditions", name), str(error)))
    return RuleSet(
        rules=_rules(parts, context, problems),
        default_queue=default_queue,
        defaults=defaults,
        priorities=priorities,
        calendars=calendars,
        sla_calendars=sla,
        templates=templates,
        trusted=[
            Trusted(t.touchpoint.lower(), tuple(s.lower() for s in t.senders)) for t in spec.trusted
        ],
        queues=frozenset(queues),
        sources=collected.sources,
        ack_daily_cap=spec.ack_daily_cap,
    )


def _rules(
    parts: list[tuple[Source, IncludedSpec]], context: Context, problems: list[str]
) -> list[Rule]:
    rules = []
    names: set[str] = set()
    for source, part in parts:
        for index, spec in enumerate(part.rules):
            line = source.line_of(source.original(("rules", index)))
            where = f"{source.path}:{line}: rule {spec.name!r}"
            if spec.name in names:
                problems.append(f"{where}: a second rule named {spec.name!r}")
            names.add(spec.name)
            problems.extend(f"{where}: {p}" for p in _unknown_names(spec, context.known))
            try:
                when = compile_condition(spec.when, context) if spec.when else None
            except (ConditionError, CalendarError) as error:
                problems.append(f"{where}: {error}")
                continue
            rules.append(_rule(spec, when))
    return rules


def _rule(spec: RuleSpec, when: Any) -> Rule:
    actions = spec.set
    sets = tuple(
        (name, value) for name in DECIDED_FIELDS if (value := getattr(actions, name)) is not None
    )
    return Rule(
        spec.name,
        spec.applies_to,
        when,
        sets,
        tuple(actions.tags),
        spec.acknowledge,
        spec.stop,
        spec.final_fields(),
    )


def _unknown_names(rule: RuleSpec, known: Known) -> list[str]:
    actions = rule.set
    return [
        unknown(kind, value, getattr(known, plural))
        for kind, plural, value in [
            ("queue", "queues", actions.queue),
            ("bucket", "buckets", actions.bucket),
            ("priority", "priorities", actions.priority),
            ("SLA policy", "sla", actions.sla),
            ("template", "templates", rule.acknowledge),
        ]
        if value is not None and value not in getattr(known, plural)
    ]


def _defaults(
    spec: TriageSpec, source: Source, known: Known, problems: list[str]
) -> dict[str, str | None]:
    checks = [
        ("default_priority", "priority", spec.default_priority, known.priorities),
        ("default_sla", "SLA policy", spec.default_sla, known.sla),
        ("default_bucket", "bucket", spec.default_bucket, known.buckets),
    ]
    for key, kind, value, names in checks:
        if value is not None and value not in names:
            problems.append(source.problem((key,), unknown(kind, value, names)))
    return {
        "priority": spec.default_priority,
        "sla": spec.default_sla,
        "bucket": spec.default_bucket,
        "category": spec.default_category,
    }


def _calendars(parts: list[tuple[Source, IncludedSpec]], problems: list[str]) -> dict[str, Any]:
    calendars: dict[str, Calendar] = {ALWAYS: Calendar(ALWAYS, None)}
    for source, part in parts:
        for name, spec in part.calendars.items():
            if name in calendars:
                problems.append(source.problem(("calendars", name), "defined twice (or reserved)"))
            try:
                calendars[name] = Calendar(name, spec)
            except CalendarError as error:
                problems.append(source.problem(("calendars", name), str(error)))
    return calendars


def _sla(
    parts: list[tuple[Source, IncludedSpec]], calendars: dict[str, Calendar], problems: list[str]
) -> dict[str, str]:
    policies: dict[str, str] = {}
    for source, part in parts:
        for index, policy in enumerate(part.sla):
            if policy.calendar not in calendars:
                message = f"{policy.name}: {unknown('calendar', policy.calendar, calendars)}"
                problems.append(source.problem(source.original(("sla", index)), message))
            policies[policy.name] = policy.calendar if policy.calendar in calendars else ALWAYS
    return policies


def _priorities(
    parts: list[tuple[Source, IncludedSpec]],
    calendars: dict[str, Calendar],
    policies: set[str],
    problems: list[str],
) -> dict[str, Priority]:
    priorities: dict[str, Priority] = {}
    for source, part in parts:
        for index, spec in enumerate(part.priorities):
            where = source.original(("priorities", index))
            if spec.name in priorities:
                problems.append(source.problem(where, f"{spec.name!r} defined twice"))
            if spec.sla is not None and spec.sla not in policies:
                problems.append(source.problem(where, unknown("SLA policy", spec.sla, policies)))
            if spec.calendar is not None and spec.calendar not in calendars:
                message = unknown("calendar", spec.calendar, calendars)
                problems.append(source.problem(where, message))
            priorities[spec.name] = Priority(
                spec.name,
                spec.definition,
                parse_duration(spec.response),
                parse_duration(spec.resolution) if spec.resolution else None,
                spec.sla if spec.sla in policies else None,
                spec.calendar if spec.calendar in calendars else None,
            )
    return priorities


def _templates(parts: list[tuple[Source, IncludedSpec]], problems: list[str]) -> dict[str, Any]:
    templates = {}
    for source, part in parts:
        for name, spec in part.templates.items():
            for language, text in [*spec.subject.items(), *spec.text.items()]:
                problem = _placeholder_problem(text)
                if problem:
                    problems.append(source.problem(("templates", name), f"{language}: {problem}"))
            templates[name] = spec
    return templates


def _placeholder_problem(text: str) -> str | None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as error:
        return f"{error} (write {{{{ and }}}} for a literal brace)"
    for name in names:
        root = name.split("[", 1)[0].split(".", 1)[0]
        if root not in TEMPLATE_VALUES or (root == "fields") != name.startswith("fields["):
            return unknown("placeholder", f"{{{name}}}", [f"{{{v}}}" for v in TEMPLATE_VALUES])
    return None


def _lists(
    parts: list[tuple[Source, IncludedSpec]], problems: list[str]
) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """The named lists that could be read, and the names of those that could not."""
    lists: dict[str, tuple[str, ...]] = {}
    broken: set[str] = set()
    for source, part in parts:
        for name, spec in part.lists.items():
            if name in lists or name in broken:
                problems.append(source.problem(("lists", name), "defined twice"))
            try:
                lists[name] = read_list(spec, source.path.parent)
            except ListError as error:
                problems.append(source.problem(("lists", name), str(error)))
                broken.add(name)
    return lists, broken


def _named(
    parts: list[tuple[Source, IncludedSpec]], problems: list[str]
) -> dict[str, ConditionSpec]:
    named: dict[str, ConditionSpec] = {}
    for source, part in parts:
        for name, spec in part.conditions.items():
            if name in named:
                problems.append(source.problem(("conditions", name), "defined twice"))
            named[name] = spec
    return named
