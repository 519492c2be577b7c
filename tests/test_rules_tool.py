"""The admins' tools: golden test files (`rules test --expect`, `rules check`, reloads),
plain-text samples of every channel with the daemon's language detection, explanations
(`--why-not`, `--verbose`), local arrival times, and a CLI that starts without the heavy
imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.triage import load_rules, watched_files
from dispatcher.triage.live import LiveRules
from ingest.rules_tool import golden_check
from ingest.settings import load_settings
from normalizer.envelope import Envelope, Options, normalize
from normalizer.twilio import TwilioMessage
from tests.daemon import clean_environment, run_ingest

SHIPPED = Path(__file__).parent.parent / "settings.toml"
SMALL = """
[queues]
teams = ["support.general", "billing", "sales"]

[normalizer]
languages = ["en", "da", "de"]

[triage]
include = ["rules.d/*.toml"]
tests = ["golden.toml"]

[[triage.rules]]
name = "billing"
when = {{ keywords = {{ words = ["faktura", "invoice"], stem = "da" }} }}
set = {{ queue = "billing" }}

[[triage.rules]]
name = "danish"
when = {{ language = "da" }}
set = {{ tags = ["danish"] }}
{extra}
"""
GOLDEN = """
[[test]]
name = "a Danish invoice by SMS"
channel = "sms"
text = "Hej, jeg har fået to fakturaer for samme måned"
expect = { queue = "billing", tags = ["danish"] }

