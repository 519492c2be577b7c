"""Benchmark of rule evaluation: a generated set of 500 rules over realistic messages.

What it measures: `RuleSet.evaluate` alone, in one thread, on case-opens built before timing
from the mail fixture corpus (`tests/fixtures/mail/*.eml`, normalised once) plus messages in
English, Danish, Chinese and Japanese. The rule set is the shipped example's calendars,
priorities and templates with `--rules` generated rules in front of the shipped rules: keyword
lists in the four languages (a third of the rules), subject or text regular expressions,
sender domains, channel and tier conditions, business hours, history conditions and nested
`any`/`all`/`not` combinations, so that every message is checked against all of them (none
stops early). Prints messages/s, the mean and p99 cost per message, and the cost per rule.

Run it as a module from the repository root:

    .venv/bin/python -m tests.benchmarks.triage [--rules 500] [--seconds 5]

It is not a test (no `test_` prefix): pytest does not collect it.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dispatcher.triage import Customer, Facts, History, RuleSet, load_rules
from ingest.settings import load_settings
from normalizer.envelope import Envelope, Options, RawMail, normalize
from normalizer.errors import Unprocessable
from normalizer.model import CaseOpen

ROOT = Path(__file__).resolve().parents[2]
WORDS = {
    "en": [
        "refund",
        "invoice",
        "password",
        "login",
        "outage",
        "router",
        "quote",
        "contract",
        "delivery",
        "broken",
        "upgrade",
        "cancel",
        "charged twice",
        "cannot connect",
    ],
    "da": [
        "faktura",
        "adgangskode",
        "nedbrud",
        "levering",
        "opsigelse",
        "tilbud",
        "fejl",
        "betaling",
        "ingen forbindelse",
    ],
    "zh": ["退款", "发票", "密码", "登录", "断网", "报价", "合同", "发货", "取消", "无法连接"],
    "ja": ["返金", "請求書", "パスワード", "ログイン", "障害", "見積", "契約", "配送", "解約"],
}
TEXTS = [
    ("en", "Refund for order 123456", "Hello, I was charged twice for my order. Please refund."),
    ("en", "Cannot log in", "Since yesterday my password is rejected and I cannot log in."),
    ("da", "Faktura 2231", "Hej, fakturaen for november er forkert. Kan I rette den?"),
    ("da", "Nedbrud", "Vi har ingen forbindelse til internettet siden i morges."),
    ("zh", "退款申请", "你好，我上周的订单被重复扣款，请尽快退款。谢谢！"),
    ("zh", "无法登录", "我的账户从昨天开始无法登录，密码也重置不了。"),
    ("ja", "請求書について", "先月の請求書の金額が間違っているようです。ご確認ください。"),
    ("ja", "ログインできません", "昨日からログインできません。パスワードを再設定しても同じです。"),
]


def generated_rules(count: int, seed: int = 7) -> str:
    """`count` rules of mixed kinds, none of which stops the matching."""
    pick = random.Random(seed)
    kinds = [_keywords, _regex, _domain, _combined, _history, _hours]
    return "\n".join(kinds[n % len(kinds)](n, pick) for n in range(count))


def rule(name: str, when: str, actions: str) -> str:
    return f'[[rules]]\nname = "{name}"\nwhen = {{ {when} }}\nset = {{ {actions} }}\n'


def _keywords(n: int, pick: random.Random) -> str:
    language = pick.choice(list(WORDS))
    quoted = ", ".join(f'"{word}"' for word in pick.sample(WORDS[language], 3))
    return rule(f"kw-{n}", f"keywords = [{quoted}]", f'tags = ["kw{n}"]')


def _regex(n: int, pick: random.Random) -> str:
    patterns = [r"order\s*#?\d{6}", r"ticket\s+\d+", r"\b[A-Z]{2}-\d{4}\b", r"inv-\d+"]
    field = pick.choice(["subject_regex", "text_regex", "regex"])
    return rule(f"re-{n}", f"{field} = '{pick.choice(patterns)}'", f'category = "c{n}"')


def _domain(n: int, pick: random.Random) -> str:
    return rule(f"dom-{n}", f'domain = "customer{n}.example"', f'tags = ["d{n}"]')


def _combined(n: int, pick: random.Random) -> str:
    words = ", ".join(f'"{w}"' for w in pick.sample(WORDS["en"], 2))
    when = (
        f'all = [{{ channel = ["email", "web"] }}, '
        f'{{ any = [{{ keywords = [{words}] }}, {{ tier = "gold" }}] }}, '
        f'{{ not = {{ flag = "auto_reply" }} }}]'
    )
    return rule(f"all-{n}", when, 'bucket = "action"')


def _history(n: int, pick: random.Random) -> str:
    least = pick.randint(2, 9)
    return rule(f"hist-{n}", f"contacts = {{ days = 30, at_least = {least} }}", f'tags = ["h{n}"]')


def _hours(n: int, pick: random.Random) -> str:
    when = 'outside_business_hours = "office", known = true'
    return rule(f"hours-{n}", when, f'tags = ["oh{n}"]')


def rule_set(count: int, folder: Path) -> RuleSet:
    settings_path = folder / "settings.toml"
    settings_path.write_text(
        (ROOT / "settings.toml")
        .read_text()
        .replace('include = ["rules.d/*.toml"]', 'include = ["generated/*.toml", "rules.d/*.toml"]')
    )
    shutil.copytree(ROOT / "rules.d", folder / "rules.d")  # rules and the lists they read
    (folder / "generated").mkdir()
    (folder / "generated" / "00-generated.toml").write_text(generated_rules(count))
    settings = load_settings(settings_path)
    return load_rules(settings_path, settings.queues.declared_teams(), settings.queues.default)


def messages() -> list[CaseOpen]:
    cases = []
    received = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    options = Options(languages=("en", "da", "zh", "ja", "de", "fr", "es"))
    for number, path in enumerate(sorted((ROOT / "tests/fixtures/mail").glob("*.eml"))):
        envelope = Envelope(
            "email",
            "smtp",
            "support@example.com",
            received,
            RawMail(path.read_bytes(), ("support@example.com",)),
        )
        try:
            cases.append(normalize(envelope, f"01JCKEPT00000000000000{number:04d}", options).case)
        except Unprocessable:
            continue
    base = cases[0]
    for number, (language, subject, text) in enumerate(TEXTS):
        cases.append(
            base.model_copy(
                update={
                    "subject": subject,
                    "text": text,
                    "language": language,
                    "id": f"01JCKEPT00000000000001{number:04d}",
                }
            )
        )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=500, help="generated rules (default 500)")
    parser.add_argument("--seconds", type=float, default=5.0, help="run time (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        rules = rule_set(args.rules, Path(folder))
        compiled_s = time.perf_counter() - started
    cases = messages()
    customers = [Customer(), Customer(known=True, tier="gold")]
    history = History(open_cases=1, contacts={7: 2, 30: 5, 90: 9})
    facts_list = [(case, customers[n % 2]) for n, case in enumerate(cases)]
    print(f"rule set: {len(rules.rules)} rules ({args.rules} generated + the shipped example)")
    print(f"compiled in {compiled_s * 1000:.0f} ms")
    print(f"messages: {len(cases)} (mail corpus + EN/DA/ZH/JA texts)")
    for case, customer in facts_list:  # warm-up
        rules.evaluate(Facts(case, customer=customer, history=history))
    timings = []
    hits = 0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        for case, customer in facts_list:
            start = time.perf_counter()
            decision = rules.evaluate(Facts(case, customer=customer, history=history))
            timings.append(time.perf_counter() - start)
            hits += len(decision.hits)
    report(timings, len(rules.rules), hits)


def report(timings: list[float], rules: int, hits: int) -> None:
    count, total, mean = len(timings), sum(timings), statistics.mean(timings)
    timings.sort()
    p50, p99 = timings[count // 2], timings[int(count * 0.99)]
    print(f"evaluated {count} messages in {total:.2f} s: {count / total:,.0f} messages/s")
    print(f"per message: mean {mean * 1e6:.0f} us, p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
    print(f"per rule: {mean / rules * 1e9:.0f} ns; rules matched per message: {hits / count:.1f}")


if __name__ == "__main__":
    main()
