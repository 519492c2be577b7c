"""Triage over the shipped example rules: table-driven, in English, Danish, Chinese, Japanese."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.triage import Customer, Decision, Facts, History, RuleSet, load_rules
from ingest.settings import load_settings
from normalizer.model import CaseOpen
from tests.shipped import with_acknowledgements
from tests.triage_cases import plain_mail

TUESDAY_10_CPH = "2026-11-24T09:00:00Z"  # 10:00 in Copenhagen, office open
SATURDAY = "2026-11-28T12:00:00Z"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    """The shipped rules as they run once a replier is configured: acknowledgements on."""
    shipped = with_acknowledgements(tmp_path_factory.mktemp("shipped"))
    settings = load_settings(shipped)
    return load_rules(shipped, settings.queues.declared_teams(), settings.queues.default)


def case(**fields: Any) -> CaseOpen:
    """A plain customer mail to support, in English; fields override."""
    mail: dict[str, Any] = {
        "received_at": TUESDAY_10_CPH,
        "text": "Hello, something happened.",
        "language": "en",
    }
    return plain_mail(**(mail | fields))


def attachment(media_type: str, size: int) -> dict[str, Any]:
    return {
        "name": "file",
        "media_type": media_type,
        "size": size,
        "sha256": "0" * 64,
        "ref": "sha256:" + "0" * 64,
    }


KNOWN_GOLD = Customer(known=True, tier="gold", id="c-1")
KNOWN = Customer(known=True, tier="standard", id="c-2")

# (message fields, facts, expected decision fields; "hits" lists the rules in order)
TABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "english refund goes to billing",
        {"subject": "Refund please", "text": "I was charged twice."},
        {},
        {
            "queue": "billing",
            "bucket": "action",
            "priority": "P3",
            "hits": ["acknowledge", "billing"],
        },
    ),
    (
        "a word that only starts like a keyword does not match",
        {"subject": "Not refunded yet", "text": "Where is my money?"},
        {},
        {"queue": "support.general", "hits": ["acknowledge"]},
    ),
    (
        "full-width letters are folded (NFKC)",
        {"subject": "ＲＥＦＵＮＤ", "text": "."},
        {},
        {"queue": "billing"},
    ),
    (
        "danish invoice",
        {
            "subject": "Spørgsmål til faktura 2231",
            "text": "Hej, fakturaen er forkert.",
            "language": "da",
        },
        {},
        {"queue": "billing", "hits": ["acknowledge", "billing"]},
    ),
    (
        "chinese refund inside a sentence, chinese desk",
        {"subject": "订单问题", "text": "你好，我想申请退款，谢谢。", "language": "zh"},
        {},
        {"queue": "billing", "tags": ["chinese-desk"]},
    ),
    (
        "japanese refund, japanese desk",
        {"subject": "返金について", "text": "返金をお願いします。", "language": "ja"},
        {},
        {"queue": "billing", "tags": ["japanese-desk"]},
    ),
    (
        "billing address routes by touchpoint",
        {"touchpoints": [{"kind": "mailbox", "address": "billing@example.com"}]},
        {},
        {"queue": "billing", "hits": ["acknowledge", "billing"]},
    ),
    (
        "network outage in office hours",
        {"subject": "Outage at our office", "text": "We have had no internet since 9."},
        {},
        {"queue": "network", "bucket": "problem", "priority": "P2", "category": "connectivity"},
    ),
    (
        "japanese connection problem",
        {"subject": "接続できない", "text": "昨日から接続できない状態です。", "language": "ja"},
        {},
        {"queue": "network", "priority": "P2"},
    ),
    (
        "an outage on a saturday is P1 after hours",
        {"subject": "Outage", "text": "Everything is dark.", "received_at": SATURDAY},
        {},
        {"queue": "network", "priority": "P1", "tags": ["after-hours", "page-on-call"]},
    ),
    (
        "danish outage after hours",
        {"subject": "Nedbrud", "text": "Alt er nede.", "received_at": SATURDAY, "language": "da"},
        {},
        {"queue": "network", "priority": "P1"},
    ),
    (
        "sales enquiry",
        {"subject": "Quote for 20 seats", "text": "Could you send pricing?"},
        {},
        {"queue": "sales", "bucket": "consulting", "priority": "P4"},
    ),
    (
        "a quote about a refund is not sales (not)",
        {"subject": "Quote", "text": "I want a refund of the quote I paid."},
        {},
        {"queue": "billing", "hits": ["acknowledge", "billing"]},
    ),
    (
        "chinese pricing question",
        {"subject": "价格", "text": "请问企业版的价格是多少？", "language": "zh"},
        {},
        {"queue": "sales"},
    ),
    (
        "auto-replies are noise and never acknowledged",
        {"subject": "Out of office", "flags": {"auto_reply": True}},
        {},
        {"queue": "noise", "bucket": "divert", "hits": ["noise"], "acknowledge": None},
    ),
    (
        "a bounce in a follow-up is noise too",
        {"subject": "Undeliverable", "flags": {"bounce": True}},
        {"follow_up": True},
        {"queue": "noise", "hits": ["noise"]},
    ),
    (
        "job application in japanese is diverted and not acknowledged",
        {"subject": "応募について", "text": "履歴書を添付します。", "language": "ja"},
        {},
        {"bucket": "divert", "category": "hr", "hits": ["job-applications"], "acknowledge": None},
    ),
    (
        "monitoring alert",
        {
            "touchpoints": [{"kind": "mailbox", "address": "alerts@example.com"}],
            "sender": {"kind": "email", "address": "monitoring@nagios.example.com"},
            "subject": "PROBLEM: core-router-2 is DOWN",
        },
        {},
        {"queue": "network", "priority": "P2", "hits": ["monitoring-alerts"]},
    ),
    (
        "trusted source's control fields are obeyed",
        {
            "touchpoints": [{"kind": "mailbox", "address": "alerts@example.com"}],
            "sender": {"kind": "email", "address": "monitoring@nagios.example.com"},
            "controls": {"priority": "P1", "queue": "billing", "tags": "pager,core"},
        },
        {},
        {
            "queue": "billing",
            "priority": "P1",
            "tags": ["monitoring", "pager", "core"],
            "hits": ["monitoring-alerts", "trusted-source"],
        },
    ),
    (
        "control fields from an untrusted sender are ignored",
        {
            "touchpoints": [{"kind": "mailbox", "address": "alerts@example.com"}],
            "sender": {"kind": "email", "address": "mallory@evil.example"},
            "controls": {"priority": "P1", "queue": "billing"},
        },
        {},
        {"queue": "network", "priority": "P2", "hits": ["monitoring-alerts"]},
    ),
    (
        "control fields on an ordinary address are ignored",
        {"controls": {"priority": "P1", "queue": "sales"}},
        {},
        {"queue": "support.general", "priority": "P3", "hits": ["acknowledge"]},
    ),
    (
        "a control field naming an unknown queue is ignored",
        {
            "touchpoints": [{"kind": "mailbox", "address": "alerts@example.com"}],
            "sender": {"kind": "email", "address": "monitoring@nagios.example.com"},
            "controls": {"queue": "nowhere"},
        },
        {},
        {"queue": "network"},
    ),
    (
        "gold customers get the premium clock",
        {"subject": "Question"},
        {"customer": KNOWN_GOLD},
        {"sla_policy": "premium", "tags": ["vip"]},
    ),
    (
        "urgent from a known customer escalates",
        {"subject": "URGENT: cannot print", "text": "asap please"},
        {"customer": KNOWN},
        {"priority": "P1", "bucket": "escalation"},
    ),
    (
        "urgent from an unknown sender does not",
        {"subject": "URGENT: cannot print", "text": "asap please"},
        {},
        {"priority": "P3"},
    ),
    (
        "danish urgency",
        {"subject": "Det haster", "text": "Vi kan ikke arbejde.", "language": "da"},
        {"customer": KNOWN},
        {"priority": "P1"},
    ),
    (
        "repeat contact flag",
        {},
        {"history": History(repeat_contact=True)},
        {"bucket": "escalation", "tags": ["repeat-contact"]},
    ),
    (
        "four contacts in seven days",
        {},
        {"history": History(contacts={7: 4, 30: 4, 90: 6})},
        {"tags": ["repeat-contact"]},
    ),
    (
        "three contacts in seven days are not yet repeat",
        {},
        {"history": History(contacts={7: 3, 30: 3, 90: 3})},
        {"tags": []},
    ),
    (
        "a follow-up skips rules for new cases",
        {"subject": "Re: refund", "text": "Any news on my refund?"},
        {"follow_up": True, "history": History(last_queue="billing", open_cases=1)},
        {
            "queue": "support.general",
            "tags": ["follow-up"],
            "hits": ["follow-up-stays-with-its-team"],
        },
    ),
    (
        "many open cases",
        {},
        {"history": History(open_cases=3)},
        {"tags": ["many-open-cases"]},
    ),
    (
        "an unknown web visitor is a prospect",
        {
            "channel": "web",
            "adapter": "web-api",
            "touchpoints": [{"kind": "api", "address": "api"}],
        },
        {},
        {"tags": ["prospect"]},
    ),
    (
        "a known web customer is not",
        {
            "channel": "web",
            "adapter": "web-api",
            "touchpoints": [{"kind": "api", "address": "api"}],
        },
        {"customer": KNOWN},
        {"tags": []},
    ),
    (
        "screenshots and large attachments are tagged",
        {
            "attachments": [
                attachment("image/png", 200_000),
                attachment("application/zip", 12 * MIB),
            ]
        },
        {},
        {"tags": ["has-screenshot", "large-attachment"]},
    ),
    (
        "order numbers by regular expression",
        {"subject": "Order #1234567 missing"},
        {},
        {"category": "order", "tags": ["order-ref"]},
    ),
    (
        "how-to questions are reference",
        {"subject": "How do I reset my password?"},
        {},
        {"bucket": "reference"},
    ),
    (
        "nothing special: the defaults and the acknowledgement",
        {},
        {},
        {"queue": "support.general", "bucket": None, "priority": "P3", "hits": ["acknowledge"]},
    ),
]


@pytest.mark.parametrize(
    ("message", "facts", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_shipped_rules(
    rules: RuleSet, message: dict[str, Any], facts: dict[str, Any], expected: dict[str, Any]
) -> None:
    decision = rules.evaluate(Facts(case(**message), **facts))
    for field, value in expected.items():
        if field == "hits":
            assert [hit.rule for hit in decision.hits] == value, decision.reason
        elif field == "tags":
            assert list(decision.tags) == value, decision.reason
        elif field == "acknowledge":
            assert decision.acknowledge == value
        else:
            assert getattr(decision, field) == value, (field, decision.reason)


def test_every_hit_says_which_condition_decided(rules: RuleSet) -> None:
    decision = rules.evaluate(
        Facts(case(subject="退款", text="请尽快处理", language="zh"), customer=KNOWN_GOLD)
    )
    assert [(hit.rule, hit.because) for hit in decision.hits] == [
        ("acknowledge", "channel = email"),
        ("billing", 'any(keyword "退款" in subject)'),
        ("premium-customers", "any(tier = gold)"),
        ("chinese-desk", "language = zh"),
    ]
    assert decision.reason.startswith("acknowledge: channel = email; billing: any(")


def sla(rules: RuleSet, received_at: str, **facts: Any) -> Decision:
    return rules.evaluate(Facts(case(received_at=received_at), **facts))


def test_sla_due_times_run_on_the_office_calendar(rules: RuleSet) -> None:
    # P3, 8 h to respond: Tuesday 10:00-16:00 (6 h) then Wednesday 08:00-10:00.
    decision = sla(rules, TUESDAY_10_CPH)
    assert decision.sla is not None
    assert decision.sla.response_due == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    # 40 h: Tue 6 + Wed 8 + Thu 8 + Fri 7 + Mon 8 = 37, then 3 h on Tuesday 1 December.
    assert decision.sla.resolution_due == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_sla_skips_weekends_and_holidays(rules: RuleSet) -> None:
    # Wednesday 23 December 15:00: one hour that day, then 24-26 are holidays, 27 a Sunday.
    decision = sla(rules, "2026-12-23T14:00:00Z")
    assert decision.sla is not None
    assert decision.sla.response_due == datetime(2026, 12, 28, 14, 0, tzinfo=UTC)


def test_premium_sla_runs_around_the_clock(rules: RuleSet) -> None:
    decision = sla(rules, SATURDAY, customer=KNOWN_GOLD)
    assert decision.sla is not None and decision.sla.policy == "premium"
    assert decision.sla.response_due == datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def test_acknowledgement_in_the_senders_language_with_the_reference(rules: RuleSet) -> None:
    danish = rules.evaluate(Facts(case(language="da")))
    assert danish.acknowledge is not None
    assert danish.acknowledge.language == "da"
    assert (
        danish.acknowledge.subject
        == "Vi har modtaget din henvendelse [#01JCKEPT0000000000000000WB]"
    )
    assert danish.acknowledge.text.startswith("Hej Ann,")
    korean = rules.evaluate(Facts(case(language="ko")))
    assert korean.acknowledge is not None and korean.acknowledge.language == "en"
