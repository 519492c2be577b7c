"""Writing files so that a crash or power cut leaves either the whole file or none."""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, data: bytes, temporary: Path | None = None) -> None:
    """Write to a temporary name, fsync, rename into place, fsync the folder."""
    temporary = temporary or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in this folder durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
