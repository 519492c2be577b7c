"""Language detection (py3langid, its model ships with the package), limited to the languages a
site works in, so that short support messages are not mistaken for Luxembourgish."""

from __future__ import annotations

from functools import lru_cache

from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

MIN_CONFIDENCE = 0.75
MIN_LETTERS = 8
SAMPLE_CHARS = 2000


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]) -> LanguageIdentifier:
    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(candidates))
    return identifier


def detect_language(text: str, candidates: tuple[str, ...]) -> str | None:
    """An ISO 639-1 code among `candidates`, or None when the text is too short or unclear."""
    sample = text[:SAMPLE_CHARS]
    if not candidates or sum(ch.isalpha() for ch in sample) < _least_letters(sample):
        return None
    language, confidence = _identifier(tuple(sorted(candidates))).classify(sample)
    return str(language) if confidence >= MIN_CONFIDENCE else None


def _least_letters(sample: str) -> int:
    # A few ideographs say as much as a sentence of Latin letters.
    wide = sum(ord(ch) > 0x2E80 for ch in sample)
    return 3 if wide >= 3 else MIN_LETTERS
