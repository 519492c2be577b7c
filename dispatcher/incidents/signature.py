"""What a message says, as a MinHash signature, and the LSH bands that find similar ones.

Shingles are the message's subject and text as a set of words (folded, stemmed in the
message's language when a Snowball stemmer exists, the commonest function words and
greetings left out), plus overlapping character pairs in scripts written without spaces
(Chinese, Japanese, Thai). A set of words is blind to word order, and stems and the
Jaccard threshold tolerate paraphrase; pairs of characters are the words of unspaced
scripts.

Anchors are the codes a message names, written alike in every language: tokens of Latin
letters and digits together, four characters or more (E-1043, TV-503, XR500). Customers
reporting one problem in two languages share few words but the same error code or model, so
each anchor is also a band (two messages naming it are candidates), and candidates sharing
one need only half the similarity threshold.

The signature is datasketch's MinHash with 64 permutations (the Jaccard estimate's error is
about 0.06), stored as 64 uint32; shingles are hashed with CRC-32 (the same in every process,
so dispatchers agree, and twice as fast as datasketch's SHA-1 default; a collision among a
message's few dozen shingles changes nothing that matters). Its first `BANDS` values are the
LSH bands (one value each): two messages sharing a band are candidates, at similarity 0.35
with probability 0.97 and at 0.1 with 0.57 (the estimate then weeds those out, in memory).
Bands of one value find what a storm's vaguest reports share; bands of two values would
miss a third of the pairs at the threshold.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from dispatcher.knowledge.terms import folded_runs
from dispatcher.triage.spec import STEM_LANGUAGES
from dispatcher.triage.text import fold, stemmer
from normalizer.model import CaseOpen

if TYPE_CHECKING:
    from datasketch import MinHash

PERMUTATIONS = 64
BANDS = 8
ROWS = 1
SEED = 20261130
TEXT_CHARS = 2000
"""Messages are compared by their subject and the start of their text."""

_COMMON = """
a an and are as at be been but by can could do does for from had has have he her hi him his
how i if in into is it its me my no not of on or our please she so that the their them there
they this to us was we were what when which who will with would you your hello dear thanks
thank regards best kind sincerely cheers
af at de den der det din dit du efter eller en er et for fra har hej her hvad hvis i ikke jeg
kan med mig min mit og om os på som til tak venlig hilsen vi var
aber als am auch auf aus bei bin bitte das dem den der des die du ein eine einen er es für
hallo ich ihr im ist mein mit nicht noch oder sie und uns von war was wie wir zu
"""
STOP_WORDS = frozenset(_COMMON.split())
"""Function words and greetings of English, Danish and German: they say nothing of the
problem, and would make unrelated messages look alike."""

FUNCTION_CHARACTERS = frozenset(
    "的了是我你您他她它吗呢吧啊请在有和也就都这那个们要会能可以把被给对从到很还"
)
"""Chinese characters that mostly carry grammar: a pair holding one says little."""
HIRAGANA = re.compile("[\u3040-\u309f]+")

DIGIT = re.compile(r"\d")
ANCHOR_CHARS = 4
"""Shorter codes (A4, DR2) are too common to tie two messages together."""
ANCHOR = re.compile(r"(?<![a-z0-9-])[a-z0-9]+(?:-[a-z0-9]+)*(?![a-z0-9-])")
_SALTS = np.array([(band * 0x9E3779B97F4A7C15) % 2**64 for band in range(1, BANDS + 1)], np.uint64)


@dataclass(frozen=True, slots=True)
class Signature:
    """A message's MinHash values, its band keys and the keys of its anchors."""

    values: np.ndarray
    bands: tuple[int, ...]
    anchors: frozenset[int] = frozenset()

    @property
    def keys(self) -> tuple[int, ...]:
        """Every key it is found by: bands, then anchors."""
        return (*self.bands, *sorted(self.anchors))

    def to_bytes(self) -> bytes:
        return self.values.astype("<u4").tobytes()


def shingles(case: CaseOpen) -> tuple[set[str], set[str]]:
    """The words and character pairs a message is compared by, and its anchors."""
    language = (case.language or "").split("-")[0]
    words: list[str] = []
    found: set[str] = set()
    folded = fold(f"{case.subject or ''}\n{case.text[:TEXT_CHARS]}")
    anchors = set()
    if DIGIT.search(folded):
        anchors = {
            token
            for token in ANCHOR.findall(folded)
            if len(token) >= ANCHOR_CHARS and not token.isdigit() and DIGIT.search(token)
        }
    for token, unspaced in folded_runs(folded):
        if unspaced:
            found.update(_pairs(token))
        elif token not in STOP_WORDS and (len(token) > 1 or token.isdigit()):
            words.append(token)
    if language in STEM_LANGUAGES:
        words = stemmer(language).stemWords(words)
    found.update(words)
    found.update(anchors)
    return found, anchors


