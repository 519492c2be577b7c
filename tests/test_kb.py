"""The knowledge base: articles read and checked, the fuzzy index, and its tools.

The example knowledge base shipped in kb/ is searched with the labelled queries of
kb-queries.toml (typos, word forms, one or two characters of Chinese and Japanese, queries in
another language than the article): the right article must be in the top 3 for 90% of them.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.knowledge.articles import KbError, parse, read_folder
from dispatcher.knowledge.index import KbIndex
from tests.daemon import run_ingest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "kb"
QUERIES = ROOT / "kb-queries.toml"
GOOD = """---
id: printer-offline
title: The printer says it is offline
language: en
audience: public
url: https://help.example.com/printer-offline
tags: [printer, hardware]
products: [PrintMax 200]
keywords: [打印机]
---
Turn the printer off and on again.
"""


@pytest.fixture(scope="module")
def example() -> KbIndex:
    articles, problems = read_folder(EXAMPLE)
    assert problems == []
    return KbIndex(articles)


def test_an_article_is_read_with_its_front_matter() -> None:
    article, problems = parse(GOOD, "p.md")
    assert problems == [] and article is not None
    assert (article.id, article.language, article.audience) == ("printer-offline", "en", "public")
    assert article.tags == ("printer", "hardware") and article.keywords == ("打印机",)
    assert article.body == "Turn the printer off and on again."


BAD = {
    "a-no-front.md": "Just text\n",
    "b-open.md": "---\nid: x\ntitle: y\n",
    "c-yaml.md": "---\nid: x\ntitle: [unclosed\n---\ntext\n",
    "d-unknown.md": "---\nid: d\ntitle: D\nlanguage: en\nurl: /d\nauthor: me\n---\ntext\n",
    "e-missing.md": "---\ntitle: E\nlanguage: en\nurl: /e\n---\ntext\n",
    "f-no-url.md": "---\nid: f\ntitle: F\nlanguage: en\naudience: public\n---\ntext\n",
    "g-empty.md": "---\nid: g\ntitle: G\nlanguage: en\naudience: internal\n---\n\n",
    "h-language.md": "---\nid: h\ntitle: H\nlanguage: English\nurl: /h\n---\ntext\n",
    "i-first.md": "---\nid: same\ntitle: I\nlanguage: en\nurl: /i\n---\ntext\n",
    "j-again.md": "---\nid: same\ntitle: J\nlanguage: da\nurl: /j\n---\ntekst\n",
}


def write_bad(folder: Path) -> Path:
    folder.mkdir()
    for name, text in BAD.items():
        (folder / name).write_text(text)
    return folder


def test_bad_articles_are_reported_with_file_and_line_and_left_out(tmp_path: Path) -> None:
    folder = write_bad(tmp_path / "kb")
    articles, problems = read_folder(folder)
    assert [a.id for a in articles] == ["same"]  # the first of the two with one id
    shown = [p.removeprefix(f"{folder}/") for p in problems]
    # libyaml and PyYAML's own loader word (and place) a YAML mistake differently.
    assert re.fullmatch(r"c-yaml\.md:[34]: front matter is not valid YAML: .*\]'.*", shown[2])
    shown[2] = "c-yaml.md:LINE: front matter is not valid YAML: REASON"
    assert shown == [
        "a-no-front.md:1: no front matter (the file must start with a line ---)",
        "b-open.md:1: the front matter is not closed (a second line ---)",
        "c-yaml.md:LINE: front matter is not valid YAML: REASON",
        "d-unknown.md:6: author: unknown key (known: id, title, language, audience, url, tags, "
        "products, keywords)",
        "e-missing.md:2: id: missing",
        "f-no-url.md:5: a public article needs a url",
        "g-empty.md:7: the article has no text",
        "h-language.md:4: language: a language tag such as en, da, zh or ja",
        "j-again.md:2: id 'same' is already used by " + str(folder / "i-first.md"),
    ]


def test_a_missing_folder_is_an_error_of_its_own(tmp_path: Path) -> None:
    with pytest.raises(KbError, match="not a folder"):
        read_folder(tmp_path / "nowhere")


def test_kb_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    folder = write_bad(tmp_path / "kb")
    done = run_ingest(ROOT / "settings.toml", "kb", "check", "--path", str(folder))
    assert done.returncode == 1
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 9 and lines[0].endswith(
        "a-no-front.md:1: no front matter (the file must start with a line ---)"
    )
    assert "1 articles OK" in done.stderr.decode() and "9 problem(s)" in done.stderr.decode()


def test_kb_check_passes_on_the_example() -> None:
    done = run_ingest(ROOT / "settings.toml", "kb", "check")
    assert done.returncode == 0, done.stderr
    assert "22 articles OK" in done.stdout.decode()
    assert "(da 4, en 10, ja 4, zh 4; 21 public, 1 internal)" in done.stdout.decode()


def test_kb_search_prints_scores_and_what_matched() -> None:
    done = run_ingest(
        ROOT / "settings.toml", "kb", "search", "fakturaen", "betalingservice", "--lang", "da"
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.decode().splitlines()[:3]
    assert first[0].split()[1:3] == ["da-betaling", "[da,"]
    assert float(first[0].split()[0]) > 0.5
    assert first[1].strip() == (
        "matched: fakturaen (stem faktura, da), betalingservice ~ betalingsservice"
    )
    assert first[2].strip() == "https://help.example.com/da/betaling"


def test_kb_search_says_when_nothing_matches() -> None:
    done = run_ingest(ROOT / "settings.toml", "kb", "search", "xyzzy")
    assert (done.returncode, done.stdout.decode().strip()) == (1, "no article matches")


@pytest.mark.parametrize(
    ("query", "language", "article", "matched"),
    [
        ("forgot my pasword", None, "reset-password", "pasword ~ password"),
        ("passw", None, "reset-password", "passw… password"),
        ("refunded", "en", "refunds", "refunded (stem refund, en)"),
        ("opsigelser", "da", "da-opsigelse", "opsigelser (stem opsig, da)"),
        ("打印", "zh", "zh-printer", "打印"),
        ("請求", "ja", "ja-billing-date", "請求"),
        ("印", "zh", "zh-printer", "印"),
    ],
)
def test_typos_word_forms_and_short_cjk_queries_find_their_article(
    example: KbIndex, query: str, language: str | None, article: str, matched: str
) -> None:
    found = example.search(query, language)
    assert article in [m.article.id for m in found]
    match = next(m for m in found if m.article.id == article)
    assert matched in match.matched and 0 < match.score <= 1


def test_public_only_leaves_internal_articles_out(example: KbIndex) -> None:
    query = "many customers report outage runbook"
    assert example.search(query)[0].article.id == "outage-runbook"
    assert "outage-runbook" not in [m.article.id for m in example.search(query, public_only=True)]


def test_min_score_and_empty_queries(example: KbIndex) -> None:
    assert example.search("") == [] and example.search("!!!") == []
    assert example.search("zzzzqqq") == []
    weak = example.search("password and lots of other words nobody wrote", min_score=0.9)
    assert weak == []


def test_the_labelled_queries_find_their_article_in_the_top_3(example: KbIndex) -> None:
    queries = tomllib.loads(QUERIES.read_text())["query"]
    known = {article.id for article in example.articles}
    assert len(queries) >= 100 and {q["expect"] for q in queries} <= known
    kinds = Counter(q["kind"] for q in queries)
    assert set(kinds) == {"plain", "typo", "form", "short", "other-language"}
    missed = [
        q["text"]
        for q in queries
        if q["expect"] not in [m.article.id for m in example.search(q["text"], q.get("lang"))]
    ]
    assert len(missed) <= len(queries) * 0.1, missed
