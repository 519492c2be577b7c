"""The rule language, feature by feature, on small rule files written for each test: what
earlier rules decided, named lists and conditions, final fields, priorities with their own
clock, business days, headers and fields, word forms, captures; and the mistakes in each."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.triage import Facts, RulesError, RuleSet, load_rules, to_triage
from normalizer.model import CaseOpen
from tests.triage_cases import plain_mail

QUEUES = ["support.general", "billing", "network", "on-call"]
HEAD = """
[triage]
include = ["rules.d/*.toml"]
default_priority = "P3"
default_sla = "office"

[[triage.priorities]]
name = "P1"
definition = "Urgent"
response = "30m"
resolution = "4h"
sla = "around-the-clock"

[[triage.priorities]]
name = "P3"
definition = "Normal"
response = "4bh"
resolution = "3bd"

[[triage.priorities]]
name = "P4"
definition = "Low"
response = "1bd"

[[triage.sla]]
name = "office"
calendar = "office"

[[triage.sla]]
name = "around-the-clock"
calendar = "always"

[triage.calendars.office]
timezone = "Europe/Copenhagen"
holidays = ["2026-12-24", "2026-12-25"]

[triage.calendars.office.hours]
mon = "08:00-16:00"
tue = "08:00-16:00"
wed = "08:00-16:00"
thu = "08:00-16:00"
fri = "08:00-15:00"
"""
SATURDAY = "2026-11-28T12:00:00Z"


def rules_from(tmp_path: Path, rules: str, head: str = HEAD, **files: str) -> RuleSet:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "r.toml").write_text(textwrap.dedent(rules))
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    path = tmp_path / "settings.toml"
    path.write_text(textwrap.dedent(head))
    return load_rules(path, QUEUES, "support.general")


def problems(tmp_path: Path, rules: str, head: str = HEAD, **files: str) -> list[str]:
    with pytest.raises(RulesError) as raised:
        rules_from(tmp_path, rules, head, **files)
    return raised.value.problems


def case(**fields: Any) -> CaseOpen:
    return plain_mail(**fields)


def test_a_condition_on_the_priority_so_far_routes_p1_after_hours_to_on_call(
    tmp_path: Path,
) -> None:
    rules = rules_from(
        tmp_path,
        """
        [lists]
        urgent = ["down", "outage", "urgent"]

        [[rules]]
        name = "urgent"
        when = { keywords = { list = "urgent" } }
        set = { priority = "P1" }

        [[rules]]
        name = "p1-after-hours"
        when = { priority = "P1", outside_business_hours = "office" }
        set = { queue = "on-call" }
        """,
    )
    saturday = rules.evaluate(Facts(case(subject="Server down", received_at=SATURDAY)))
    assert (saturday.queue, saturday.priority) == ("on-call", "P1")
    assert saturday.hits[1].because == "outside business hours (office) and priority is P1"
    tuesday = rules.evaluate(Facts(case(subject="Server down")))
    assert (tuesday.queue, tuesday.priority) == ("support.general", "P1")
    plain = rules.evaluate(Facts(case(received_at=SATURDAY)))
    assert plain.queue == "support.general"  # P3 by default: not P1


def test_conditions_on_queue_bucket_category_and_tags_see_earlier_rules(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "billing"
        when = { keywords = ["invoice"] }
        set = { queue = "billing", bucket = "action", category = "money", tags = ["inv"] }

        [[rules]]
        name = "all-four"
        when = { queue = "billing", bucket = "action", category = "money", tags = ["inv", "x"] }
        set = { tags = ["seen"] }
        """,
    )
    decision = rules.evaluate(Facts(case(subject="Invoice")))
    assert decision.tags == ("inv", "seen")
    assert rules.evaluate(Facts(case())).tags == ()


