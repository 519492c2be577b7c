"""Conditions compiled from the spec: each is a small check that returns why it matched
(a short text for the explanation) or None. `all`, `any` and `not` combine them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex

from dispatcher.triage.calendar import Calendar
from dispatcher.triage.facts import Facts
from dispatcher.triage.spec import ConditionSpec, ContactsSpec, OneOrMany
from dispatcher.triage.text import Keywords

Check = Callable[[Facts], str | None]
REGEX_TIMEOUT_S = 0.05
REGEX_TEXT_LIMIT = 20_000
# A group that repeats and is itself repeated, e.g. (a+)+ or (\w*)*: catastrophic backtracking.
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the key."""


@dataclass(frozen=True, slots=True)
class Context:
    """What conditions may refer to by name."""

    calendars: dict[str, Calendar]


def compile_condition(spec: ConditionSpec, context: Context) -> Check:
    """All keys of one table must hold; the explanation lists each."""
    checks = [
        builder(value, context)
        for key, builder in BUILDERS.items()
        if (value := getattr(spec, key)) is not None
    ]
    return _all(checks)


def _all(checks: Sequence[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(facts: Facts) -> str | None:
        reasons = []
        for one in checks:
            reason = one(facts)
            if reason is None:
                return None
            reasons.append(reason)
        return " and ".join(reasons)

    return check


def _nested_all(specs: list[ConditionSpec], context: Context) -> Check:
    inner = _all([compile_condition(spec, context) for spec in specs])
    return lambda facts: None if (why := inner(facts)) is None else f"all({why})"


def _nested_any(specs: list[ConditionSpec], context: Context) -> Check:
    checks = [compile_condition(spec, context) for spec in specs]

    def check(facts: Facts) -> str | None:
        for one in checks:
            if (reason := one(facts)) is not None:
                return f"any({reason})"
        return None

    return check


def _nested_not(spec: ConditionSpec, context: Context) -> Check:
    inner = compile_condition(spec, context)
    return lambda facts: "not(...)" if inner(facts) is None else None


def _values(value: OneOrMany) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _one_of(label: str, read: Callable[[Facts], str | None]) -> Callable[..., Check]:
    """A field equal to one of the values (case-insensitive)."""

    def build(value: OneOrMany, _context: Context) -> Check:
        wanted = {item.lower() for item in _values(value)}

        def check(facts: Facts) -> str | None:
            actual = read(facts)
            return f"{label} = {actual}" if actual and actual.lower() in wanted else None

        return check

    return build


def _glob(label: str, read: Callable[[Facts], list[str]]) -> Callable[..., Check]:
    """Any of the field's values matches one of the globs (case-insensitive)."""

    def build(value: OneOrMany, _context: Context) -> Check:
        patterns = [item.lower() for item in _values(value)]

        def check(facts: Facts) -> str | None:
            for actual in read(facts):
                for pattern in patterns:
                    if fnmatch.fnmatchcase(actual.lower(), pattern):
                        return f"{label} {actual} matches {pattern}"
            return None

        return check

    return build


def _domain(value: OneOrMany, _context: Context) -> Check:
    domains = [item.lower().lstrip("@.") for item in _values(value)]

    def check(facts: Facts) -> str | None:
        for domain in domains:
            if facts.domain == domain or facts.domain.endswith("." + domain):
                return f"sender domain {facts.domain}"
        return None

    return check


def _keywords(fields: tuple[str, ...]) -> Callable[..., Check]:
    def build(words: list[str], _context: Context) -> Check:
        keywords = Keywords(words)

        def check(facts: Facts) -> str | None:
            for field in fields:
                if (found := keywords.find(getattr(facts, field))) is not None:
                    return f'keyword "{found}" in {field}'
            return None

        return check

    return build


def _regex(fields: tuple[str, ...]) -> Callable[..., Check]:
    def build(pattern: str, _context: Context) -> Check:
        if NESTED_QUANTIFIER.search(pattern):
            raise ConditionError(f"regex {pattern!r} repeats a repeated group and could run away")
        try:
            compiled = regex.compile(pattern, regex.IGNORECASE | regex.UNICODE)
        except regex.error as error:
            raise ConditionError(f"regex {pattern!r}: {error}") from None

        def check(facts: Facts) -> str | None:
            for field in fields:
                text = getattr(facts.case, field) or ""
                try:
                    match = compiled.search(text[:REGEX_TEXT_LIMIT], timeout=REGEX_TIMEOUT_S)
                except TimeoutError:
                    return None  # bounded: a pattern that takes too long does not match
                if match:
                    return f'regex /{pattern}/ matched "{match.group(0)[:40]}" in {field}'
            return None

        return check

    return build


def _bool(label: str, read: Callable[[Facts], bool]) -> Callable[..., Check]:
    def build(wanted: bool, _context: Context) -> Check:
        return lambda facts: f"{label} is {wanted}".lower() if read(facts) == wanted else None

    return build


def _has_attachments(wanted: bool, _context: Context) -> Check:
    def check(facts: Facts) -> str | None:
        count = len(facts.case.attachments)
        return f"{count} attachment(s)" if (count > 0) == wanted else None

    return check


def _attachment_min_bytes(least: int, _context: Context) -> Check:
    def check(facts: Facts) -> str | None:
        for attachment in facts.case.attachments:
            if (attachment.size or 0) >= least:
                return f"attachment {attachment.name} of {attachment.size} bytes"
        return None

    return check


def _flag(value: OneOrMany, _context: Context) -> Check:
    names = _values(value)

    def check(facts: Facts) -> str | None:
        flags = facts.case.flags
        for name in names:
            if (flags.spam == "spam") if name == "spam" else getattr(flags, name):
                return f"flag {name}"
        return None

    return check


def _hours(inside: bool) -> Callable[..., Check]:
    def build(name: str, context: Context) -> Check:
        calendar = context.calendars.get(name)
        if calendar is None:
            raise ConditionError(f"unknown calendar {name!r}")
        where = "inside" if inside else "outside"

        def check(facts: Facts) -> str | None:
            is_open = calendar.is_open(facts.case.received_at)
            return f"{where} business hours ({name})" if is_open == inside else None

        return check

    return build


def _open_cases(least: int, _context: Context) -> Check:
    def check(facts: Facts) -> str | None:
        count = facts.history.open_cases
        return f"{count} open case(s)" if count >= least else None

    return check


def _contacts(spec: ContactsSpec, _context: Context) -> Check:
    days, least = spec.days, spec.at_least

    def check(facts: Facts) -> str | None:
        count = facts.history.contacts.get(days, 0)
        return f"{count} contact(s) in {days} days" if count >= least else None

    return check


def _control(value: OneOrMany, _context: Context) -> Check:
    names = [name.lower() for name in _values(value)]

    def check(facts: Facts) -> str | None:
        for name in names:
            if name in facts.controls:
                return f"control {name} = {facts.controls[name]}"
        return None

    return check


BUILDERS: dict[str, Callable[..., Check]] = {
    "channel": _one_of("channel", lambda f: f.case.channel),
    "adapter": _one_of("adapter", lambda f: f.case.adapter),
    "touchpoint": _glob("touchpoint", lambda f: [t.address for t in f.case.touchpoints]),
    "sender": _glob("sender", lambda f: [f.sender]),
    "domain": _domain,
    "tier": _one_of("tier", lambda f: f.customer.tier),
    "known": _bool("known customer", lambda f: f.customer.known),
    "language": _one_of("language", lambda f: f.case.language),
    "keywords": _keywords(("subject", "text")),
    "subject_keywords": _keywords(("subject",)),
    "text_keywords": _keywords(("text",)),
    "regex": _regex(("subject", "text")),
    "subject_regex": _regex(("subject",)),
    "text_regex": _regex(("text",)),
    "has_attachments": _has_attachments,
    "attachment_type": _glob(
        "attachment type", lambda f: [a.media_type for a in f.case.attachments]
    ),
    "attachment_min_bytes": _attachment_min_bytes,
    "flag": _flag,
    "business_hours": _hours(inside=True),
    "outside_business_hours": _hours(inside=False),
    "open_cases_at_least": _open_cases,
    "contacts": _contacts,
    "repeat_contact": _bool("repeat contact", lambda f: f.history.repeat_contact),
    "last_queue": _one_of("last queue", lambda f: f.history.last_queue),
    "control": _control,
    "all": _nested_all,
    "any": _nested_any,
    "not_": _nested_not,
}
