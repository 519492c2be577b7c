"""Names a file refers to that do not exist: say so, suggest the closest, list the valid ones."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like `name`, if one is close enough to be a typo."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not found:
        lowered = {item.lower(): item for item in known}
        return lowered.get(name.lower())
    return found[0]


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """E.g. "unknown queue 'biling'; did you mean 'billing'? (known: billing, sales)"."""
    names = sorted(set(known))
    suggestion = closest(name, names)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(names) or 'none defined'})"
