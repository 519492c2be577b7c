"""Text clean-up shared by every channel: Unicode NFC, no control characters, tidy lines."""

from __future__ import annotations

import re
import unicodedata

_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ONE_LINE_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$"
"""The same as a JSON Schema pattern: no control character (C0, DEL, C1) nor line separator."""
# Cc (C0 and C1 controls, but newline and tab) and, of Cf, only the bidi overrides and the
# BOM: the rest of Cf includes zero-width joiners that emoji and some scripts need.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u202a-\u202e\u2066-\u2069]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control and format characters (but newlines and tabs), tidy lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def clean_line(text: str) -> str:
    """Like clean_text, for one-line values such as subjects and names: whitespace folded."""
    return " ".join(clean_text(text).split())


def find_control(value: str) -> str | None:
    """Why `value` cannot be a one-line field (a subject, a name, an id): the first control
    character or line separator in it; None when there is none."""
    found = _LINE_BREAKING.search(value)
    if found is None:
        return None
    return f"one line without control characters, not U+{ord(found.group()):04X}"
