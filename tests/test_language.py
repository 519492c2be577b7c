"""Language detection among the configured languages, and when it stays silent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from normalizer.envelope import Envelope, Options, normalize
from normalizer.language import SAMPLE_CHARS, _identifier, detect_language
from normalizer.web import WebMessage

SITE = ("da", "de", "en", "es", "fr", "ja", "zh")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, I cannot log in to my account since yesterday", "en"),
        ("Hej, jeg kan ikke logge ind på min konto siden i går", "da"),
        ("Hallo, ich kann mich seit gestern nicht mehr anmelden", "de"),
        ("Bonjour, je ne peux plus me connecter depuis hier", "fr"),
        ("Hola, no puedo iniciar sesión desde ayer", "es"),
        ("我的账户从昨天开始无法登录", "zh"),
        ("我要退款", "zh"),
        ("昨日からログインできません", "ja"),
        ("ok", None),  # too short to tell
        ("refund", None),
        ("12345 67890 !!!", None),
    ],
)
def test_detects_among_the_site_languages(text: str, expected: str | None) -> None:
    assert detect_language(text, SITE) == expected


def test_only_the_candidates_are_answered() -> None:
    german = "Hallo, ich kann mich seit gestern nicht anmelden"
    assert detect_language(german, SITE) == "de"
    assert detect_language(german, ("en", "da")) != "de"
    assert detect_language("Hello there, how are you doing today?", ()) is None


def test_a_long_text_is_told_by_its_beginning() -> None:
    german = "Hallo, ich kann mich seit gestern nicht mehr anmelden, bitte helfen Sie mir. "
    english = "The quoted reply below was written in English by someone else entirely. "
    opening = german * (SAMPLE_CHARS // len(german) + 1)
    assert detect_language(opening + english * 40, SITE) == "de"
    assert detect_language(german + english * 40, SITE) == "en"  # most of the sample
    assert detect_language(" " * SAMPLE_CHARS + german, SITE) is None  # nothing in the sample


def envelope(message: WebMessage) -> Envelope:
    return Envelope("web", "web-api", "api", datetime(2026, 11, 23, tzinfo=UTC), message)


def test_one_candidate_is_the_answer_the_model_would_give_without_asking_it() -> None:
    text = "Bonjour, ma commande est arrivée cassée, pouvez-vous m'aider ?"
    _identifier.cache_clear()
    assert detect_language(text, ("fr",)) == "fr"
    assert detect_language(text, ("de",)) == "de"
    assert _identifier.cache_info().currsize == 0  # the model was not needed
    assert detect_language("ok ?", ("fr",)) is None  # too short, as with several


def test_normalize_fills_in_a_missing_language_and_keeps_a_given_one() -> None:
    options = Options(languages=SITE)
    sender = {"email": "kunde@example.dk"}
    detected = WebMessage.model_validate(
        {"sender": sender, "text": "Jeg vil gerne have pengene tilbage for min ordre"}
    )
    given = WebMessage.model_validate(
        {"sender": sender, "text": "Jeg vil gerne have pengene tilbage", "language": "en"}
    )
    case_id = "01JCKEPT0000000000000000WB"

    assert normalize(envelope(detected), case_id, options).case.language == "da"
    assert normalize(envelope(given), case_id, options).case.language == "en"
    assert normalize(envelope(detected), case_id, Options()).case.language is None


def test_the_unpacked_model_answers_exactly_as_the_packaged_one(tmp_path: Path) -> None:
    texts = [
        "Hello, I cannot log in to my account since yesterday",
        "Hej, fakturaen for november er forkert",
        "我的账户从昨天开始无法登录",
        "ＲＥＦＵＮＤ please now",
        "Bonjour, je ne peux plus me connecter depuis hier",
    ]
    packaged = _identifier(SITE, None)
    unpacked = _identifier(SITE, tmp_path)
    assert any(tmp_path.iterdir())  # the cache was written
    assert [p.name for p in tmp_path.glob("langid-*/ptc-*.npy")] == ["ptc-da-de-en-es-fr-ja-zh.npy"]
    for text in texts:
        assert unpacked.rank(text) == packaged.rank(text)
    _identifier.cache_clear()
    again = _identifier(SITE, tmp_path)  # mapped from the cache this time
    assert [again.rank(text) for text in texts] == [packaged.rank(text) for text in texts]
    assert detect_language(texts[1], SITE, tmp_path) == "da"
