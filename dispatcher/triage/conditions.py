"""Conditions compiled from the spec, once per load: every key of a `when` table through
its builder, `all`, `any`, `not` and named conditions combining them. One builder per key
of `ConditionSpec` (`BUILDERS`; tests/test_triage_condition_keys.py checks each one)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dispatcher.triage.facts import Facts
from dispatcher.triage.intake_conditions import INTAKE_BUILDERS
from dispatcher.triage.leaves import LEAF_BUILDERS
from dispatcher.triage.names import unknown
from dispatcher.triage.nodes import Condition, ConditionError, Context
from dispatcher.triage.spec import ConditionSpec
from dispatcher.triage.state import State
from dispatcher.triage.text_conditions import TEXT_BUILDERS


def compile_condition(spec: ConditionSpec, context: Context) -> Condition:
    """All keys of one table must hold; every key that cannot be compiled is reported."""
    conditions, problems = [], []
    for key, build in BUILDERS.items():
        value = getattr(spec, key)
        if value is None:
            continue
        try:
            conditions.append(build(value, context))
        except ConditionError as error:
            problems.append(str(error))
    if problems:
        raise ConditionError("; ".join(problems))
    return every(sorted(conditions, key=lambda c: _ORDER.get(c.kind, 0)))


_ORDER = {"all": 1, "any": 1, "not": 1, "named": 1}
"""Plain checks run before nested ones: they are cheaper, and fail sooner."""


def every(conditions: Sequence[Condition]) -> Condition:
    if len(conditions) == 1:
        return conditions[0]
    tests = tuple(one.test for one in conditions)
    captures = any(one.captures for one in conditions)

    def test(facts: Facts, state: State) -> str | None:
        reasons = []
        for one in tests:
            reason = one(facts, state)
            if reason is None:
                return None
            reasons.append(reason)
        return " and ".join(reasons)

    def test_capturing(facts: Facts, state: State) -> str | None:
        mark = len(state.pending)
        reason = test(facts, state)
        if reason is None:
            del state.pending[mark:]  # a branch that failed keeps nothing it captured
        return reason

    wants = " and ".join(one.wants for one in conditions)
    chosen = test_capturing if captures else test
    return Condition(chosen, wants, "all", tuple(conditions), captures=captures)


def _nested_all(specs: list[ConditionSpec], context: Context) -> Condition:
    inner = every([compile_condition(spec, context) for spec in specs])
    test = inner.test

    def check(facts: Facts, state: State) -> str | None:
        return None if (why := test(facts, state)) is None else f"all({why})"

    return Condition(check, f"all({inner.wants})", "all", (inner,), captures=inner.captures)


def _nested_any(specs: list[ConditionSpec], context: Context) -> Condition:
    conditions = tuple(compile_condition(spec, context) for spec in specs)
    tests = tuple(one.test for one in conditions)

    def check(facts: Facts, state: State) -> str | None:
        for one in tests:
            if (reason := one(facts, state)) is not None:
                return f"any({reason})"
        return None

    wants = "any(" + " | ".join(one.wants for one in conditions) + ")"
    captures = any(one.captures for one in conditions)
    return Condition(check, wants, "any", conditions, captures=captures)


def _nested_not(spec: ConditionSpec, context: Context) -> Condition:
    inner = compile_condition(spec, context)
    test, wants = inner.test, f"not({inner.wants})"

    def check(facts: Facts, state: State) -> str | None:
        mark = len(state.pending)
        matched = test(facts, state) is not None
        del state.pending[mark:]  # what a negated condition captured never counts
        return None if matched else wants

    return Condition(check, wants, "not", (inner,))


def _named(value: str | list[str], context: Context) -> Condition:
    names = [value] if isinstance(value, str) else value
    return every([named_condition(name, context) for name in names])


def named_condition(name: str, context: Context) -> Condition:
    """A condition from `[triage.conditions]`, compiled once however often it is used."""
    if name in context.compiled:
        return context.compiled[name]
    if name not in context.named:
        raise ConditionError(unknown("condition", name, context.named))
    if name in context.broken:
        raise ConditionError(f"condition {name!r} cannot be used (see its own problem)")
    if name in context.compiling:
        raise ConditionError(
            "named conditions refer to each other in a circle: "
            + " -> ".join([*context.compiling[context.compiling.index(name) :], name])
        )
    context.compiling.append(name)
    try:
        inner = compile_condition(context.named[name], context)
    except ConditionError:
        context.broken.add(name)
        raise
    finally:
        context.compiling.pop()
    test = inner.test

    def check(facts: Facts, state: State) -> str | None:
        return None if (why := test(facts, state)) is None else f"{name}({why})"

    compiled = Condition(check, f"{name}({inner.wants})", "named", (inner,), None, inner.captures)
    context.compiled[name] = compiled
    return compiled


_BUILDERS: dict[str, Callable[..., Condition]] = {
    **LEAF_BUILDERS,
    **TEXT_BUILDERS,
    **INTAKE_BUILDERS,
    "condition": _named,
    "all": _nested_all,
    "any": _nested_any,
    "not_": _nested_not,
}
BUILDERS = {key: _BUILDERS[key] for key in ConditionSpec.model_fields}
"""In the order the spec lists the keys, so explanations read the same way every time. A key
without a builder is a KeyError here, at import: skipped, it would match every message."""
