"""The real daemon in the test's own process: the same `serve()`, settings file and queues as
`ingest run`, without the second of Python start-up and imports a process costs.

For every test that does not need a process of its own (signals, SIGKILL, restarts, a daemon
beside the command line). Its log lines go to its own file, so `log_text()` reads as it does
for a process: the test process logs through one handler that writes each line to the file of
the daemon whose task (or worker thread) wrote it, found through a context variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Self, TextIO

from ingest.daemon import Role, serve
from ingest.logs import configure_logging
from ingest.settings import LogSettings, Settings, load_settings
from tests.daemon import STOP_TIMEOUT_S, DaemonBase

_log_file: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "daemon_log_file", default=None
)


class _ToDaemonLog(logging.Handler):
    """Writes a record to the log file of the daemon it came from; others to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        target = _log_file.get() or sys.stderr
        try:
            target.write(self.format(record) + "\n")
            target.flush()
        except ValueError:  # the daemon's file is closed: a straggler after its stop
            pass


def route_logs_to_daemons() -> None:
    """Configure the test process's logging as a daemon's, routed by daemon (once a process)."""
    configure_logging(LogSettings(level="info"), _ToDaemonLog())


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """INGEST_ overrides for one settings load (settings read the environment only then)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalDaemon(DaemonBase):
    """`serve()` as a task of the test's event loop; `await start()`, `await close()`."""

    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event | None = None
    _log: TextIO | None = None

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(
        self,
        role: Role = "all",
        env: dict[str, str] | None = None,
        amend: Callable[[Settings], Settings] | None = None,
    ) -> LocalDaemon:
        """Start serving (in the running event loop); `env` adds INGEST_ overrides, read once
        while loading the settings; `amend` changes the loaded settings (what no file can
        say, such as a section of a channel that exists only in the tests)."""
        with _environment(env or {}):
            settings = load_settings(self.settings_path)
        if amend is not None:
            settings = amend(settings)
        assert settings.log.level == "info", "an in-process daemon logs at info level"
        self._stop = asyncio.Event()
        self._log = self.log_path.open("a", encoding="utf-8")
        context = contextvars.copy_context()
        context.run(_log_file.set, self._log)
        self._task = asyncio.get_running_loop().create_task(
            serve(settings, role, self.settings_path, self._stop),
            name=f"daemon {self.settings_path.stem}",
            context=context,
        )
        return self

    async def launch(self, role: str = "all", env: dict[str, str] | None = None) -> Self:
        self.start(role, env)  # type: ignore[arg-type]
        await self.wait_ready()
        return self

    async def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Shut down in order, as on SIGTERM; cancel what is left after `timeout_s`."""
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            assert self._log is not None
            self._log.close()
