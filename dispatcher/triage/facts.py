"""What the rules look at, gathered once per message: the case-open, who the customer is,
their history, and the moment of evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from dispatcher.triage.text import CONDITION_CHARS, fold, stem_text

if TYPE_CHECKING:
    from dispatcher.triage.calendar import Calendar
from normalizer.model import CaseOpen


@dataclass(frozen=True, slots=True)
class Customer:
    """Who the dispatcher found the sender to be."""

    known: bool = False
    tier: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """What happened before: open cases, contacts per window (7, 30, 90 days), last queue."""

    open_cases: int = 0
    contacts: Mapping[int, int] = field(default_factory=dict)
    repeat_contact: bool = False
    last_queue: str | None = None


@dataclass(frozen=True)
class Facts:
    """One message as the rules see it. Folded texts are computed once, on first use."""

    case: CaseOpen
    follow_up: bool = False
    customer: Customer = Customer()
    history: History = History()

    @classmethod
    def of(cls, case: CaseOpen, follow_up: bool = False) -> Facts:
        """The facts of a message the dispatcher has enriched with customer and history."""
        customer, history = case.customer, case.history
        return cls(
            case,
            follow_up=follow_up,
            customer=Customer(
                known=customer.known,
                tier=customer.tier,
                id=str(customer.id),
            )
            if customer
            else Customer(),
            history=History(
                open_cases=len(history.open_cases),
                contacts={counts.days: counts.total for counts in history.contacts},
                repeat_contact=history.repeat_contact,
                last_queue=history.last_queue,
            )
            if history
            else History(),
        )

    @cached_property
    def subject(self) -> str:
        return fold((self.case.subject or "")[:CONDITION_CHARS])

    @cached_property
    def text(self) -> str:
        return fold(self.case.text[:CONDITION_CHARS])

    def stemmed(self, field: str, language: str) -> str:
        """The folded subject or text with each word stemmed, computed once per language."""
        key = (field, language)
        found = self._stemmed.get(key)
        if found is None:
            found = self._stemmed[key] = stem_text(getattr(self, field), language)
        return found

    @cached_property
    def _stemmed(self) -> dict[tuple[str, str], str]:
        return {}

    @cached_property
    def headers(self) -> Mapping[str, list[str]]:
        """Mail headers by lower-cased name, every value in order."""
        found: dict[str, list[str]] = {}
        for header in self.case.headers:
            name = header.name.lower()
            if name in found:
                found[name].append(header.value)
            else:
                found[name] = [header.value]
        return found

    def is_open(self, calendar: Calendar) -> bool:
        """Whether the message arrived inside the calendar's hours (asked once per calendar:
        several rules may ask)."""
        found = self._open.get(calendar.name)
        if found is None:
            found = self._open[calendar.name] = calendar.is_open(self.case.received_at)
        return found

    @cached_property
    def _open(self) -> dict[str, bool]:
        return {}

    @cached_property
    def sender(self) -> str:
        return self.case.sender.address.lower()

    @cached_property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2] if "@" in self.sender else ""

    @property
    def controls(self) -> Mapping[str, str]:
        """Control fields the source set; the engine decides whether they are obeyed."""
        return {name.lower(): value for name, value in self.case.controls.items()}
