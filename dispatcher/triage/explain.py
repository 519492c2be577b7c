"""Why a rule did not match: its first failing condition, with what the message has.

Used by `ingest rules test --why-not RULE` and `--verbose`; the engine itself only ever runs
the fast `test` of each condition. An explanation evaluates the same conditions against the
state the rule saw, and leaves no captured value behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.triage.engine import Decision, Rule, RuleSet
from dispatcher.triage.facts import Facts
from dispatcher.triage.nodes import Condition
from dispatcher.triage.state import State


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """What became of one rule for one message."""

    rule: str
    matched: bool
    looked_at: bool
    text: str


def explain(condition: Condition, facts: Facts, state: State) -> tuple[bool, str]:
    """(holds, why) for a condition; when it does not hold, the first part that failed."""
    mark = len(state.pending)
    try:
        return _explain(condition, facts, state)
    finally:
        del state.pending[mark:]


def _explain(condition: Condition, facts: Facts, state: State) -> tuple[bool, str]:
    kind = condition.kind
    if kind == "leaf":
        why = condition.test(facts, state)
        if why is not None:
            return True, why
        shows = condition.shows(facts, state) if condition.shows else ""
        return False, f"wants {condition.wants}, but {shows}" if shows else condition.wants
    if kind == "any":
        texts = []
        for child in condition.children:
            holds, text = _explain(child, facts, state)
            if holds:
                return True, text
            texts.append(text)
        return False, "none of: " + " | ".join(texts)
    if kind == "not":
        holds, text = _explain(condition.children[0], facts, state)
        return (False, f"not(...) fails: {text}") if holds else (True, condition.wants)
    if kind == "named":
        holds, text = _explain(condition.children[0], facts, state)
        return holds, f"condition {condition.wants.split('(', 1)[0]}: {text}"
    for child in condition.children:  # all
        holds, text = _explain(child, facts, state)
        if not holds:
            return False, text
    return True, condition.test(facts, state) or condition.wants


def trace(rules: RuleSet, facts: Facts) -> tuple[Decision, list[RuleTrace]]:
    """The decision, and for every rule whether it matched, why, or why not."""
    seen: dict[str, RuleTrace] = {}

    def observe(rule: Rule, because: str | None, state: State) -> None:
        if because is not None:
            seen[rule.name] = RuleTrace(rule.name, True, True, because)
        elif rule.when is not None:
            seen[rule.name] = RuleTrace(rule.name, False, True, explain(rule.when, facts, state)[1])

    decision = rules.evaluate(facts, observe)
    stopper = next(
        (r.name for r in rules.rules if r.stop and r.name in seen and seen[r.name].matched), None
    )
    traces = []
    for rule in rules.rules:
        if rule.name in seen:
            traces.append(seen[rule.name])
        elif not rule.applies(facts.follow_up):
            kind = {"new": "new cases", "follow-up": "follow-ups and duplicates"}[rule.applies_to]
            traces.append(RuleTrace(rule.name, False, False, f"not looked at: for {kind} only"))
        else:
            traces.append(
                RuleTrace(rule.name, False, False, f"not looked at: {stopper} stopped the matching")
            )
    return decision, traces
