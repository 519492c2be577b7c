"""Language detection (py3langid, its model ships with the package), limited to the languages a
site works in, so that short support messages are not mistaken for Luxembourgish.

The model is imported and loaded on the first detection. Loading it means decompressing
70 MB (about half a second of CPU); given a cache folder (`model_cache()`: the daemon, its
parsing workers and the tools all pass it), the decompressed arrays are kept there once and
mapped on later loads (5 ms, and the pages are shared by every process that maps them), with
the naive Bayes tables cut down to each site's candidate languages beside them (cutting them
reads every page of the 19 MB table: 10 ms each time a process starts). Both ways give the
same arrays to the same `LanguageIdentifier`, so the same text gets the same language.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

MIN_CONFIDENCE = 0.75
MIN_LETTERS = 8
WIDE_LETTERS = 3
WIDE = "\u2e80"
SAMPLE_CHARS = 500
"""The model reads the text byte by byte in Python (0.48 ms for 2,000 characters, 0.13 for
500): the first 500 characters decide. On 600 documents of 2,500 characters in four languages
built from tests/data/incident-set.jsonl, 250 to 2,000 gave the same answers, all right."""
ARRAYS = ("ptc", "pc", "nextmove", "nextmove_row", "out_feat")


def model_cache() -> Path:
    """Where the unpacked model is kept: the user's cache folder ($XDG_CACHE_HOME, which the
    systemd units point at the service's CacheDirectory, or ~/.cache). When it cannot be
    written, detection loads the model as usual."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "omnichannel-ingest"


def detect_language(
    text: str, candidates: tuple[str, ...], cache: Path | None = None
) -> str | None:
    """An ISO 639-1 code among `candidates`, or None when the text is too short or unclear."""
    sample = text[:SAMPLE_CHARS]
    if not candidates or not _enough_letters(sample):
        return None
    if len(candidates) == 1:  # the model would say so with certainty: no need to ask it
        return candidates[0]
    language, confidence = _identifier(tuple(sorted(candidates)), cache).classify(sample)
    return str(language) if confidence >= MIN_CONFIDENCE else None


def _enough_letters(sample: str) -> bool:
    """MIN_LETTERS letters, or 3 with 3 wide characters (a few ideographs say as much as a
    sentence of Latin letters); counted only as far as needed to tell."""
    letters = wide = 0
    for ch in sample:
        wide += ch > WIDE
        letters += ch.isalpha()
        if letters >= MIN_LETTERS or (letters >= WIDE_LETTERS and wide >= WIDE_LETTERS):
            return True
    return False


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...], cache: Path | None) -> LanguageIdentifier:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    model = MODEL_DIR / MODEL_FILE
    folder = _cached(model, cache) if cache is not None else None
    if folder is None:
        identifier = LanguageIdentifier.from_modelpath(model, norm_probs=True)
        identifier.set_languages(list(candidates))
        return identifier
    return _from_folder(folder, LanguageIdentifier, candidates)


def _cached(model: Path, cache: Path) -> Path | None:
    """The folder of the decompressed model for this model file, made if missing; None when
    the cache cannot be written (detection then loads the model as usual)."""
    stamp = model.stat()
    folder = cache / f"langid-{stamp.st_size}-{stamp.st_mtime_ns}"  # a new model, a new folder
    if folder.is_dir():
        return folder
    try:
        cache.mkdir(parents=True, exist_ok=True)
        draft = Path(tempfile.mkdtemp(dir=cache, prefix=".langid-"))
        try:
            _unpack(model, draft)
            os.replace(draft, folder)
        finally:
            shutil.rmtree(draft, ignore_errors=True)
    except OSError:
        return folder if folder.is_dir() else None  # another process may have won the race
    return folder


def _unpack(model: Path, folder: Path) -> None:
    import lzma

    import numpy as np

    with tempfile.TemporaryFile(dir=folder) as unpacked:
        with lzma.open(model) as packed:
            shutil.copyfileobj(packed, unpacked, length=1 << 20)
        unpacked.seek(0)
        with np.load(unpacked, allow_pickle=False) as data:
            for name in ARRAYS:
                np.save(folder / f"{name}.npy", data[name], allow_pickle=False)
            (folder / "classes.json").write_text(json.dumps(data["classes"].tolist()))


def _from_folder(folder: Path, identifier: Any, candidates: tuple[str, ...]) -> LanguageIdentifier:
    """The identifier py3langid's `from_model_file` builds and `set_languages(candidates)`
    restricts, from the unpacked arrays, mapped rather than read: the automaton's tables are
    only touched where a text walks them, and the tables of the candidates are their own."""
    import numpy as np

    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    ptc, pc, classes = _restricted(folder, arrays, candidates)
    return identifier(  # type: ignore[no-any-return]
        ptc,
        pc,
        classes,
        _integers(arrays["nextmove"]),
        _integers(arrays["out_feat"]),
        norm_probs=True,
        tk_row=_integers(arrays["nextmove_row"]),
    )


def _restricted(folder: Path, arrays: dict[str, Any], candidates: tuple[str, ...]) -> Any:
    """The naive Bayes tables and classes of the candidates only, in the model's order (as
    `set_languages` cuts them): kept in the folder once, mapped after that."""
    import numpy as np

    every = json.loads((folder / "classes.json").read_text())
    unknown = set(candidates) - set(every)
    if unknown:
        raise ValueError(f"Unknown language code(s): {unknown}")
    indices = [i for i, name in enumerate(every) if name in candidates]
    classes = [every[i] for i in indices]
    path = folder / f"ptc-{'-'.join(sorted(set(candidates)))}.npy"
    if path.exists():
        ptc = np.asarray(np.load(path, mmap_mode="r"))
    else:
        ptc = np.ascontiguousarray(arrays["ptc"][:, indices])
        _keep(path, ptc)
    return ptc, np.asarray(arrays["pc"])[indices], classes


def _keep(path: Path, array: Any) -> None:
    """Save `array` at `path` whole or not at all (another process may be saving it too);
    when the folder cannot be written, nothing is kept (the next process cuts it again)."""
    import numpy as np

    draft = None
    with contextlib.suppress(OSError):
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as file:
            draft = file.name
            np.save(file, array, allow_pickle=False)
        os.replace(draft, path)
        return
    if draft is not None:  # written in part, or not moved: not left behind
        with contextlib.suppress(OSError):
            os.unlink(draft)


def _integers(values: Any) -> memoryview:
    """A mapped numpy integer array as a sequence of Python ints (what py3langid indexes)."""
    kind = {"u": {2: "H", 4: "I", 8: "L"}, "i": {4: "i", 8: "l"}}[values.dtype.kind]
    return memoryview(values).cast("B").cast(kind[values.dtype.itemsize])
