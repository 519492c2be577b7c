"""Named lists: written in the rules, or read from a file beside them (one entry per line, or
a column of a CSV file), once per load."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dispatcher.triage.names import unknown
from dispatcher.triage.spec import ListFileSpec, ListSpec


class ListError(ValueError):
    """A list that cannot be read; the message names the file and the reason."""


def read_list(spec: ListSpec, base: Path) -> tuple[str, ...]:
    """The entries, stripped, blanks (and # comment lines of a plain file) left out."""
    if not isinstance(spec, ListFileSpec):
        entries = [item.strip() for item in spec]
    else:
        path = base / spec.file
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ListError(f"{path}: cannot be read: {reason}") from None
        entries = _lines(text) if spec.column is None else _column(text, spec.column, path)
    found = tuple(entry for entry in entries if entry)
    if not found:
        raise ListError("the list is empty")
    return found


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]


def _column(text: str, column: str, path: Path) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    names = reader.fieldnames or []
    if column not in names:
        raise ListError(f"{path}: {unknown('column', column, names)}")
    return [(row.get(column) or "").strip() for row in reader]
