"""Faults a test can cause in a running daemon without touching its code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ingest.publisher import spool_directory
from tests.daemon import DaemonBase


@contextlib.contextmanager
def spool_unwritable(daemon: DaemonBase) -> Iterator[None]:
    """A file where the spool folder was, as a failed disk: every spool write fails until exit.

    With the broker cut off as well, no case-open can be made safe (the pipeline's NotSafe).
    """
    spool = spool_directory(daemon.workdir / "var")
    aside = spool.with_name("spool.aside")
    spool.rename(aside)
    spool.write_bytes(b"")
    try:
        yield
    finally:
        spool.unlink()
        aside.rename(spool)