def test_named_lists_from_the_rules_a_text_file_and_a_csv_column(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [lists]
        vip = { file = "../vip.txt" }
        products = { file = "../products.csv", column = "name" }

        [[rules]]
        name = "vip"
        when = { domain = { list = "vip" } }
        set = { tags = ["vip"] }

        [[rules]]
        name = "product"
        when = { keywords = [{ list = "products" }, "gadget"] }
        set = { tags = ["product"] }
        """,
        **{
            "vip.txt": "# VIP customers' domains\nacme.example\n\n  big.example  \n",
            "products.csv": "sku,name\n1,RouterMax\n2,Fibre Box\n",
        },
    )
    assert rules.evaluate(Facts(case(sender={"kind": "email", "address": "a@big.example"}))).tags
    decision = rules.evaluate(Facts(case(text="My fibre box blinks")))
    assert decision.tags == ("product",)
    assert decision.hits[0].because == 'keyword "fibre box" in text'
    assert rules.evaluate(Facts(case(text="My gadget"))).tags == ("product",)


def test_named_conditions_are_defined_once_and_may_use_each_other(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [conditions]
        after-hours = { outside_business_hours = "office" }
        urgent-after-hours = { condition = "after-hours", keywords = ["urgent"] }

        [[rules]]
        name = "page"
        when = { condition = "urgent-after-hours" }
        set = { tags = ["page"] }
        """,
    )
    decision = rules.evaluate(Facts(case(subject="Urgent", received_at=SATURDAY)))
    assert decision.tags == ("page",)
    assert decision.hits[0].because.startswith("urgent-after-hours(")
    assert rules.evaluate(Facts(case(subject="Urgent"))).tags == ()


def test_a_final_queue_stays_while_later_rules_add_tags(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "billing"
        when = { keywords = ["refund"] }
        set = { queue = "billing", priority = "P4" }
        final = ["queue"]

        [[rules]]
        name = "network"
        when = { keywords = ["outage"] }
        set = { queue = "network", priority = "P1", tags = ["outage"] }
        """,
    )
    decision = rules.evaluate(Facts(case(subject="Refund for the outage")))
    assert (decision.queue, decision.priority, decision.tags) == ("billing", "P1", ("outage",))
    assert "queue stays billing: final since billing" in decision.hits[1].because
    assert dict(decision.set_by) == {"queue": "billing", "priority": "network"}


def test_final_true_locks_what_the_rule_sets_and_trusted_controls_too(tmp_path: Path) -> None:
    head = HEAD + '\n[[triage.trusted]]\ntouchpoint = "support@example.com"\n'
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "hr"
        when = { keywords = ["cv"] }
        set = { queue = "support.general", priority = "P4" }
        final = true
        """,
        head,
    )
    decision = rules.evaluate(Facts(case(subject="My CV", controls={"priority": "P1"})))
    assert decision.priority == "P4"
    assert "priority stays P4: final since hr" in decision.hits[-1].because


