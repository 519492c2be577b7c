"""What the rules have decided so far for one message, while they run: later conditions may
look at it (`queue`, `priority`, `tags`, ... and captured `fields`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that matched, and the condition that decided it."""

    rule: str
    because: str


@dataclass(slots=True)
class State:
    """Mutable while one message is evaluated, then turned into a `Decision`."""

    fields: dict[str, str | None]
    """bucket, category, product, priority, queue and sla as decided so far."""
    tags: dict[str, None] = field(default_factory=dict)
    captured: dict[str, str] = field(default_factory=dict)
    """Values regex groups captured in rules that matched."""
    pending: list[tuple[str, str]] = field(default_factory=list)
    """Captures of the rule being evaluated; kept only if the rule matches."""
    locked: dict[str, str] = field(default_factory=dict)
    """Fields made final, and the rule that did it."""
    set_by: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    template: str | None = None

    def field_value(self, name: str, given: dict[str, str]) -> str | None:
        """A structured field: captured by a rule, else as the source gave it."""
        value = self.captured.get(name)
        return value if value is not None else given.get(name)
