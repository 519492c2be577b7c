"""The compiled form of a condition, and what compiling one may refer to by name.

Each `Condition` has a `test` that returns why it matched (a short text for the explanation)
or None. `wants` says what it requires and `shows` what the message has, so that a tool can
say why a rule did not match (`explain.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dispatcher.triage.calendar import Calendar
from dispatcher.triage.facts import Facts
from dispatcher.triage.names import unknown
from dispatcher.triage.spec import ConditionSpec, ListRef, Values
from dispatcher.triage.state import State

Test = Callable[[Facts, State], str | None]
Shows = Callable[[Facts, State], str]
LISTED = 3


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the key."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: `test` for the engine, the rest for explanations."""

    test: Test
    wants: str
    kind: str = "leaf"
    """leaf, all, any, not or named."""
    children: tuple[Condition, ...] = ()
    shows: Shows | None = None
    captures: bool = False
    """A regex below captures fields: a branch that fails must drop what it captured."""


@dataclass
class Known:
    """The names rules may refer to; anything else fails the load."""

    queues: set[str]
    buckets: set[str]
    priorities: set[str]
    sla: set[str]
    templates: set[str]


@dataclass
class Context:
    """What conditions may refer to by name: calendars, lists, named conditions, and the
    queues, buckets and priorities that exist."""

    calendars: dict[str, Calendar]
    known: Known
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    named: dict[str, ConditionSpec] = field(default_factory=dict)
    compiled: dict[str, Condition] = field(default_factory=dict)
    compiling: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    broken_lists: set[str] = field(default_factory=set)

    def values(self, value: Values) -> list[str]:
        """The strings a value stands for, named lists expanded."""
        found: list[str] = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ListRef):
                if item.list_ in self.broken_lists:
                    raise ConditionError(f"list {item.list_!r} cannot be used (see its problem)")
                if item.list_ not in self.lists:
                    raise ConditionError(unknown("list", item.list_, self.lists))
                found.extend(self.lists[item.list_])
            else:
                found.append(item)
        return found


def shown(values: Sequence[str]) -> str:
    """A few values for an explanation, e.g. 'refund, invoice, payment and 11 more'."""
    head = ", ".join(values[:LISTED])
    return head if len(values) <= LISTED else f"{head} and {len(values) - LISTED} more"
