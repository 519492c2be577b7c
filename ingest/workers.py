"""Parsing workers: mail is parsed, normalised and its blobs stored in child processes, off the
event loop and out of the way of its GIL, by processes that cannot outlive the daemon.

Why a worker dies with the daemon, also when the daemon is SIGKILLed: the first thing a worker
does is ask the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG; where there
is no prctl, a thread that watches the parent's pid), then check that its parent is still the
daemon, which closes the window between its start and that request. The kernel ties the death
signal to the thread that started the child, so workers are started (spawned: forking a
threaded daemon is unsafe) from the event loop's thread, which lives as long as the daemon:
the executor spawns them as jobs are submitted, and jobs are submitted from the loop.

Workers start with the first mail, not with the daemon: a daemon that gets no mail (the web
channels alone, or a test) spares their start-up (half a second of CPU each); the first mail
waits for it once.

In front of the workers is a bounded queue: at most `processes + queue` jobs are in hand, and
one more raises `Busy` at once, so that overload becomes 451 4.3.2 rather than memory. A
worker that dies (killed, out of memory) breaks the pool: the jobs in it answer `NotSafe` (the
source retries) and a new pool takes the next ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from channels.base import Busy, NotSafe
from ingest.blobstore import BlobStore
from normalizer.envelope import Envelope, Options, RawMail, normalize
from normalizer.model import CaseOpen

log = structlog.get_logger("ingest.workers")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_S = 1.0
WORKER_NICENESS = 5


@dataclass(frozen=True, slots=True)
class Parsed:
    """A normalised message whose blobs are stored: its wire JSON and what the pipeline
    needs to know of it. The case-open model itself stays in the worker: pickling it there
    and unpickling it in the daemon (on the thread that hands over results, under the event
    loop's GIL) cost more than twice the rest of the hand-over."""

    id: str
    channel: str
    adapter: str
    source_id: str
    sender: tuple[str, str]
    """Kind and address: the partition key (`ingest.topology.sender_route`)."""
    body: bytes

    @classmethod
    def of(cls, case: CaseOpen) -> Parsed:
        return cls(
            case.id,
            case.channel,
            case.adapter,
            case.source_id,
            (case.sender.kind, case.sender.address),
            case.to_json(),
        )


class Workers:
    """A pool of parsing processes behind a bounded queue; `parse` from the event loop only."""

    def __init__(self, processes: int, queue: int, blobs: Path, options: Options) -> None:
        self.processes = processes
        self.capacity = processes + queue
        self._blobs = blobs
        self._options = options
        self._in_hand = 0
        self._pool: ProcessPoolExecutor | None = None

    @property
    def in_hand(self) -> int:
        """Jobs submitted and not finished (running or waiting for a worker)."""
        return self._in_hand

    def pids(self) -> list[int]:
        """The workers' process ids (for the memory budget). The executor keeps them in
        `_processes`, unchanged since Python 3.2; none when that ever changes."""
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes)

    async def parse(self, envelope: Envelope, case_id: str) -> Parsed:
        """Normalise `envelope` in a worker and store its blobs there; raise `Busy` when the
        queue is full, `Unprocessable` as the normaliser does, `NotSafe` if the worker died."""
        if self._in_hand >= self.capacity:
            raise Busy("too many messages being parsed; try again later")
        pool = self._pool or self._new_pool()
        try:
            future: Future[Parsed] = pool.submit(_parse, envelope, case_id)
        except BrokenProcessPool:
            pool = self._replace(pool)
            future = pool.submit(_parse, envelope, case_id)
        self._in_hand += 1
        # Counted down when the job ends, not when the caller stops waiting (a client that
        # hangs up does not take its job out of the queue).
        future.add_done_callback(self._done)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(pool)
            raise NotSafe("a parsing worker stopped; try again later") from None

    def _done(self, _future: Future[Parsed]) -> None:
        # Called from the pool's manager thread.
        loop = self._loop
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(self._count_down)

    def _count_down(self) -> None:
        self._in_hand -= 1

    def _new_pool(self) -> ProcessPoolExecutor:
        self._loop = asyncio.get_running_loop()
        self._pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(), str(self._blobs), self._options),
        )
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A new pool for a broken one (once, however many jobs noticed it)."""
        if self._pool is broken:
            log.error("a parsing worker stopped; starting new workers")
            broken.shutdown(wait=False, cancel_futures=True)
            return self._new_pool()
        return self._pool or self._new_pool()

    async def close(self) -> None:
        """Let the jobs in hand finish, then stop the workers."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=False)


# --- in the worker process ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    blobs: BlobStore
    options: Options


_state: _State | None = None


def _start_worker(parent: int, blobs: str, options: Options) -> None:
    """A new worker: tied to the daemon's life first, then ready to parse."""
    global _state
    _die_with(parent)
    # The mail parser, loaded with the worker (envelope.py only imports it with the first mail).
    import normalizer.mail  # noqa: F401

    # Ctrl-C in a terminal reaches the whole process group: the daemon decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # When cores are short, the event loop (sessions, health, publishing) goes first: a few
    # large mails being parsed must not make the daemon slow to answer.
    os.nice(WORKER_NICENESS)
    _state = _State(BlobStore(Path(blobs)), options)


def _die_with(parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError):  # not Linux: watch the parent instead
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _parse(envelope: Envelope, case_id: str) -> Parsed:
    assert _state is not None
    payload = envelope.payload
    spooled = payload.file if isinstance(payload, RawMail) else None
    if spooled is None or not isinstance(payload, RawMail):
        normalized = normalize(envelope, case_id, _state.options)
        _state.blobs.put_all(normalized.blobs)
        return Parsed.of(normalized.case)
    try:
        return _parse_spooled(envelope, payload, spooled, case_id)
    finally:
        _give_back_memory()


def _parse_spooled(envelope: Envelope, mail: RawMail, file: Path, case_id: str) -> Parsed:
    """A large mail from the file it was written to as it arrived; the file becomes the
    original in the blob store (moved, not copied)."""
    assert _state is not None
    data = replace(mail, data=file.read_bytes(), file=None)
    normalized = normalize(replace(envelope, payload=data), case_id, _state.options)
    case = normalized.case
    _state.blobs.put_all(blob for blob in normalized.blobs if blob.ref != case.raw_ref)
    _state.blobs.adopt(file, case.raw_ref)
    return Parsed.of(case)


def _give_back_memory() -> None:
    """After a large mail: hand freed heap back to the system (glibc keeps it otherwise),
    so that the worker's resident memory returns near where it was."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
