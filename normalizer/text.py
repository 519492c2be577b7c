"""Text clean-up shared by every channel: Unicode NFC, no control characters, tidy lines."""

from __future__ import annotations

import re
import unicodedata

_KEEP = {"\n", "\t"}
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control and format characters (but newlines and tabs), tidy lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in _KEEP or not _is_control(ch))
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def clean_line(text: str) -> str:
    """Like clean_text, for one-line values such as subjects and names: whitespace folded."""
    return " ".join(clean_text(text).split())


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls; Cf would also strip zero-width joiners that emoji and some scripts
    # need, so only the bidi overrides and the BOM are removed from that category.
    category = unicodedata.category(ch)
    return category == "Cc" or ch in "\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
