"""Write reports: one file, or one per owner (product or queue) in a folder."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from dispatcher.reports.build import build, owners
from dispatcher.reports.model import Report, Scope, Window
from dispatcher.reports.render import to_csv, to_html, to_json
from dispatcher.settings import DispatcherSettings

RENDER: dict[str, Callable[[Report], str]] = {"html": to_html, "csv": to_csv, "json": to_json}
UNSAFE = re.compile(r"[^\w.-]+")


def write_one(
    engine: Engine,
    url: str,
    window: Window,
    settings: DispatcherSettings,
    form: str,
    out: Path | None,
) -> str:
    """The report of all cases to `out` (returned as text when `out` is None)."""
    text = RENDER[form](build(engine, url, window, Scope(), settings))
    if out is not None:
        _write(out, text)
    return text


def write_per_owner(
    engine: Engine,
    url: str,
    window: Window,
    settings: DispatcherSettings,
    form: str,
    by: str,
    folder: Path,
) -> list[Path]:
    """One report per product (or queue) with cases in the window, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for value in owners(engine, window, by):
        scope = Scope(by, value)  # type: ignore[arg-type]
        path = folder / f"{by}-{file_name(value)}.{form}"
        _write(path, RENDER[form](build(engine, url, window, scope, settings)))
        written.append(path)
    return written


def file_name(value: str | None) -> str:
    """A safe file name part for an owner ("(none)" for cases without one)."""
    if value is None:
        return "none"
    return UNSAFE.sub("-", value).strip("-.").lower() or "unnamed"


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a timer's reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o644)  # a report is for reading (mkstemp makes it 0600)
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