[[test]]
name = "an English question"
text = "Where can I find my order history please?"
expect = { queue = "support.general", tags = [] }
"""


def small(tmp_path: Path, golden: str = GOLDEN, extra: str = "") -> Path:
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "golden.toml").write_text(textwrap.dedent(golden))
    path = tmp_path / "settings.toml"
    path.write_text(textwrap.dedent(SMALL.format(extra=extra)))
    return path


def test_the_shipped_golden_tests_pass_as_a_table() -> None:
    tested = run_ingest(SHIPPED, "rules", "test", "--expect", "rules-tests.toml")
    assert tested.returncode == 0, tested.stdout.decode() + tested.stderr.decode()
    out = tested.stdout.decode()
    assert out.splitlines()[0].split() == ["test", "queue", "priority", "bucket", "tags"]
    assert "ok  an English refund goes to billing" in out
    assert " of " in out.splitlines()[-1] and "passed (rules-tests.toml)" in out


def test_a_mismatch_is_a_fail_row_with_the_difference_and_exit_1(tmp_path: Path) -> None:
    wrong = GOLDEN.replace('queue = "support.general"', 'queue = "sales"')
    path = small(tmp_path, wrong)
    tested = run_ingest(path, "rules", "test", "--expect", str(tmp_path / "golden.toml"))
    assert tested.returncode == 1
    out = tested.stdout.decode()
    assert "ok    a Danish invoice by SMS" in out
    assert "FAIL  an English question" in out
    assert "golden.toml:8: queue support.general, expected sales" in out
    assert "1 of 2 passed" in out


def test_a_golden_file_with_mistakes_says_where(tmp_path: Path) -> None:
    path = small(tmp_path, '[[test]]\nname = "x"\ntext = "hi"\nexpct = {}\n')
    tested = run_ingest(path, "rules", "test", "--expect", str(tmp_path / "golden.toml"))
    assert tested.returncode == 1
    out = tested.stdout.decode()
    assert "golden.toml:4: test.0.expct: unknown key 'expct'; did you mean 'expect'?" in out


def test_rules_check_runs_the_golden_tests(tmp_path: Path) -> None:
    path = small(tmp_path)
    checked = run_ingest(path, "rules", "check")
    assert checked.returncode == 0, checked.stderr
    assert "2 golden test(s) passed" in checked.stdout.decode()
    small(tmp_path, GOLDEN.replace('tags = ["danish"]', 'tags = ["danish", "vip"]'))
    checked = run_ingest(path, "rules", "check")
    assert checked.returncode == 1
    errors = checked.stderr.decode()
    assert "test 'a Danish invoice by SMS': tags danish, expected danish, vip" in errors
    assert "1 problem(s) in the rules" in errors


def test_a_reload_that_breaks_a_golden_test_is_refused(tmp_path: Path) -> None:
    path = small(tmp_path)
    settings = load_settings(path)
    golden = golden_check(settings)
    live = LiveRules(
        lambda: load_rules(path, settings.queues.declared_teams(), "support.general", golden),
        lambda: watched_files(path),
    )
    assert golden.passed == 2
    (tmp_path / "rules.d" / "late.toml").write_text(
        '[[rules]]\nname = "sms-to-sales"\nwhen = { channel = "sms" }\nset = { queue = "sales" }\n'
    )
    assert live.reload("test") is False
    health = live.health()
    assert health["status"] == "error" and health["rules"] == 2
    assert "test 'a Danish invoice by SMS': queue sales, expected billing" in str(health["error"])
    (tmp_path / "rules.d" / "late.toml").unlink()
    assert live.reload("test") is True


def test_the_golden_files_and_list_files_are_watched(tmp_path: Path) -> None:
    path = small(tmp_path, extra='\n[triage.lists]\nvip = { file = "vip.txt" }\n')
    (tmp_path / "rules.d" / "a.toml").write_text('[lists]\nx = { file = "../x.csv" }\n')
    watched = watched_files(path)
    assert tmp_path / "golden.toml" in watched
    assert tmp_path / "vip.txt" in watched
    assert tmp_path / "rules.d" / "../x.csv" in watched


@pytest.mark.parametrize(
    ("channel", "text", "language"),
    [
        ("sms", "Hej, min internetforbindelse virker ikke siden i går", "da"),
        ("whatsapp", "Hallo, meine Rechnung ist leider falsch berechnet worden", "de"),
        ("voice", "Hello, I am calling about my broken router, please call back", "en"),
        ("chat", "Hej, min internetforbindelse virker ikke siden i går", "da"),
        ("web", "Hallo, meine Rechnung ist leider falsch berechnet worden", "de"),
        ("email", "Hello, I am writing about my broken router, please help", "en"),
        ("logged", "Hej, min internetforbindelse virker ikke siden i går", "da"),
    ],
)
def test_a_plain_text_sample_of_any_channel_gets_the_daemons_language(
    tmp_path: Path, channel: str, text: str, language: str
) -> None:
    path = small(tmp_path)
    tested = run_ingest(path, "rules", "test", "--channel", channel, "--text", text)
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert f"message   {channel}/" in out
    assert f"language {language} (detected among en, da, de)" in out


def test_the_tool_detects_as_the_daemons_normaliser_does(tmp_path: Path) -> None:
    text = "Hej, jeg har fået to fakturaer for samme måned"
    message = TwilioMessage(
        message_sid="SM1", sender="+4520123456", recipient="+4535550100", body=text
    )
    envelope = Envelope("sms", "twilio", "+4535550100", datetime.now(UTC), message)
    options = Options(languages=("en", "da", "de"))
    daemon = normalize(envelope, "01JCKEPT0000000000000000WB", options)
    path = small(tmp_path)
    tested = run_ingest(path, "rules", "test", "--channel", "sms", "--text", text)
    assert f"language {daemon.case.language} (detected" in tested.stdout.decode()


def test_a_case_open_sample_without_a_language_is_detected_too(tmp_path: Path) -> None:
    sample = tmp_path / "case.json"
    sample.write_text(
        json.dumps(
            {
                "schema": "case-open/1",
                "id": "01JCKEPT0000000000000000WB",
                "received_at": "2026-11-24T09:00:00Z",
                "channel": "sms",
                "adapter": "twilio",
                "source_id": "SM1",
                "touchpoints": [{"kind": "number", "address": "+4535550100"}],
                "sender": {"kind": "phone", "address": "+4520123456"},
                "text": "Hej, jeg har fået to fakturaer for samme måned",
            }
        )
    )
    tested = run_ingest(small(tmp_path), "rules", "test", str(sample))
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert "language da (detected among en, da, de)" in out and "queue     billing" in out


def test_the_facts_are_echoed_and_a_local_time_is_the_calendars() -> None:
    tested = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--text",
        "Everything is dark, total outage",
        "--subject",
        "Outage",
        "--at",
        "2026-11-28 13:00",
        "--tier",
        "gold",
        "--contacts-7d",
        "2",
        "--last-queue",
        "network",
    )
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert "arrives 2026-11-28 13:00 CET (2026-11-28 12:00 UTC); language en (detected" in out
    assert "customer known, tier gold; 0 open case(s), contacts 2/0/0 (7/30/90 days)" in out
    assert "last queue network" in out
    assert "priority  P1" in out and "page-on-call" in out


def test_at_takes_a_zone_or_an_offset_and_refuses_nonsense() -> None:
    zoned = run_ingest(
        SHIPPED, "rules", "test", "--text", "Hi there", "--at", "2026-11-28 13:00 UTC"
    )
    assert "arrives 2026-11-28 14:00 CET (2026-11-28 13:00 UTC)" in zoned.stdout.decode()
    offset = run_ingest(SHIPPED, "rules", "test", "--text", "Hi", "--at", "2026-11-28T13:00+01:00")
    assert "arrives 2026-11-28 13:00 CET" in offset.stdout.decode()
    bad = run_ingest(SHIPPED, "rules", "test", "--text", "Hi", "--at", "saturday")
    assert bad.returncode == 1
    assert "not a time: 'saturday'" in bad.stderr.decode()


def test_why_not_names_the_first_failing_condition_with_what_the_message_has() -> None:
    tested = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--channel",
        "sms",
        "--text",
        "Hvad koster jeres abonnement?",
        "--why-not",
        "sales-enquiries",
    )
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert (
        "sales-enquiries: none of: wants a keyword of [quote, pricing, price list and 5 more]"
        in out
    )


def test_why_not_explains_one_rule_and_verbose_every_rule() -> None:
    tested = run_ingest(
        SHIPPED, "rules", "test", "--text", "Where is my parcel?", "--why-not", "billing"
    )
    assert tested.returncode == 0, tested.stderr
    out = tested.stdout.decode()
    assert "billing: none of: wants touchpoint matching [billing@*], but touchpoint" in out
    verbose = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--text",
        "Out of office",
        "--header",
        "Auto-Submitted: auto-replied",
        "--verbose",
    )
    lines = verbose.stdout.decode()
    assert "  + noise: flag auto_reply" in lines
    assert "    billing: not looked at: noise stopped the matching" in lines
    assert "    follow-up-stays-with-its-team: not looked at: for follow-ups" in lines
    unknown = run_ingest(SHIPPED, "rules", "test", "--text", "Hi", "--why-not", "biling")
    assert unknown.returncode == 1
    assert "unknown rule 'biling'; did you mean 'billing'?" in unknown.stderr.decode()


def test_fields_and_headers_from_the_command_line() -> None:
    tested = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--channel",
        "web",
        "--text",
        "New key please",
        "--field",
        "plan=enterprise",
        "--json",
    )
    assert tested.returncode == 0, tested.stderr
    assert "vip" in json.loads(tested.stdout)["tags"]
    marked = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--text",
        "Contract question",
        "--header",
        "X-Priority: 1",
        "--json",
    )
    assert "marked-important" in json.loads(marked.stdout)["tags"]
    refused = run_ingest(
        SHIPPED, "rules", "test", "--channel", "sms", "--text", "x", "--header", "A: b"
    )
    assert refused.returncode == 1 and "a sms message has no headers" in refused.stderr.decode()


def _modules_after(code: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
        capture_output=True,
        check=True,
        env=clean_environment(),
    )
    return set(found.stdout.decode().split())


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    loaded = _modules_after("import ingest.cli")
    assert not loaded & {"sqlalchemy", "numpy", "pydantic", "py3langid", "phonenumbers"}


def test_a_sample_with_its_language_given_loads_no_detection_model(tmp_path: Path) -> None:
    code = (
        "from pathlib import Path; from ingest.settings import load_settings; "
        "from ingest import rules_tool; "
        f"s = load_settings(Path({str(SHIPPED)!r})); "
        f"r = rules_tool.rules_from(s, Path({str(SHIPPED)!r})); "
        "spec = rules_tool.SampleSpec(text='Refund please', language='en'); "
        "rules_tool.run_sample(r, spec, s, Path('.'))"
    )
    loaded = _modules_after(code)
    assert "numpy" not in loaded and "py3langid" not in loaded and "sqlalchemy" not in loaded


def test_a_sample_of_another_channel_loads_no_mail_parser() -> None:
    args = ["rules", "test", "--settings", str(SHIPPED), "--channel", "sms", "--text", "Hej"]
    code = f"from ingest.cli import main; main({args!r}, standalone_mode=False)"
    loaded = _modules_after(code)
    assert "normalizer.twilio" in loaded  # the sample did go through the SMS normaliser
    assert "normalizer.mail" not in loaded and "email.feedparser" not in loaded


def test_a_sample_can_assume_kb_suggestions_and_an_incident() -> None:
    done = run_ingest(
        SHIPPED,
        "rules",
        "test",
        "--text",
        "Our internet is down, E-1043",
        "--incident",
        "12:11",
        "--kb",
        "router-restart:0.9:network",
        "--at",
        "2026-11-24 10:00",
        "-v",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "  kb router-restart 0.9; incident of 12 messages, 11 customers" in out
    assert "+ outage-incident: incident I-1 of 12 messages from 11 customers" in out
    assert "- answered-by-kb: " in out  # not while an incident runs


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--kb", "refunds:high", "--kb takes ID:SCORE[:TAG,TAG], not 'refunds:high'"),
        ("--kb", "refunds:1.5", "kb.0.score"),
        ("--incident", "many", "--incident takes SIZE[:CUSTOMERS], not 'many'"),
        ("--incident", "0", "incident.size"),
    ],
)
def test_bad_kb_and_incident_options_are_refused_saying_why(
    option: str, value: str, says: str
) -> None:
    done = run_ingest(SHIPPED, "rules", "test", "--text", "hello", option, value)
    assert done.returncode == 1
    assert says in done.stderr.decode()
