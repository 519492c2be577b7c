"""Writing files so that a crash or power cut leaves either the whole file or none."""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MAX_SYNC_THREADS = 32


def write_durably(path: Path, data: bytes, temporary: Path | None = None) -> None:
    """Write to a temporary name, fsync, rename into place, fsync the folder.

    Without `temporary`, each call writes a temporary file of its own (a unique name in the
    same folder): two threads or processes writing the same path at once (four mails carrying
    one attachment) each rename a whole file into place, and the last one wins.
    """
    if temporary is None:
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        file = os.fdopen(descriptor, "wb")
        temporary = Path(name)
    else:
        file = temporary.open("wb")
    try:
        with file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)


def write_all_durably(files: list[tuple[Path, bytes]]) -> None:
    """`write_durably` for several files at once: each written and fsynced, all renamed into
    place, each folder fsynced once. The fsyncs run side by side in threads, so that the file
    system commits them together (ext4 and XFS group concurrent fsyncs into one journal
    commit): a thousand files cost a few commits, not a thousand."""
    temporaries = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path, _data in files]
    if len(files) == 1:  # most mail: starting a thread would cost a third of the fsyncs' CPU
        (path, data), temporary = files[0], temporaries[0]
        write_durably(path, data, temporary)
        return
    folders = list(dict.fromkeys(path.parent for path, _data in files))
    with ThreadPoolExecutor(min(len(files), MAX_SYNC_THREADS) or 1) as pool:
        list(pool.map(_write_synced, temporaries, (data for _path, data in files)))
        for temporary, (path, _data) in zip(temporaries, files, strict=True):
            os.replace(temporary, path)
        list(pool.map(fsync_directory, folders))


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fsync_file(path: Path) -> None:
    """Make a file's bytes durable (they were written and closed before)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in this folder durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
