"""Every condition key the rule schema accepts is implemented: compiled from a `when` table of
that key alone, it matches a message that has the fact and refuses one that lacks it. A key
the schema accepts without a builder would otherwise match every message (an empty `all`);
one without an example here fails the first test, so a new key cannot skip this."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.triage.calendar import Calendar
from dispatcher.triage.conditions import BUILDERS, compile_condition
from dispatcher.triage.facts import Customer, Facts, History
from dispatcher.triage.nodes import Context, Known
from dispatcher.triage.policy_spec import CalendarSpec
from dispatcher.triage.spec import ConditionSpec
from dispatcher.triage.state import State
from dispatcher.triage.text import CONDITION_CHARS
from normalizer.model import CaseOpen
from tests.triage_cases import PLAIN_MAIL

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
SHA = "0" * 64
BASE: dict[str, Any] = PLAIN_MAIL | {"received_at": TUESDAY_10}


@dataclass(frozen=True)
class Facet:
    """What a message has beyond `BASE`: case fields, customer, history, decisions so far."""

    case: dict[str, Any] = field(default_factory=dict)
    customer: Customer = field(default_factory=Customer)
    history: History = field(default_factory=History)
    decided: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def facts(self) -> Facts:
        case = CaseOpen.model_validate(BASE | self.case)
        return Facts(case, customer=self.customer, history=self.history)

    def state(self) -> State:
        return State(fields=dict(self.decided), tags=dict.fromkeys(self.tags))


@dataclass(frozen=True)
class Example:
    """A value for one key, a message it must match, and one it must not (`BASE` by default)."""

    value: Any
    hit: Facet
    miss: Facet = Facet()


def _attachment(media_type: str, size: int) -> dict[str, Any]:
    return {"name": "file", "media_type": media_type, "size": size, "sha256": SHA, "ref": SHA}


KB = {
    "suggestions": [
        {
            "id": "KB-7",
            "title": "Reset a password",
            "audience": "public",
            "language": "en",
            "tags": ["password"],
            "score": 0.9,
        }
    ]
}
INCIDENT = {"id": "I-1", "size": 5, "customers": 4, "first_seen": TUESDAY_10}
INVOICE = Facet(case={"subject": "Invoice 4411 is wrong", "text": "Please fix the invoice."})

EXAMPLES: dict[str, Example] = {
    "channel": Example("sms", Facet(case={"channel": "sms"})),
    "adapter": Example("imap", Facet(case={"adapter": "imap"})),
    "touchpoint": Example(
        "billing@*", Facet(case={"touchpoints": [{"kind": "mailbox", "address": "billing@x.org"}]})
    ),
    "sender": Example(
        "*@vip.example",
        Facet(case={"sender": {"kind": "email", "address": "bo@vip.example"}}),
    ),
    "domain": Example(
        "vip.example",
        Facet(case={"sender": {"kind": "email", "address": "bo@mail.vip.example"}}),
    ),
    "tier": Example("gold", Facet(customer=Customer(known=True, tier="gold"))),
    "known": Example(True, Facet(customer=Customer(known=True))),
    "language": Example("de", Facet(case={"language": "de"})),
    "keywords": Example(["invoice"], INVOICE),
    "subject_keywords": Example(["invoice"], INVOICE),
    "text_keywords": Example(["invoice"], INVOICE),
    "regex": Example(r"invoice \d+", INVOICE),
    "subject_regex": Example(r"invoice \d+", INVOICE),
    "text_regex": Example(r"fix the invoice", INVOICE),
    "header": Example(
        {"name": "X-Priority", "glob": "1*"},
        Facet(case={"headers": [{"name": "X-Priority", "value": "1 (Highest)"}]}),
    ),
    "field": Example(
        {"name": "order", "regex": r"^\d+$"}, Facet(case={"fields": {"order": "4411"}})
    ),
    "has_attachments": Example(
        True, Facet(case={"attachments": [_attachment("application/pdf", 10)]})
    ),
    "attachment_type": Example(
        "image/*", Facet(case={"attachments": [_attachment("image/png", 10)]})
    ),
    "attachment_min_bytes": Example(
        1000, Facet(case={"attachments": [_attachment("image/png", 5000)]})
    ),
    "flag": Example("auto_reply", Facet(case={"flags": {"auto_reply": True}})),
    "business_hours": Example("office", Facet(), miss=Facet(case={"received_at": SATURDAY_10})),
    "outside_business_hours": Example("office", Facet(case={"received_at": SATURDAY_10})),
    "open_cases_at_least": Example(2, Facet(history=History(open_cases=2))),
    "contacts": Example(
        {"days": 7, "at_least": 3}, Facet(history=History(contacts={7: 3, 30: 3, 90: 3}))
    ),
    "repeat_contact": Example(True, Facet(history=History(repeat_contact=True))),
    "last_queue": Example("billing", Facet(history=History(last_queue="billing"))),
    "control": Example("priority", Facet(case={"controls": {"priority": "P1"}})),
    "kb": Example({"score_at_least": 0.5, "tag": "password"}, Facet(case={"kb": KB})),
    "incident": Example({"customers_at_least": 3}, Facet(case={"incident": INCIDENT})),
    "queue": Example("billing", Facet(decided={"queue": "billing"})),
    "priority": Example("P1", Facet(decided={"priority": "P1"})),
    "bucket": Example("problem", Facet(decided={"bucket": "problem"})),
    "category": Example("refund", Facet(decided={"category": "refund"})),
    "product": Example("router", Facet(decided={"product": "router"})),
    "tags": Example("vip", Facet(tags=("vip",))),
    "condition": Example("invoice-words", INVOICE),
    "all": Example([{"channel": "email"}, {"keywords": ["invoice"]}], INVOICE),
    "any": Example([{"channel": "sms"}, {"keywords": ["invoice"]}], INVOICE),
    "not_": Example({"keywords": ["invoice"]}, Facet(), miss=INVOICE),
}


def context() -> Context:
    office = CalendarSpec(timezone="UTC", hours=dict.fromkeys(["mon", "tue"], "09:00-17:00"))
    return Context(
        calendars={"office": Calendar("office", office)},
        known=Known({"billing"}, {"problem"}, {"P1"}, set(), set()),
        named={"invoice-words": ConditionSpec(keywords=["invoice"])},
    )


def test_every_key_the_schema_accepts_has_a_builder_and_an_example_here() -> None:
    assert list(BUILDERS) == list(ConditionSpec.model_fields)
    assert set(EXAMPLES) == set(ConditionSpec.model_fields)


@pytest.mark.parametrize("key", list(ConditionSpec.model_fields))
def test_a_key_alone_matches_what_has_the_fact_and_refuses_what_lacks_it(key: str) -> None:
    example = EXAMPLES[key]
    name = ConditionSpec.model_fields[key].alias or key
    spec = ConditionSpec.model_validate({name: example.value})
    assert spec.model_fields_set == {key}
    condition = compile_condition(spec, context())
    hit, miss = example.hit, example.miss
    assert condition.test(hit.facts(), hit.state()) is not None, condition.wants
    assert condition.test(miss.facts(), miss.state()) is None, condition.wants


@pytest.mark.parametrize(
    "value",
    [
        {"text_keywords": ["invoice"]},
        {"text_keywords": {"words": ["invoices"], "stem": "en"}},
        {"text_regex": r"invoice \d+"},
    ],
)
def test_text_conditions_read_the_first_20000_characters(value: dict[str, Any]) -> None:
    """A mail near the size limit can hold megabytes of text: the conditions read the start."""
    condition = compile_condition(ConditionSpec.model_validate(value), context())
    filler = "lorem ipsum " * (CONDITION_CHARS // 12 + 1)
    inside = Facet(case={"text": f"{filler[: CONDITION_CHARS - 20]} invoice 42"})
    beyond = Facet(case={"text": f"{filler} invoice 42"})
    assert condition.test(inside.facts(), inside.state()) is not None
    assert condition.test(beyond.facts(), beyond.state()) is None