def test_a_priority_brings_its_own_sla_policy_unless_a_rule_set_one(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "urgent"
        when = { keywords = ["urgent"] }
        set = { priority = "P1" }

        [[rules]]
        name = "explicit"
        when = { keywords = ["office"] }
        set = { sla = "office" }
        """,
    )
    p1 = rules.evaluate(Facts(case(subject="Urgent", received_at=SATURDAY)))
    assert p1.sla is not None and (p1.sla.policy, p1.sla.calendar) == ("around-the-clock", "always")
    assert p1.sla.response_due == datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    office = rules.evaluate(Facts(case(subject="Urgent office", received_at=SATURDAY)))
    assert office.sla is not None and office.sla.policy == "office"
    assert office.sla.response_due == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # Monday 08:30
    triage = to_triage(p1)
    assert triage.sla is not None and triage.sla.calendar == "always"


def test_a_priority_calendar_sets_the_clock_whatever_the_policy(tmp_path: Path) -> None:
    head = HEAD.replace('sla = "around-the-clock"\n', 'calendar = "always"\n')
    rules = rules_from(
        tmp_path,
        '[[rules]]\nname = "u"\nwhen = { keywords = ["urgent"] }\nset = { priority = "P1" }\n',
        head,
    )
    decision = rules.evaluate(Facts(case(subject="Urgent", received_at=SATURDAY)))
    assert decision.sla is not None
    assert (decision.sla.policy, decision.sla.calendar) == ("office", "always")


def test_business_hours_and_days_count_on_the_calendar(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[[rules]]\nname = "x"\nset = { tags = ["x"] }\n')
    # P3: 4bh from Tuesday 10:00 is 14:00; 3bd is Friday 10:00.
    decision = rules.evaluate(Facts(case()))
    assert decision.sla is not None
    assert decision.sla.response_due == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    assert decision.sla.resolution_due == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    # Wednesday 23 December 15:30: 3bd skips the holidays and the weekend: Mon 28, Tue 29,
    # Wed 30 at 15:30.
    late = rules.evaluate(Facts(case(received_at="2026-12-23T14:30:00Z")))
    assert late.sla is not None
    assert late.sla.resolution_due == datetime(2026, 12, 30, 14, 30, tzinfo=UTC)
    # Saturday: counted from Monday's opening.
    weekend = rules.evaluate(Facts(case(received_at=SATURDAY)))
    assert weekend.sla is not None
    assert weekend.sla.resolution_due == datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def test_a_priority_without_a_resolution_target(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[[rules]]\nname = "low"\nset = { priority = "P4" }\n')
    decision = rules.evaluate(Facts(case()))
    assert decision.sla is not None and decision.sla.resolution_due is None
    assert decision.sla.response_due == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 1bd
    assert to_triage(decision).sla.resolution_due is None  # type: ignore[union-attr]


def test_default_bucket_and_category_without_a_catch_all_rule(tmp_path: Path) -> None:
    head = HEAD.replace(
        'default_sla = "office"\n',
        'default_sla = "office"\ndefault_bucket = "consulting"\ndefault_category = "general"\n',
    )
    rules = rules_from(
        tmp_path,
        '[[rules]]\nname = "b"\nwhen = { keywords = ["broken"] }\nset = { bucket = "problem" }\n',
        head,
    )
    plain = rules.evaluate(Facts(case()))
    assert (plain.bucket, plain.category) == ("consulting", "general")
    assert rules.evaluate(Facts(case(subject="Broken"))).bucket == "problem"


def test_header_conditions_by_presence_glob_and_regex(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "list"
        when = { header = { name = "list-id" } }
        set = { tags = ["list"] }

        [[rules]]
        name = "outlook"
        when = { header = { name = "X-Mailer", glob = "*outlook*" } }
        set = { tags = ["outlook"] }

        [[rules]]
        name = "ticket"
        when = { header = { name = "X-Ticket", regex = '^T-(?P<ticket>\\d+)$' } }
        set = { tags = ["ticket"] }
        """,
    )
    headers = [
        {"name": "List-Id", "value": "<news.example>"},
        {"name": "X-Mailer", "value": "Microsoft Outlook 16.0"},
        {"name": "X-Ticket", "value": "T-4711"},
    ]
    decision = rules.evaluate(Facts(case(headers=headers)))
    assert decision.tags == ("list", "outlook", "ticket")
    assert dict(decision.fields) == {"ticket": "4711"}
    assert rules.evaluate(Facts(case())).tags == ()


def test_field_conditions_on_the_apis_structured_fields(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "enterprise"
        when = { field = { name = "plan", glob = ["enterprise", "gold*"] } }
        set = { tags = ["vip"] }

        [[rules]]
        name = "has-order"
        when = { field = { name = "order" } }
        set = { tags = ["order"] }
        """,
    )
    web = {"channel": "web", "adapter": "web-api"}
    decision = rules.evaluate(Facts(case(**web, fields={"plan": "Gold-2026", "order": "1"})))
    assert decision.tags == ("vip", "order")
    assert decision.hits[0].because == 'field plan "Gold-2026" matches gold*'
    assert rules.evaluate(Facts(case(**web, fields={"plan": "basic"}))).tags == ()


@pytest.mark.parametrize(
    ("words", "text", "found"),
    [
        ('{ words = ["pris"], stem = "da" }', "Hvad er prisen?", True),
        ('{ words = ["pris"], stem = "da" }', "Jeres priser er for høje", True),
        ('{ words = ["pris"], stem = "da" }', "Send en prisliste", False),
        ('["pris*"]', "Send en prisliste", True),
        ('["pris*"]', "Det er en kopi", False),
        ('["pris"]', "Hvad er prisen?", False),
        ('{ words = ["refund"], stem = "en" }', "It was refunded twice", True),
        ('{ words = ["charged twice"], stem = "en" }', "They charge twice a month", True),
        ('{ words = ["Rechnung"], stem = "de" }', "Die Rechnungen sind falsch", True),
        ('["接続でき"]', "インターネットに接続できません", True),
        ('["接続でき"]', "接続できない", True),
    ],
)
def test_word_forms(tmp_path: Path, words: str, text: str, found: bool) -> None:
    rule = f'[[rules]]\nname = "w"\nwhen = {{ keywords = {words} }}\nset = {{ tags = ["w"] }}\n'
    rules = rules_from(tmp_path, rule)
    assert bool(rules.evaluate(Facts(case(text=text))).tags) is found


def test_a_stemmed_match_names_the_keyword(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        '[[rules]]\nname = "w"\nwhen = { keywords = { words = ["faktura"], stem = "da" } }\n',
    )
    decision = rules.evaluate(Facts(case(text="Fakturaerne er forkerte")))
    assert decision.hits[0].because == 'keyword "faktura" (stems, da) in text'


def test_captured_fields_feed_later_rules_the_template_and_the_case(tmp_path: Path) -> None:
    head = (
        HEAD
        + """
[triage.templates.order]
subject = { en = "Order {fields[order]} [#{reference}]" }
text = { en = "About order {fields[order]} ({fields[missing]})." }
"""
    )
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "order"
        when = { subject_regex = 'order\\s*#?(?P<order>\\d{5,})' }
        set = { tags = ["order"] }
        acknowledge = "order"

        [[rules]]
        name = "big-order"
        when = { field = { name = "order", regex = '^9' } }
        set = { tags = ["big"] }
        """,
        head,
    )
    decision = rules.evaluate(Facts(case(subject="Order #912345 late", language="en")))
    assert dict(decision.fields) == {"order": "912345"}
    assert decision.tags == ("order", "big")
    assert decision.acknowledge is not None
    assert decision.acknowledge.subject == "Order 912345 [#01JCKEPT0000000000000000WB]"
    assert decision.acknowledge.text == "About order 912345 ()."
    assert to_triage(decision).fields == {"order": "912345"}
    rendered = rules.acknowledgement("order", case(language="en"), "C-7", {"order": "555"})
    assert rendered is not None and rendered.subject == "Order 555 [#C-7]"


