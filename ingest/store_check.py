"""The store side of /readyz: the store is checked every few seconds, with or without traffic.

Without it, a database that refuses connections, stops answering or has the dispatcher's
tables locked would show only once a message needed it. Each check connects, and on
PostgreSQL takes the lock a batch's writes take (`Store.check`), within `check_timeout_s`
(the database's own timeouts, and a second more at most for their answer); one check runs
at a time, so a fault shows within `check_interval_s + check_timeout_s + 1` s. The verdict
is /readyz's `store` entry (together with the dispatcher's own: a batch waiting for the
store), the gauge `ingest_store_ready` and the counter `ingest_store_check_failures_total`
by reason (unreachable, timeout, lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from prometheus_client import Counter
from psycopg.errors import ConnectionTimeout
from sqlalchemy.exc import DBAPIError

from dispatcher.database import text_of
from dispatcher.store import Store
from ingest.metrics import Metrics
from ingest.settings import StoreSettings

log = structlog.get_logger("ingest.store_check")

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"  # statement_timeout
ANSWER_SLACK_S = 1.0
"""Past `check_timeout_s`, for the database's own timeouts to come back with their reason."""


class StoreCheck:
    """`run()` checks until cancelled; `readiness()` is None while the last check passed."""

    def __init__(self, store: Store, settings: StoreSettings, metrics: Metrics) -> None:
        self._store = store
        self._interval_s = settings.check_interval_s
        self._timeout_s = settings.check_timeout_s
        self._failing: str | None = None
        self._failures = Counter(
            "ingest_store_check_failures",
            "Checks of the store that failed, by reason: unreachable (refused, lost), timeout "
            "(no answer in check_timeout_s), lock (the dispatcher's tables locked longer).",
            ["reason"],
            registry=metrics.registry,
        )
        metrics.gauge(
            "ingest_store_ready",
            "1 while the last check of the store passed.",
            lambda: float(self._failing is None),
        )

    def readiness(self) -> str | None:
        """None while the store answered the last check in time, else why not."""
        return self._failing

    def with_dispatcher(self, dispatcher: Callable[[], str | None]) -> Callable[[], str | None]:
        """The `store` readiness check: this one's verdict, else the dispatcher's."""
        return lambda: self._failing or dispatcher()

    async def run(self) -> None:
        while True:
            check = asyncio.ensure_future(asyncio.to_thread(self._store.check, self._timeout_s))
            done, _ = await asyncio.wait([check], timeout=self._timeout_s + ANSWER_SLACK_S)
            if not done:
                self._verdict("timeout", f"the store did not answer within {self._timeout_s:g} s")
                await asyncio.wait([check])  # one check at a time; its outcome is stale now
                check.exception()
            else:
                self._verdict(*self._judge(check.exception()))
            await asyncio.sleep(self._interval_s)

    def _judge(self, error: BaseException | None) -> tuple[str | None, str | None]:
        if error is None:
            return None, None
        cause = error.orig if isinstance(error, DBAPIError) else error
        state = getattr(cause, "sqlstate", None)
        if state == LOCK_NOT_AVAILABLE or "database is locked" in str(cause):
            waited = f"waited {self._timeout_s:g} s"
            return "lock", f"the dispatcher's tables are locked ({waited}): {text_of(error)}"
        if state == QUERY_CANCELED or isinstance(cause, ConnectionTimeout):
            return "timeout", f"the store did not answer within {self._timeout_s:g} s"
        return "unreachable", f"the store cannot be reached: {text_of(error)}"

    def _verdict(self, reason: str | None, why: str | None) -> None:
        if reason is None or why is None:
            if self._failing is not None:
                log.info("store check passes again")
            self._failing = None
            return
        self._failures.labels(reason).inc()
        if self._failing is None:
            log.warning("store check failed", reason=reason, error=why)
        self._failing = why
