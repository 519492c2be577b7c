"""The rule loader refuses every mistake with file, line and reason; the CLI says so too."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dispatcher.triage import RulesError, load_rules
from tests.daemon import run_ingest
from tests.shipped import with_acknowledgements

QUEUES = ["support.general", "billing", "noise"]
HEAD = """
[queues]
teams = ["support.general", "billing", "noise"]

[triage]
include = ["rules.d/*.toml"]

[[triage.priorities]]
name = "P1"
definition = "Urgent"
response = "30m"
resolution = "4h"
"""


def write(tmp_path: Path, settings: str, **included: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(textwrap.dedent(HEAD) + textwrap.dedent(settings))
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    for name, text in included.items():
        (tmp_path / "rules.d" / f"{name}.toml").write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(RulesError) as raised:
        load_rules(path, QUEUES, "support.general")
    return raised.value.problems


def test_a_valid_set_loads_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[triage.rules]]\nname = "first"\nset = { tags = ["a"] }\n',
        **{
            "20-b": '[[rules]]\nname = "third"\nset = { queue = "noise" }\n',
            "10-a": '[[rules]]\nname = "second"\nwhen = { keywords = ["x"] }\n',
        },
    )
    rules = load_rules(path, QUEUES, "support.general")
    assert [rule.name for rule in rules.rules] == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("included", "expected"),
    [
        (
            '[[rules]]\nname = "a"\n\n[[rules]]\nname = "b"\nwhen = { chanel = "sms" }\n',
            "rules.d/r.toml:6: rules.1.when.chanel: unknown key 'chanel'; did you mean 'channel'?",
        ),
        (
            '[[rules]]\nname = "a"\nset = { queue = "nowhere" }\n',
            "rules.d/r.toml:1: rule 'a': unknown queue 'nowhere' (known: billing, noise, support",
        ),
        (
            '[[rules]]\nname = "a"\nset = { priority = "P9" }\n',
            "rule 'a': unknown priority 'P9' (known: P1)",
        ),
        (
            '[[rules]]\nname = "a"\nacknowledge = "thanks"\n',
            "rule 'a': unknown template 'thanks'",
        ),
        (
            '[[rules]]\nname = "a"\nset = { bucket = "misc" }\n',
            "rule 'a': unknown bucket 'misc'",
        ),
        (
            '[[rules]]\nname = "a"\n[[rules]]\nname = "a"\n',
            "rules.d/r.toml:3: rule 'a': a second rule named 'a'",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { regex = "(a+)+$" }\n',
            "repeats a repeated group and could run away",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { regex = "(unclosed" }\n',
            "regex '(unclosed': missing )",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { business_hours = "office" }\n',
            "unknown calendar 'office'",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { contacts = { days = 14, at_least = 2 } }\n',
            "days must be one of 7, 30, 90",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { flag = "spamm" }\n',
            "unknown flag 'spamm'",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = { open_cases_at_least = 25 }\n',
            "open_cases_at_least: Value error, at most 20: a history lists the customer's",
        ),
        (
            '[[rules]]\nname = "a"\nwhen = {}\n',
            "an empty condition",
        ),
        (
            '[calendars.office]\ntimezone = "Mars/Olympus"\nhours = { mon = "08:00-16:00" }\n',
            "unknown timezone 'Mars/Olympus'",
        ),
        (
            '[calendars.office]\ntimezone = "UTC"\nhours = { mon = "8-16" }\n',
            "opening hours look like 08:00-17:00",
        ),
        ("[[rules]]\nname = \n", "rules.d/r.toml: not valid TOML"),
    ],
)
def test_mistakes_are_named_with_file_and_line(
    tmp_path: Path, included: str, expected: str
) -> None:
    found = problems(write(tmp_path, "", r=included))
    assert any(expected in problem for problem in found), found


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    rules = "".join(f'[[rules]]\nname = "r{n}"\nset = {{ queue = "q{n}" }}\n\n' for n in range(3))
    assert len(problems(write(tmp_path, "", r=rules))) == 3


def test_rules_check_exits_nonzero_listing_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "", r='[[rules]]\nname = "a"\nset = { queue = "x", priority = "P7" }\n')
    checked = run_ingest(path, "rules", "check")
    assert checked.returncode == 1
    errors = checked.stderr.decode()
    assert "unknown queue 'x'" in errors and "unknown priority 'P7'" in errors
    assert "2 problem(s) in the rules" in errors


def test_rules_check_passes_quietly_on_the_shipped_example(tmp_path: Path) -> None:
    """Out of the box nothing can send an acknowledgement, and no rule asks for one; the
    shipped rule, uncommented, warns until a relay is configured, then is quiet."""
    checked = run_ingest(Path(__file__).parent.parent / "settings.toml", "rules", "check")
    assert checked.returncode == 0, checked.stderr
    assert "rules OK from" in checked.stdout.decode()
    assert checked.stderr == b"", "the shipped settings warn"

    settings = with_acknowledgements(tmp_path)
    warned = run_ingest(settings, "rules", "check").stderr.decode().splitlines()
    assert len(warned) == 3 and all("rule 'acknowledge'" in line for line in warned), warned

    text = settings.read_text()
    settings.write_text(text.replace('["email", "chat", "web"]', '["email", "web"]'))
    relay = {
        "INGEST_OUTBOUND__MAIL__ENABLED": "true",
        "INGEST_OUTBOUND__MAIL__FROM_ADDRESS": "s@x.example",
    }
    checked = run_ingest(settings, "rules", "check", env=relay)
    assert (checked.returncode, checked.stderr) == (0, b"")


SAMPLE = """\
From: =?utf-8?b?55Sw5Lit?= <tanaka@kokyaku.example.jp>
To: support@localhost
Subject: =?utf-8?b?6KuL5rGC5pu444Gr44Gk44GE44Gm?=
Message-ID: <t1@kokyaku.example.jp>
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

