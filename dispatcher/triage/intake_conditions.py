"""The conditions on what the dispatcher found at intake: a knowledge-base article that
answers the message (`kb`), and an incident it is part of (`incident`)."""

from __future__ import annotations

from collections.abc import Callable

from dispatcher.triage.facts import Facts
from dispatcher.triage.nodes import Condition, Context, shown
from dispatcher.triage.spec import IncidentSpec, KbSpec
from dispatcher.triage.state import State


def _kb(spec: KbSpec, context: Context) -> Condition:
    least = spec.score_at_least
    tags = frozenset(context.values(spec.tag)) if spec.tag is not None else None
    audience = spec.audience
    wants = [f"a kb article scoring {least:g} or more"]
    if tags is not None:
        wants.append(f"tagged one of [{shown(sorted(tags))}]")
    if audience is not None:
        wants.append(f"{audience}")

    def check(facts: Facts, state: State) -> str | None:
        kb = facts.case.kb
        for found in kb.suggestions if kb else ():
            if found.score < least or (audience is not None and found.audience != audience):
                continue
            if tags is not None and not tags.intersection(found.tags):
                continue
            return f"kb article {found.id} ({found.score:g})"
        return None

    def shows(facts: Facts, state: State) -> str:
        kb = facts.case.kb
        if kb is None or not kb.suggestions:
            return "no kb suggestion"
        best = kb.suggestions[0]
        return f"best kb article {best.id} ({best.score:g}, tags {', '.join(best.tags) or '-'})"

    return Condition(check, ", ".join(wants), shows=shows)


def _incident(spec: IncidentSpec, _context: Context) -> Condition:
    size, customers = spec.size_at_least, spec.customers_at_least

    def check(facts: Facts, state: State) -> str | None:
        found = facts.case.incident
        if found is None or found.size < size or found.customers < customers:
            return None
        return f"incident {found.id} of {found.size} messages from {found.customers} customers"

    def shows(facts: Facts, state: State) -> str:
        found = facts.case.incident
        if found is None:
            return "no incident"
        return f"incident {found.id} of {found.size} messages from {found.customers} customers"

    wants = f"an incident of {size} or more messages from {customers} or more customers"
    return Condition(check, wants, shows=shows)


INTAKE_BUILDERS: dict[str, Callable[..., Condition]] = {"kb": _kb, "incident": _incident}
