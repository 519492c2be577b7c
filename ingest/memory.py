"""The daemon's memory budget (`[limits] memory_mb`): the resident memory of this process and
its children (the parsing workers), so that a burst of large mail is refused for a while
(451 4.3.1) rather than taking the machine's memory."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import psutil

READ_EVERY_S = 0.1
MB = 1 << 20


class MemoryBudget:
    """`over()` while the resident memory is past the budget (never, for a budget of 0).
    The figure is read at most every READ_EVERY_S: asking is cheap on a busy SMTP port."""

    def __init__(self, limit_mb: int, children: Callable[[], Iterable[int]]) -> None:
        self.limit_bytes = limit_mb * MB
        self._children = children
        self._used = 0
        self._read_at = float("-inf")

    def used_bytes(self) -> int:
        """RSS of this process and its children (the ids `children` gives), in bytes;
        shared pages count once per process, so the figure errs high. (Asking the system
        for every descendant means reading every process's status: too slow to ask often.)"""
        now = time.monotonic()
        if now - self._read_at >= READ_EVERY_S:
            self._used = _rss(os.getpid()) + sum(_rss(pid) for pid in self._children())
            self._read_at = now
        return self._used

    def over(self) -> bool:
        return bool(self.limit_bytes) and self.used_bytes() > self.limit_bytes


def _rss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:  # it ended meanwhile
        return 0
