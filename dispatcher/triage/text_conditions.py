"""The conditions that read text: keywords (with word forms), regular expressions (whose
named groups capture fields), mail headers and structured fields."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import regex

from dispatcher.triage.facts import Facts
from dispatcher.triage.nodes import Condition, ConditionError, Context, shown
from dispatcher.triage.spec import Keywords as KeywordsValue
from dispatcher.triage.spec import MatchSpec, WordsSpec
from dispatcher.triage.state import State
from dispatcher.triage.text import CONDITION_CHARS, PREFIX, Keywords, globs

REGEX_TIMEOUT_S = 0.05
SHOWN_CHARS = 60
# A group that repeats and is itself repeated, e.g. (a+)+ or (\w*)*: catastrophic backtracking.
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


def compile_regex(pattern: str) -> regex.Pattern[str]:
    """Case-insensitive; refused when it could backtrack without end or does not compile."""
    if NESTED_QUANTIFIER.search(pattern):
        raise ConditionError(f"regex {pattern!r} repeats a repeated group and could run away")
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.UNICODE)
    except regex.error as error:
        raise ConditionError(f"regex {pattern!r}: {error}") from None


def search(compiled: regex.Pattern[str], text: str) -> regex.Match[str] | None:
    """A match within the time bound; a pattern that takes too long does not match."""
    try:
        return compiled.search(text[:CONDITION_CHARS], timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return None


def capture(match: regex.Match[str], state: State) -> None:
    """The match's named groups, held until the rule is known to match."""
    state.pending.extend((k, v) for k, v in match.groupdict().items() if v is not None)


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return f'"{flat[:SHOWN_CHARS]}{"..." if len(flat) > SHOWN_CHARS else ""}"'


def _keywords(fields: tuple[str, ...]) -> Callable[..., Condition]:
    def build(value: KeywordsValue, context: Context) -> Condition:
        stem = value.stem if isinstance(value, WordsSpec) else None
        words = context.values(value.words if isinstance(value, WordsSpec) else value)
        if not words or any(not word.removesuffix(PREFIX).strip() for word in words):
            raise ConditionError("give at least one keyword, none of them empty")
        keywords = Keywords(words, stem)
        forms = f" (stems, {stem})" if stem else ""

        def check(facts: Facts, state: State) -> str | None:
            for field in fields:
                text = facts.stemmed(field, stem) if stem else getattr(facts, field)
                if (found := keywords.find(text)) is not None:
                    return f'keyword "{found}"{forms} in {field}'
            return None

        def shows(facts: Facts, state: State) -> str:
            return "; ".join(f"{field} {_excerpt(getattr(facts, field))}" for field in fields)

        where = " or ".join(fields)
        return Condition(check, f"a keyword of [{shown(words)}]{forms} in {where}", shows=shows)

    return build


def _regex(fields: tuple[str, ...]) -> Callable[..., Condition]:
    def build(pattern: str, _context: Context) -> Condition:
        compiled = compile_regex(pattern)
        captures = bool(compiled.groupindex)

        def check(facts: Facts, state: State) -> str | None:
            for field in fields:
                match = search(compiled, getattr(facts.case, field) or "")
                if match:
                    if captures:
                        capture(match, state)
                    return f'regex /{pattern}/ matched "{match.group(0)[:40]}" in {field}'
            return None

        def shows(facts: Facts, state: State) -> str:
            return "; ".join(f"{f} {_excerpt(getattr(facts.case, f) or '')}" for f in fields)

        where = " or ".join(fields)
        return Condition(check, f"/{pattern}/ in {where}", shows=shows, captures=captures)

    return build


def _matcher(spec: MatchSpec, context: Context) -> tuple[Callable[..., str | None], str, bool]:
    """How one value is tested: (test(value, state) -> what matched, wants, captures)."""
    if spec.regex is not None:
        compiled = compile_regex(spec.regex)

        def by_regex(value: str, state: State) -> str | None:
            match = search(compiled, value)
            if match is None:
                return None
            capture(match, state)
            return f'"{match.group(0)[:40]}" matches /{spec.regex}/'

        return by_regex, f"matching /{spec.regex}/", bool(compiled.groupindex)
    if spec.glob is not None:
        patterns = [item.casefold() for item in context.values(spec.glob)]
        compiled = globs(patterns)

        def by_glob(value: str, state: State) -> str | None:
            folded = value.casefold()
            for pattern, glob in compiled:
                if glob.match(folded):
                    return f"{_excerpt(value)} matches {pattern}"
            return None

        return by_glob, f"matching [{shown(patterns)}]", False
    return (lambda value, state: "present"), "present", False


def _header(spec: MatchSpec, context: Context) -> Condition:
    name = spec.name.lower()
    test, wants, captures = _matcher(spec, context)

    def check(facts: Facts, state: State) -> str | None:
        for value in facts.headers.get(name, ()):
            if (why := test(value, state)) is not None:
                return f"header {spec.name} {why}"
        return None

    def shows(facts: Facts, state: State) -> str:
        values: Sequence[str] = facts.headers.get(name, ())
        return f"header {spec.name}: " + ("; ".join(map(_excerpt, values)) or "absent")

    return Condition(check, f"header {spec.name} {wants}", shows=shows, captures=captures)


def _field(spec: MatchSpec, context: Context) -> Condition:
    name = spec.name
    test, wants, captures = _matcher(spec, context)

    def check(facts: Facts, state: State) -> str | None:
        value = state.field_value(name, facts.case.fields)
        if value is None or (why := test(value, state)) is None:
            return None
        return f"field {name} {why}"

    def shows(facts: Facts, state: State) -> str:
        value = state.field_value(name, facts.case.fields)
        return f"field {name}: " + ("absent" if value is None else _excerpt(value))

    return Condition(check, f"field {name} {wants}", shows=shows, captures=captures)


TEXT_BUILDERS: dict[str, Callable[..., Condition]] = {
    "keywords": _keywords(("subject", "text")),
    "subject_keywords": _keywords(("subject",)),
    "text_keywords": _keywords(("text",)),
    "regex": _regex(("subject", "text")),
    "subject_regex": _regex(("subject",)),
    "text_regex": _regex(("text",)),
    "header": _header,
    "field": _field,
}
