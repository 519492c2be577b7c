"""Run a proposed rule set over messages the store already holds and say what would change:
which cases would go to another queue, bucket or priority, and by which rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dispatcher.triage.engine import Decision, RuleSet
from dispatcher.triage.facts import Facts
from normalizer.model import CaseOpen

COMPARED = ("queue", "bucket", "priority", "category", "product")


@dataclass(frozen=True, slots=True)
class Change:
    """One message the proposed rules would treat differently."""

    case: CaseOpen
    before: Decision
    after: Decision
    fields: tuple[tuple[str, str | None, str | None], ...]

    def describe(self) -> str:
        setters = dict(self.after.set_by)
        moved = "; ".join(
            f"{name} {old or '-'} -> {new or '-'} (by {setters.get(name, 'the defaults')})"
            for name, old, new in self.fields
        )
        subject = (self.case.subject or "")[:60]
        return f'{self.case.id} {self.case.channel} "{subject}": {moved}'


@dataclass
class ReplayReport:
    messages: int = 0
    changes: list[Change] = field(default_factory=list)

    def moved_between_queues(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for change in self.changes:
            if change.before.queue != change.after.queue:
                key = (change.before.queue, change.after.queue)
                counts[key] = counts.get(key, 0) + 1
        return counts


def compare(
    messages: Iterable[tuple[CaseOpen, bool]], current: RuleSet, proposed: RuleSet
) -> ReplayReport:
    """Each (message, is_follow_up) through both rule sets; collect the differences."""
    report = ReplayReport()
    for case, follow_up in messages:
        report.messages += 1
        before = current.evaluate(Facts.of(case, follow_up=follow_up))
        after = proposed.evaluate(Facts.of(case, follow_up=follow_up))
        changed = tuple(
            (name, getattr(before, name), getattr(after, name))
            for name in COMPARED
            if getattr(before, name) != getattr(after, name)
        )
        if changed:
            report.changes.append(Change(case, before, after, changed))
    return report
