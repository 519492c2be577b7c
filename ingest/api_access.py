"""The JSON API's keys, rate limits and idempotency records, shared through the store.

Nothing here costs the store a statement per request. Idempotency claims must be shared at
once to mean anything: those that arrive while one claiming transaction runs are made
together in the next (two statements for the batch). Keys are looked up in memory by their
SHA-256; key uses and rate counts are gathered in memory; one sync every half second writes
the uses and counts (one statement each, for all of them), learns the totals the other
processes counted, and reloads the keys, so a revocation reaches every process within a
second. A key not known in memory may have been made a moment ago (`ingest keys create`):
the keys are reloaded before it is refused, so a new key works at once; such reloads are
shared by the requests waiting for one and made at most every RELOAD_UNKNOWN_S, so that
requests with made-up keys cost the store no more than that. A rate bucket first met in a
window is read from the store before it is counted.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from ulid import ULID

from channels.web_access import SCOPES, Caller, Claim, Quota, Unavailable
from dispatcher.access import counters, idempotency, keys
from dispatcher.access.counters import Bucket
from dispatcher.database import text_of
from dispatcher.store import Store

log = structlog.get_logger("ingest.api_access")

SYNC_INTERVAL_S = 0.5
RELOAD_UNKNOWN_S = 0.1
PRUNE_INTERVAL_S = 300.0


@dataclass(slots=True)
class _Count:
    """One bucket in one window, as this process knows it."""

    total: int = 0  # the store's count when last seen (ours flushed included)
    pending: int = 0  # counted here since
    touched: bool = True
    loaded: asyncio.Event = field(default_factory=asyncio.Event)


class StoreAccess:
    """`channels.web_access.ApiAccess` on the shared store; `run()` keeps it in sync."""

    def __init__(
        self,
        store: Store,
        settings_keys: list[str],
        window_s: int,
        idempotency_ttl: timedelta,
    ) -> None:
        self._store = store
        self._window_s = window_s
        self._settings_callers = {
            keys.digest_of(key): Caller(f"(settings {n})", frozenset(SCOPES), None)
            for n, key in enumerate(settings_keys, start=1)
        }
        self._callers = dict(self._settings_callers)
        self._stored: set[str] = set()  # names of the callers whose keys are in the store
        self._last_used: dict[str, datetime] = {}
        self._counts: dict[Bucket, _Count] = {}
        self._failing = False
        self._next_prune = 0.0
        self._claims = _Claims(store, idempotency_ttl)
        self._reload: asyncio.Task[None] | None = None
        self._reloaded_at = float("-inf")

    async def load(self) -> None:
        """Load the keys once before the first request (start-up)."""
        active = await self._store.run(keys.active)
        self._install(active)

    async def identify(self, key: str) -> Caller | None:
        digest = keys.digest_of(key)
        caller = self._callers.get(digest)
        if caller is None:
            await self._reload_keys()
            caller = self._callers.get(digest)
        if caller is not None and caller.name in self._stored:
            self._last_used[caller.name] = datetime.now(UTC)
        return caller

    async def _reload_keys(self) -> None:
        """Reload the keys for a key not known here; one reload for every request waiting,
        and none sooner than RELOAD_UNKNOWN_S after the last (those requests wait for it)."""
        if self._reload is None or self._reload.done():
            self._reload = asyncio.create_task(self._reload_after_pause(), name="api-keys-reload")
        await asyncio.shield(self._reload)

    async def _reload_after_pause(self) -> None:
        await asyncio.sleep(max(0.0, self._reloaded_at + RELOAD_UNKNOWN_S - time.monotonic()))
        try:
            active = await self._store.run(keys.active)
        except (SQLAlchemyError, OSError) as error:  # the sync says so, once per outage
            log.debug("api keys cannot be reloaded", error=str(error)[:200])
            return
        finally:
            self._reloaded_at = time.monotonic()
        self._install(active)

    async def admit(self, bucket: str, limit: int) -> Quota:
        now = time.time()
        window = int(now // self._window_s) * self._window_s
        count = self._counts.get((bucket, window))
        if count is None:
            count = self._counts[(bucket, window)] = _Count()
            await self._first_sight((bucket, window), count)
        elif not count.loaded.is_set():
            await count.loaded.wait()
        count.touched = True
        reset_s = max(1, math.ceil(window + self._window_s - now))
        used = count.total + count.pending
        if used >= limit:
            return Quota(limit, 0, reset_s, self._window_s, allowed=False)
        count.pending += 1
        return Quota(limit, limit - used - 1, reset_s, self._window_s, allowed=True)

    async def claim(self, key: str, digest: str) -> Claim:
        return await self._claims.claim(idempotency.Wanted(key, digest, str(ULID())))

    async def run(self) -> None:
        """Make idempotency claims as they come, and sync every half second, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._claims.work(), name="idempotency-claims")
            while True:
                await asyncio.sleep(SYNC_INTERVAL_S)
                await self.sync()

    async def close(self) -> None:
        """Write what is still counted here (at shutdown)."""
        if self._reload is not None:
            self._reload.cancel()
        await self.sync()

    async def sync(self) -> None:
        """Write key uses and counts, learn the totals, reload the keys; prune now and then."""
        uses, self._last_used = self._last_used, {}
        window = int(time.time() // self._window_s) * self._window_s
        sent = self._to_send(window)
        prune = time.monotonic() >= self._next_prune
        try:
            active, totals = await self._store.run(
                _sync, uses, sent, prune, window - self._window_s
            )
        except (SQLAlchemyError, OSError) as error:
            for name, used in uses.items():
                self._last_used.setdefault(name, used)
            if not self._failing:
                log.warning("api keys and rate counts cannot be synced", error=str(error)[:200])
            self._failing = True
            return
        if self._failing:
            log.info("api keys and rate counts synced again")
        self._failing = False
        if prune:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        self._install(active)
        for bucket, total in totals.items():
            count = self._counts.get(bucket)
            if count is not None:
                count.pending -= sent.get(bucket, 0)
                count.total = total

    def _to_send(self, window: int) -> dict[Bucket, int]:
        """The counts to add (zero for buckets only looked at: their totals are learnt); forget
        the windows that are over."""
        for bucket in [b for b in self._counts if b[1] < window]:
            del self._counts[bucket]
        sent = {}
        for bucket, count in self._counts.items():
            if (count.touched or count.pending) and count.loaded.is_set():
                sent[bucket] = count.pending
                count.touched = False
        return sent

    async def _first_sight(self, bucket: Bucket, count: _Count) -> None:
        try:
            count.total = await self._store.run(counters.read, bucket)
        except (SQLAlchemyError, OSError) as error:
            log.warning("rate count unavailable, counting here", error=str(error)[:200])
        finally:
            count.loaded.set()

    def _install(self, active: list[keys.ActiveKey]) -> None:
        callers = dict(self._settings_callers)
        for key in active:
            callers[key.digest] = Caller(key.name, key.scopes, key.rate_limit)
        self._callers = callers
        self._stored = {key.name for key in active}


class _Claims:
    """Idempotency claims made in batches: the claims that arrive while one transaction runs
    go together in the next (one INSERT and one SELECT for all of them)."""

    def __init__(self, store: Store, ttl: timedelta) -> None:
        self._store = store
        self._ttl = ttl
        self._pending: list[tuple[idempotency.Wanted, asyncio.Future[Claim]]] = []
        self._arrived = asyncio.Event()

    async def claim(self, wanted: idempotency.Wanted) -> Claim:
        future: asyncio.Future[Claim] = asyncio.get_running_loop().create_future()
        self._pending.append((wanted, future))
        self._arrived.set()
        return await future

    async def work(self) -> None:
        """Take what has arrived, claim it in one transaction, answer each waiter; forever."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            batch, self._pending = self._pending, []
            await self._settle(batch)

    async def _settle(self, batch: list[tuple[idempotency.Wanted, asyncio.Future[Claim]]]) -> None:
        wanted = [want for want, _ in batch]
        try:
            held = await self._store.run(
                idempotency.claim_many, wanted, datetime.now(UTC), self._ttl
            )
        except Exception as error:  # the waiters get a 503 to retry; the worker goes on
            log.warning("idempotency records unavailable", error=text_of(error))
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        Unavailable("the idempotency record could not be kept; retry later")
                    )
            return
        for want, future in batch:
            record = held.get(want.key)
            if future.done():
                continue
            if record is None:  # pruned between the two statements: let the client retry
                future.set_exception(Unavailable("the idempotency record changed; retry"))
                continue
            # A repeat within the batch is a repeat too, though the key was claimed just now.
            replayed = not record.first or record.case_id != want.case_id
            future.set_result(Claim(record.case_id, record.digest, record.created_at, replayed))


def _sync(
    session: Session,
    uses: dict[str, datetime],
    counted: dict[Bucket, int],
    prune: bool,
    oldest_window: int,
) -> tuple[list[keys.ActiveKey], dict[Bucket, int]]:
    """One transaction: key uses, counts added, the active keys read back."""
    keys.record_use(session, uses)
    totals = counters.add(session, counted)
    if prune:
        idempotency.prune(session, datetime.now(UTC))
        counters.prune(session, oldest_window)
    return keys.active(session), totals