請求書の金額が間違っているようです。返金をお願いできますか。
"""


def test_rules_test_explains_an_eml_sample(tmp_path: Path) -> None:
    shipped = with_acknowledgements(tmp_path)
    sample = tmp_path / "invoice.eml"
    sample.write_text(SAMPLE, encoding="utf-8")

    tested = run_ingest(
        shipped, "rules", "test", str(sample), "--tier", "gold", "--at", "2026-11-24T10:00+0100"
    )

    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert "language ja" in out
    assert "queue     billing" in out
    assert "sla       premium (always clock): respond by 2026-11-24 17:00 UTC" in out
    assert "ack       received (ja): お問い合わせを受け付けました" in out
    assert '2. billing: any(keyword "請求書" in subject)' in out
    assert "3. premium-customers: any(tier = gold)" in out


def test_rules_test_reads_a_web_message_and_prints_json(tmp_path: Path) -> None:
    shipped = Path(__file__).parent.parent / "settings.toml"
    sample = tmp_path / "message.json"
    sample.write_text(
        json.dumps({"sender": {"email": "lead@prospect.example"}, "text": "Please send a quote."})
    )
    tested = run_ingest(shipped, "rules", "test", str(sample), "--json")
    assert tested.returncode == 0, tested.stderr
    decision = json.loads(tested.stdout)
    assert decision["queue"] == "sales"
    assert [hit["rule"] for hit in decision["rules"]] == ["sales-enquiries", "prospects"]
    assert decision["acknowledge"] is None, "the shipped rules ask for no acknowledgement"


def test_rules_test_refuses_an_unreadable_sample(tmp_path: Path) -> None:
    shipped = Path(__file__).parent.parent / "settings.toml"
    sample = tmp_path / "broken.json"
    sample.write_text("{not json")
    tested = run_ingest(shipped, "rules", "test", str(sample))
    assert tested.returncode == 1
    assert "neither a case-open nor a web message" in tested.stderr.decode()