def test_what_a_rule_that_did_not_match_captured_is_dropped(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        name = "needs-both"
        when = { subject_regex = '(?P<order>\\d{5,})', keywords = ["refund"] }
        set = { tags = ["x"] }

        [[rules]]
        name = "negated"
        when = { not = { subject_regex = '(?P<ref>C-\\d+)' } }
        set = { tags = ["y"] }

        [[rules]]
        name = "branch"
        when = { any = [
          { all = [{ subject_regex = '(?P<lost>\\d+)' }, { keywords = ["never"] }] },
          { keywords = ["late"] },
        ] }
        set = { tags = ["z"] }
        """,
    )
    decision = rules.evaluate(Facts(case(subject="12345 is late")))
    assert decision.fields == ()
    assert decision.tags == ("y", "z")


def test_mistakes_in_the_new_parts_are_named_with_the_closest_name(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [lists]
        words = ["a"]

        [conditions]
        loop-a = { condition = "loop-b" }
        loop-b = { condition = "loop-a" }

        [[rules]]
        name = "r1"
        when = { keywords = { list = "word" }, priority = "P2", queue = "biling" }
        set = { tags = ["x"] }

        [[rules]]
        name = "r2"
        when = { condition = "after-hour", header = { name = "X", glob = "a", regex = "b" } }
        final = true

        [[rules]]
        name = "r3"
        when = { all = [
          { keywords = { words = ["pris"], stem = "xx" } },
          { field = { name = "plan", regx = "a" } },
        ] }
        """,
        HEAD + '\n[triage.templates.t]\ntext = { en = "Hi {nam}" }\n',
    )
    text = "\n".join(found)
    assert "unknown list 'word'; did you mean 'words'?" in text
    assert "unknown priority 'P2'" in text
    assert "unknown queue 'biling'; did you mean 'billing'?" in text
    assert "named conditions refer to each other in a circle: loop-a -> loop-b -> loop-a" in text
    assert "give glob or regex, not both" in text
    assert "final = true locks what the rule sets, and it sets none of" in text
    assert "no stemmer for 'xx'" in text
    assert "unknown key 'regx'; did you mean 'regex'? (valid: glob, name, regex)" in text
    assert "unknown placeholder '{nam}'; did you mean '{name}'?" in text
    # Schema problems (rule r2's header) and unknown names (rule r1's) in the same report.
    assert "rules.1.when.header" in text and "rule 'r1'" in text


def test_a_list_file_that_is_missing_or_lacks_the_column(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [lists]
        gone = { file = "nowhere.txt" }
        csv = { file = "../p.csv", column = "nam" }
        """,
        **{"p.csv": "sku,name\n1,Box\n"},
    )
    text = "\n".join(found)
    assert "nowhere.txt: cannot be read" in text
    assert "unknown column 'nam'; did you mean 'name'?" in text


def test_bad_durations_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "", HEAD.replace('response = "4bh"', 'response = "4 days"'))
    assert any('a duration such as "45m", "4h", "4bh", "3bd"' in p for p in found), found
