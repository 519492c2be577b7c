"""The dispatcher's seam to triage: an enriched message in, its `Triage` out.

`RulesRouter` reads the rule set in force once per message, so that a reload in between
never mixes two rule sets in one decision. `DefaultQueue` routes everything to one queue
(for tools and tests that need no rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dispatcher.triage.engine import Acknowledgement, Decision
from dispatcher.triage.facts import Facts
from normalizer.model import CaseOpen, RuleHit, SlaDue, Triage

if TYPE_CHECKING:
    from dispatcher.triage.live import LiveRules


class RulesRouter:
    """Evaluates the rules in force; `follow_up` selects the rules for updates."""

    def __init__(self, rules: LiveRules) -> None:
        self._rules = rules

    def __call__(self, case: CaseOpen, follow_up: bool = False) -> Triage:
        rule_set = self._rules.current  # one rule set for the whole message
        return to_triage(rule_set.evaluate(Facts.of(case, follow_up=follow_up)))

    def acknowledgement(
        self,
        template: str,
        case: CaseOpen,
        reference: str,
        fields: Mapping[str, str] | None = None,
    ) -> Acknowledgement | None:
        """The template rendered for this case, with the fields the rules captured (None if
        a reload removed it meanwhile)."""
        return self._rules.current.acknowledgement(template, case, reference, fields)

    @property
    def ack_daily_cap(self) -> int:
        return self._rules.current.ack_daily_cap


class DefaultQueue:
    """Routes every case to one queue."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    def __call__(self, case: CaseOpen, follow_up: bool = False) -> Triage:
        return Triage(queue=self._queue, reason="no triage rules: the default queue")


def to_triage(decision: Decision) -> Triage:
    """The decision as the forwarded message carries it."""
    sla = decision.sla
    return Triage(
        queue=decision.queue,
        bucket=decision.bucket,
        category=decision.category,
        product=decision.product,
        priority=decision.priority,
        tags=list(decision.tags),
        sla=None
        if sla is None
        else SlaDue(
            policy=sla.policy,
            priority=sla.priority,
            calendar=sla.calendar,
            response_due=sla.response_due,
            resolution_due=sla.resolution_due,
        ),
        rules=[hit.rule for hit in decision.hits],
        fields=dict(decision.fields),
        acknowledge=decision.acknowledge.template if decision.acknowledge else None,
        matched=[RuleHit(rule=hit.rule, because=hit.because) for hit in decision.hits],
        reason=decision.reason,
    )