def _pairs(run: str) -> Iterator[str]:
    """The character pairs of a run that say something: not grammar alone (two hiragana,
    as in ます or ている) and not a Chinese function character (的, 了, 我, ...)."""
    if len(run) == 1:
        if run not in FUNCTION_CHARACTERS and not HIRAGANA.match(run):
            yield run
        return
    for i in range(len(run) - 1):
        pair = run[i : i + 2]
        if HIRAGANA.fullmatch(pair) or FUNCTION_CHARACTERS.intersection(pair):
            continue
        yield pair


def signatures(cases: Sequence[CaseOpen], min_shingles: int) -> list[Signature | None]:
    """Each message's signature (None when it says too little to be compared), the whole
    batch's MinHash computed in one array operation (`minhashes`)."""
    found = [shingles(case) for case in cases]
    kept = [i for i, (words, _) in enumerate(found) if len(words) >= min_shingles]
    result: list[Signature | None] = [None] * len(cases)
    if not kept:
        return result
    values = minhashes([found[i][0] for i in kept])
    keys = band_keys(values)
    for row, i in enumerate(kept):
        anchors = frozenset(anchor_key(anchor) for anchor in found[i][1])
        result[i] = Signature(values[row], keys[row], anchors)
    return result


FMIX32 = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)
"""MurmurHash3's 32-bit finalizer, which datasketch's affine32 scheme applies to each hash."""


def minhashes(sets: Sequence[Collection[str]]) -> np.ndarray:
    """datasketch's MinHash (affine32 scheme, CRC-32 of each shingle) of each non-empty set,
    one row of uint32 each: every shingle of the batch hashed and permuted in one array, then
    the minimum per set (the same values as `MinHash.bulk`, at a fraction of its cost)."""
    a, b = (np.asarray(p, dtype=np.uint32) for p in _template().permutations)
    sizes = [len(items) for items in sets]
    hashed = np.fromiter(
        (zlib.crc32(item.encode()) for items in sets for item in items),
        dtype=np.uint32,
        count=sum(sizes),
    )
    s1, m1, s2, m2, s3 = (np.uint32(c) for c in FMIX32)
    hashed ^= hashed >> s1
    hashed *= m1
    hashed ^= hashed >> s2
    hashed *= m2
    hashed ^= hashed >> s3
    permuted = hashed[:, np.newaxis] * a + b  # wraps modulo 2**32, as the scheme says
    starts = np.cumsum([0, *sizes[:-1]])
    return np.minimum.reduceat(permuted, starts, axis=0)


@cache
def _template() -> MinHash:
    """The permutations every signature uses (datasketch is imported on first use: its
    package brings SciPy along, which a daemon that never compares a message does not need)."""
    from datasketch import MinHash

    return MinHash(num_perm=PERMUTATIONS, seed=SEED)


def prepare() -> None:
    """Set up MinHash (import datasketch) before the first message needs it (the daemon
    does it in a worker thread once it is up)."""
    _template()


def signature(case: CaseOpen, min_shingles: int) -> Signature | None:
    """One message's signature."""
    return signatures([case], min_shingles)[0]


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def band_keys(values: np.ndarray) -> list[tuple[int, ...]]:
    """For each row of a matrix of signatures, one signed 64-bit key per band: its values
    (already uniform hashes) mixed with a constant per band, so that equal values in two
    bands differ. One array operation for the whole batch."""
    rows = values[:, : BANDS * ROWS].astype(np.uint64).reshape(len(values), BANDS, ROWS)
    keys = rows[:, :, 0] << np.uint64(32)
    for row in range(1, ROWS):
        keys = keys ^ (rows[:, :, row] * np.uint64(0xBF58476D1CE4E5B9))
    keys = keys ^ _SALTS
    return [tuple(row) for row in keys.view(np.int64).tolist()]


def anchor_key(anchor: str) -> int:
    """The key of an anchor (a code such as e-1043), a band of its own."""
    digest = hashlib.blake2b(anchor.encode(), digest_size=8, person=b"anchor").digest()
    return int.from_bytes(digest, "big", signed=True)
