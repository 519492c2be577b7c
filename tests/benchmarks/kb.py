"""Benchmark of the knowledge base at 10,000 articles: index build time and lookup latency.

Writes 10,000 generated Markdown articles (English, Danish, German, Chinese and Japanese, with
titles, tags, keywords and 80 to 200 words of text drawn from a vocabulary of about 30,000
made-up and real words, so the index holds a realistic number of distinct terms) to a
temporary folder, then measures, in one thread:

- reading and checking the folder (`read_folder`) and building the index (`KbIndex`);
- `--queries` lookups of what customers type: one to four words of an article, some with a
  typo, some cut short as while typing, one or two Chinese or Japanese characters; p50, p99
  and the slowest;
- next to it the bare baseline from the same run: the exact words looked up in a plain dict
  of sets, with no stems, typos, prefixes or scores.

    .venv/bin/python -m tests.benchmarks.kb [--articles 10000] [--queries 2000]

Targets: build within 10 s, lookup p99 within 2 ms. It is not a test: pytest does not collect
it. Figures depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from dispatcher.knowledge.articles import read_folder
from dispatcher.knowledge.index import KbIndex
from dispatcher.knowledge.terms import runs

SEED = 10_000
LATIN = {"en", "da", "de"}
CJK_CHARS = "打印机网络发票退款密码账户登录请求書支払料金契約変更解約回線無線接続障害設定確認"
KANA = "のがをにはでてしますかいうえおアイウエオプリンターネット"
REAL = [
    "printer",
    "router",
    "invoice",
    "refund",
    "password",
    "login",
    "internet",
    "wifi",
    "faktura",
    "betaling",
    "opsigelse",
    "abonnement",
    "rechnung",
    "kündigung",
    "vertrag",
    "upgrade",
    "moving",
    "address",
    "television",
    "channel",
    "email",
    "mailbox",
    "vpn",
]


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words = set(REAL)
    while len(words) < size:
        length = rng.randint(3, 11)
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(length)))
    return sorted(words)


def article(rng: random.Random, number: int, words: list[str]) -> tuple[str, str]:
    language = rng.choice(["en", "en", "da", "de", "zh", "ja"])
    if language in LATIN:
        title = " ".join(rng.choices(words, k=rng.randint(3, 7))).capitalize()
        body = " ".join(rng.choices(words, k=rng.randint(80, 200)))
    else:
        chars = CJK_CHARS + (KANA if language == "ja" else "")
        title = "".join(rng.choices(chars, k=rng.randint(5, 12)))
        body = "。".join(
            "".join(rng.choices(chars, k=rng.randint(8, 30))) for _ in range(rng.randint(5, 12))
        )
    tags = rng.sample(words[:200], 2)
    keywords = rng.sample(words, 3)
    text = (
        f"---\nid: a{number}\ntitle: {title}\nlanguage: {language}\naudience: public\n"
        f"url: /a{number}\ntags: [{', '.join(tags)}]\nkeywords: [{', '.join(keywords)}]\n---\n"
        f"{body}\n"
    )
    return f"{language}/a{number:05d}.md", text


def typed(rng: random.Random, index: KbIndex) -> str:
    """What a customer might type, taken from a random article."""
    chosen = rng.choice(index.articles)
    if chosen.language in ("zh", "ja"):
        start = rng.randrange(max(1, len(chosen.body) - 2))
        return chosen.body[start : start + rng.choice([1, 2, 2, 4])]
    words = chosen.body.split()
    picked = rng.sample(words, min(len(words), rng.randint(1, 4)))
    kind = rng.random()
    if kind < 0.25:  # a typo: two letters swapped
        word = picked[0]
        if len(word) > 4:
            at = rng.randrange(1, len(word) - 2)
            picked[0] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif kind < 0.4:  # still typing the last word
        picked[-1] = picked[-1][: max(3, len(picked[-1]) // 2)]
    return " ".join(picked)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    options = parser.parse_args()
    rng = random.Random(SEED)
    words = vocabulary(rng, 30_000)
    with tempfile.TemporaryDirectory() as folder:
        for number in range(options.articles):
            name, text = article(rng, number, words)
            path = Path(folder) / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        started, cpu = time.perf_counter(), time.process_time()
        articles, problems = read_folder(Path(folder))
        read_s, read_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        index = KbIndex(articles)
        build_s, build_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert not problems, problems[:3]
    print(f"{len(articles)} articles, {index.terms} terms")
    print(
        f"read and check: {read_s:.2f} s ({read_cpu:.2f} s CPU); index build: {build_s:.2f} s "
        f"({build_cpu:.2f} s CPU) (target 10 s)"
    )

    queries = [typed(rng, index) for _ in range(options.queries)]
    for query in queries[:50]:  # warm up
        index.search(query)
    timings, cpu_timings, found = [], [], 0
    for query in queries:
        started, cpu = time.perf_counter(), time.thread_time()
        matches = index.search(query)
        cpu_timings.append((time.thread_time() - cpu) * 1000)
        timings.append((time.perf_counter() - started) * 1000)
        found += bool(matches)
    print(
        f"lookup: p50 {statistics.median(timings):.3f} ms, p99 {percentile(timings, 0.99):.3f} ms, "
        f"max {max(timings):.3f} ms (target p99 2 ms); {found}/{len(queries)} found something"
    )
    print(
        f"lookup CPU time (this thread only, not waiting for the core): "
        f"p50 {statistics.median(cpu_timings):.3f} ms, p99 {percentile(cpu_timings, 0.99):.3f} ms"
    )
    slowest = sorted(zip(cpu_timings, queries, strict=True), reverse=True)[:3]
    print("slowest: " + "; ".join(f"{q!r} {t:.2f} ms" for t, q in slowest))

    exact: dict[str, set[int]] = defaultdict(set)
    for number, item in enumerate(index.articles):
        for token, _ in runs(f"{item.title} {item.body}"):
            exact[token].add(number)
    bare = []
    for query in queries:
        started = time.perf_counter()
        hits: dict[int, int] = defaultdict(int)
        for token, _ in runs(query):
            for number in exact.get(token, ()):
                hits[number] += 1
        sorted(hits, key=hits.__getitem__, reverse=True)[:3]
        bare.append((time.perf_counter() - started) * 1000)
    print(
        f"bare baseline (exact words in a dict of sets): p50 {statistics.median(bare):.3f} ms, "
        f"p99 {percentile(bare, 0.99):.3f} ms"
    )


if __name__ == "__main__":
    main()
