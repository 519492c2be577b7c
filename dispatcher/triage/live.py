"""The rule set in force, replaced whole on SIGHUP or when a rules file changes (the
knowledge base is kept live the same way: `what`, `count` and `errors` name its parts).

A reload compiles a complete new rule set first (and runs the golden tests, when the files
name some) in a worker thread, then swaps one reference; a message is always evaluated by one
rule set from start to end, and the dispatcher never waits for a reload. A reload that fails
leaves the rules in force, logs every problem and shows them on the health endpoint until a
later reload succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from dispatcher.triage.engine import RuleSet
from dispatcher.triage.load import RulesError

log = structlog.get_logger("dispatcher.triage")

Loader = Callable[[], Any]
WATCH_INTERVAL_S = 2.0
SETTLE_S = 0.5


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    loaded_at: datetime
    rules: int
    sources: tuple[str, ...]
    error: str | None = None


class LiveRules:
    """`current` is the rule set to use right now; `reload()` tries to replace it."""

    def __init__(
        self,
        load: Loader,
        watched: Callable[[], list[Path]],
        what: str = "rules",
        count: Callable[[Any], int] = lambda current: len(current.rules),
        errors: tuple[type[Exception], ...] = (RulesError,),
    ) -> None:
        self._load = load
        self._watched = watched
        self._what = what
        self._count = count
        self._errors = errors
        self.current: RuleSet = load()  # at start-up an invalid set is fatal: nothing to keep
        self._status = ReloadStatus(datetime.now(UTC), count(self.current), self._sources())
        self._stamps = self._read_stamps()
        self._asked: list[str] = []
        self._wake = asyncio.Event()

    def request_reload(self, why: str) -> None:
        """Ask `watch` to reload soon (a signal handler may call this)."""
        self._asked.append(why)
        self._wake.set()

    def reload(self, why: str) -> bool:
        """Compile the files again; swap only if all of it is valid. Returns success."""
        what = self._what
        try:
            fresh = self._load()
        except self._errors as error:
            problems = list(getattr(error, "problems", [str(error)]))
            self._status = ReloadStatus(
                self._status.loaded_at,
                self._count(self.current),
                self._status.sources,
                "; ".join(problems),
            )
            log.error(
                f"{what} reload refused, the {what} in force stay", why=why, problems=problems
            )
            return False
        self.current = fresh
        self._status = ReloadStatus(datetime.now(UTC), self._count(fresh), self._sources())
        log.info(f"{what} reloaded", why=why, **{what: self._count(fresh)})
        return True

    def health(self) -> dict[str, object]:
        status = self._status
        return {
            "status": "error" if status.error else "ok",
            self._what: status.rules,
            "loaded_at": status.loaded_at.isoformat(),
            "sources": list(status.sources),
            **({"error": status.error} if status.error else {}),
        }

    async def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Reload when asked, and whenever a rules file appears, changes or goes away, once
        it has stopped changing (an editor may still be writing it)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            if self._asked:
                why = ", ".join(dict.fromkeys(self._asked))
                self._asked.clear()
                self._wake.clear()
                self._stamps = await asyncio.to_thread(self._read_stamps)
                await asyncio.to_thread(self.reload, why)
                continue
            stamps = await asyncio.to_thread(self._read_stamps)
            if stamps == self._stamps:
                continue
            while True:
                await asyncio.sleep(SETTLE_S)
                settled = await asyncio.to_thread(self._read_stamps)
                if settled == stamps:
                    break
                stamps = settled
            self._stamps = stamps
            await asyncio.to_thread(self.reload, f"a {self._what} file changed")

    def _sources(self) -> tuple[str, ...]:
        return tuple(self.current.sources)

    def _read_stamps(self) -> dict[Path, tuple[int, int]]:
        stamps = {}
        for path in self._watched():
            try:
                status = path.stat()
            except OSError:
                continue
            stamps[path] = (status.st_mtime_ns, status.st_size)
        return stamps
