"""The daemon's lifecycle: start dependencies first and listeners last, stop in reverse.

SIGTERM or SIGINT: stop accepting HTTP requests and finish those in flight, let the
dispatcher finish its batch, then close the broker and the store; all within the grace time.
A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from channels.base import Listener, Wiring
from channels.replies import Repliers, build_repliers, unanswerable
from channels.replies.mail import mail_tokens
from dispatcher.acks import AckPolicy
from dispatcher.case_opens import CaseOpens, Routes
from dispatcher.database import StoreNotMigrated, shown_url
from dispatcher.decide import Decider
from dispatcher.feedback import CaseEvents
from dispatcher.knowledge.events import KbEvents
from dispatcher.store import Store
from dispatcher.triage import RulesError, RulesRouter, load_rules, watched_files
from dispatcher.triage.live import LiveRules
from ingest import systemd
from ingest.acknowledger import Acknowledger
from ingest.api_access import StoreAccess
from ingest.blobstore import BlobStore
from ingest.broker import Broker
from ingest.durable import write_durably
from ingest.http import ReadinessCheck, create_app
from ingest.measured import Measured
from ingest.memory import MemoryBudget
from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.publisher import Publisher, spool_directory
from ingest.quarantine import Quarantine
from ingest.rules_tool import golden_check
from ingest.runner import Consuming, Runner
from ingest.settings import Settings, StoreSettings
from ingest.spool import Spool
from ingest.store_check import StoreCheck
from ingest.workers import Workers

if TYPE_CHECKING:
    from dispatcher.intake import Intake
    from dispatcher.knowledge.base import Suggester

log = structlog.get_logger("ingest.daemon")

Role = Literal["all", "channels", "dispatcher"]
STOP_BUDGET_S = 9.0
CASE_EVENTS_PREFETCH = 50


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def package_version() -> str:
    """The installed version, or "dev" when running from a source tree."""
    try:
        return version("omnichannel-ingest")
    except PackageNotFoundError:
        return "dev"


async def serve(
    settings: Settings, role: Role, settings_path: Path, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order.

    A caller that owns the signals (a test running the daemon in its own process) passes
    `stop` instead, and sets it to shut down.
    """
    listener = listen(settings.http.host, settings.http.port)
    with_channels = role in ("all", "channels")
    with_dispatcher = role in ("all", "dispatcher")
    rules = live_rules(settings, settings_path) if with_dispatcher else None
    needs = settings.channels.needs() if with_channels else frozenset()
    wants_kb = with_dispatcher or "self-service" in needs
    kb = _kb(settings) if wants_kb else None
    owns_process = stop is None
    if stop is None:
        stop = asyncio.Event()
        _install_signal_handlers(stop, [live for live in (rules, kb) if live is not None])

    metrics = Metrics()
    with_api = "api-access" in needs
    # The JSON API keeps its keys, rate counts and idempotency records in the store too.
    store = await _open_store(settings.store) if with_dispatcher or with_api else None
    suggester = _suggester(kb, settings) if kb else None
    runners = _dispatcher(settings, store, rules, metrics, suggester) if store and rules else []
    checks: dict[str, ReadinessCheck] = {}
    advisories: dict[str, ReadinessCheck] = {}
    """Shown on /readyz without making it 503 (see `create_app`)."""
    store_check = StoreCheck(store, settings.store, metrics) if store else None
    if store_check and runners:
        checks["store"] = store_check.with_dispatcher(runners[0].readiness)
    repliers = None
    if with_channels:
        tokens = mail_tokens(settings.outbound.mail, settings.paths.data_dir, write_durably)
        repliers = build_repliers(settings.channels, settings.outbound, tokens)
        if tokens is not None:
            advisories["outbound-mail"] = repliers.readiness
    if repliers and settings.outbound.enabled:
        runners.append(_acknowledger(settings, repliers, metrics))
    broker = Broker(settings.broker, settings.queues, [runner.session for runner in runners])
    checks = {"broker": broker.readiness, **checks}

    metrics.gauge(
        "ingest_broker_connected",
        "1 while the broker connection is up.",
        lambda: float(broker.readiness() is None),
    )
    reports = {"rules": rules.health} if rules else {}
    if kb:
        reports["kb"] = kb.health
    app = create_app(checks, package_version(), metrics, reports, advisories)
    access = await _api_access(settings, store) if with_api and store else None
    await _warm_up_incidents(settings, with_dispatcher)
    background = _start_background(
        {
            "broker": broker.run,
            "rules-watch": rules.watch if rules else None,
            "store-check": store_check.run if store_check else None,
            "api-access-sync": access.run if access else None,
            "kb-watch": kb.watch if kb else None,
        }
    )
    workers = _workers(settings, metrics) if with_channels else None
    listeners = (
        _channels(
            settings,
            broker,
            app,
            background,
            metrics,
            checks,
            advisories,
            access,
            workers,
            suggester,
        )
        if workers
        else []
    )
    for channel in listeners:
        await channel.start()

    server = EmbeddedServer(_uvicorn_config(app, settings))
    http = asyncio.create_task(server.serve(sockets=[listener]), name="http")
    _started(settings, role, owns_process, background)
    await _wait_for_stop(stop, http)

    log.info("shutting down")
    systemd.notify("STOPPING=1", "STATUS=draining")
    server.should_exit = True
    for channel in listeners:
        await channel.stop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.http.shutdown_grace_s):
            await http
    if access:
        await access.close()
    await _drain(runners, STOP_BUDGET_S - settings.http.shutdown_grace_s)
    await _cancel(background)
    if workers is not None:
        await workers.close()
    if repliers:
        await repliers.close()
    if store:
        await store.close()
    log.info("stopped")


def _channels(
    settings: Settings,
    broker: Broker,
    app: FastAPI,
    background: set[asyncio.Task[None]],
    metrics: Metrics,
    checks: dict[str, ReadinessCheck],
    advisories: dict[str, ReadinessCheck],
    access: StoreAccess | None,
    workers: Workers,
    suggester: Suggester | None = None,
) -> list[Listener]:
    """Build the pipeline and the enabled channels (`channels.registry`), mount their routes;
    return their listeners. A channel's lasting problem goes to `advisories`."""
    data_dir = settings.paths.data_dir
    spool = Spool(spool_directory(data_dir))
    if len(spool):
        log.info("spool holds messages from before", pending=len(spool))
    metrics.gauge(
        "ingest_spool_pending",
        "Case-opens in the local spool waiting for the broker.",
        spool.__len__,
    )
    metrics.gauge(
        "ingest_spool_bytes", "Bytes the local spool takes on disk.", lambda: spool.size_bytes
    )
    limit = float(settings.spool.max_bytes)
    metrics.gauge("ingest_spool_max_bytes", "[spool] max_mb, in bytes.", lambda: limit)
    publisher = Publisher(
        broker,
        spool,
        settings.broker.publish_timeout_s,
        settings.spool.max_bytes,
        settings.queues.intake_exchange,
    )
    checks["spool"] = publisher.readiness
    background.add(asyncio.create_task(publisher.drain_forever(), name="spool-drain"))
    blobs = BlobStore(data_dir / "blobs")
    options = settings.normalizer_options()
    quarantine = Quarantine(data_dir / "quarantine", blobs)
    metrics.gauge(
        "ingest_quarantine_entries",
        "Inputs kept in the quarantine, not yet replayed.",
        quarantine.__len__,
    )
    memory = _memory(settings, metrics, workers)
    pipeline = Pipeline(
        publisher, settings.queues, blobs, quarantine, options, metrics, workers, memory
    )
    enabled = settings.channels.enabled()
    if any("mail" not in record.payloads for record, _ in enabled):
        # Their messages are normalised on the event loop (mail in the parsing workers): load
        # the language model first.
        background.add(asyncio.create_task(pipeline.warm_up(), name="language-warm-up"))
    self_service = None
    if suggester is not None and "self-service" in settings.channels.needs():
        from ingest.self_service import KbSelfService

        self_service = KbSelfService(suggester, publisher, settings.queues)
    wiring = Wiring(pipeline.emit, data_dir, write_durably, pipeline.admit, access, self_service)
    listeners: list[Listener] = []
    for record, section in enabled:
        built = record.builder()(section, wiring)
        if built.router is not None:
            app.include_router(built.router)
        if built.listener is not None:
            listeners.append(built.listener)
        if built.readiness is not None:
            advisories[record.name] = built.readiness
    return listeners


def _start_background(
    jobs: dict[str, Callable[[], Coroutine[Any, Any, None]] | None],
) -> set[asyncio.Task[None]]:
    """Start the tasks that run beside the listeners for the daemon's whole life."""
    return {asyncio.create_task(job(), name=name) for name, job in jobs.items() if job}


def _started(
    settings: Settings, role: Role, owns_process: bool, background: set[asyncio.Task[None]]
) -> None:
    """Say so in the log and to systemd (feeding its watchdog from now on); settle the
    garbage collector when this process is the daemon's own."""
    log.info("daemon started", role=role, http=f"{settings.http.host}:{settings.http.port}")
    if owns_process:
        settle_garbage_collector()
    systemd.notify("READY=1", f"STATUS=running ({role})")
    if (interval_s := systemd.watchdog_interval_s()) is not None:
        background.add(asyncio.create_task(systemd.keep_watchdog_fed(interval_s), name="watchdog"))


def _workers(settings: Settings, metrics: Metrics) -> Workers:
    """The parsing workers of the mail channels (they start with the first mail)."""
    workers = Workers(
        settings.workers.processes,
        settings.workers.queue,
        settings.paths.data_dir / "blobs",
        settings.normalizer_options(),
    )
    metrics.gauge(
        "ingest_parsing_in_hand",
        "Mails being parsed or waiting for a parsing worker.",
        lambda: float(workers.in_hand),
    )
    metrics.gauge(
        "ingest_parsing_capacity",
        "Mails that may be in hand at once (workers plus queue); past it, 451 4.3.2.",
        lambda: float(workers.capacity),
    )
    return workers


def _memory(settings: Settings, metrics: Metrics, workers: Workers) -> MemoryBudget:
    memory = MemoryBudget(settings.limits.memory_mb, workers.pids)
    metrics.gauge(
        "ingest_memory_bytes",
        "Resident memory of the daemon and its parsing workers.",
        lambda: float(memory.used_bytes()),
    )
    metrics.gauge(
        "ingest_memory_budget_bytes",
        "[limits] memory_mb in bytes (0: none); past it, new mail gets 451 4.3.1.",
        lambda: float(memory.limit_bytes),
    )
    return memory


GC_THRESHOLDS = (10_000, 20, 20)


def settle_garbage_collector() -> None:
    """Once started, what start-up built (modules, settings, compiled rules, the language
    model) lives as long as the process: it leaves the collector's generations, and the
    youngest generation is collected every 10,000 allocations instead of 700. Measured in
    the dispatcher: collections scanning those objects cost 0.3 ms of CPU per message, as
    much as deciding it; after this, 0.03 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class StartupError(Exception):
    """A dependency the daemon cannot run without is not there; the message says which."""


async def _api_access(settings: Settings, store: Store) -> StoreAccess:
    """The JSON API's keys, rate counts and idempotency records, its keys loaded."""
    web = settings.channels.web
    access = StoreAccess(
        store, web.api_keys, web.rate_window_s, timedelta(hours=web.idempotency_hours)
    )
    try:
        await access.load()
    except (OSError, SQLAlchemyError) as error:
        raise StartupError(f"the API keys cannot be read from the store: {error}") from None
    return access


async def _open_store(settings: StoreSettings) -> Store:
    try:
        return await Store.open(
            settings.url,
            settings.auto_migrate,
            settings.pool_size,
            settings.lock_timeout_s,
            settings.statement_timeout_s,
            connect_timeout_s=settings.check_timeout_s,
        )
    except StoreNotMigrated as error:
        raise StartupError(str(error)) from None
    except (OSError, SQLAlchemyError) as error:
        raise StartupError(
            f"the store at {shown_url(settings.url)} cannot be opened: {error}"
        ) from None


def _dispatcher(
    settings: Settings,
    store: Store,
    rules: LiveRules,
    metrics: Metrics,
    suggester: Suggester | None = None,
) -> list[Runner]:
    """The runners of case-open, case-events and kb-events, the dispatcher's queues."""
    names, options = settings.queues, settings.dispatcher
    decider = build_decider(settings, rules, suggester)
    routes = Routes(
        exchange=names.cases_exchange,
        acknowledgements=names.acknowledgements,
        incidents=names.incidents,
        requests=names.dispatch_exchange,
    )
    retries = {
        "attempts": options.attempts,
        "retry_first_s": options.retry_first_s,
        "retry_max_s": options.retry_max_s,
        "delivery_limit": names.delivery_limit,
    }
    partitions = names.partitions()
    own = [name for p, name in enumerate(partitions) if options.owns(p)]
    case_opens = Consuming(
        name="dispatcher",
        queues=[names.case_open, *own],
        standby=[name for name in partitions if name not in own],
        standby_delay_s=options.standby_delay_s,
        handback_s=options.handback_s,
        dead_letters=names.case_open_dead,
        dead_letter_exchange=names.dispatch_exchange,
        prefetch=options.prefetch,
        batch_size=options.batch_size,
        batch_wait_s=options.batch_wait_ms / 1000,
        **retries,  # type: ignore[arg-type]
    )
    events = Consuming(
        name="case-events",
        queues=[names.case_events],
        dead_letters=names.case_events_dead,
        dead_letter_exchange=names.dispatch_exchange,
        prefetch=CASE_EVENTS_PREFETCH,
        batch_size=CASE_EVENTS_PREFETCH,
        **retries,  # type: ignore[arg-type]
    )
    kb_events = Consuming(
        name="kb-events",
        queues=[names.kb_events],
        dead_letters=names.kb_events_dead,
        dead_letter_exchange=names.dispatch_exchange,
        prefetch=CASE_EVENTS_PREFETCH,
        batch_size=CASE_EVENTS_PREFETCH,
        **retries,  # type: ignore[arg-type]
    )
    return [
        Runner(
            Measured(CaseOpens(store, decider, options, routes), metrics),
            case_opens,
            metrics.tally("case-open"),
        ),
        Runner(CaseEvents(store, options.case_ref_prefix), events, metrics.tally("case-events")),
        Runner(KbEvents(store), kb_events, metrics.tally("kb-events")),
    ]


def _acknowledger(settings: Settings, repliers: Repliers, metrics: Metrics) -> Runner:
    """The sender of acknowledgements (the channels role, unless turned off)."""
    names, outbound = settings.queues, settings.outbound
    consuming = Consuming(
        name="acknowledger",
        queues=[names.acknowledgements],
        dead_letters=names.acknowledgements_dead,
        dead_letter_exchange=names.intake_exchange,
        prefetch=outbound.concurrency,
        batch_size=outbound.concurrency,
        transactional=False,
        retry_first_s=outbound.retry_first_s,
        retry_max_s=outbound.retry_max_s,
        delivery_limit=names.acknowledgement_delivery_limit,
    )
    return Runner(Acknowledger(repliers), consuming, metrics.tally("acknowledgements"))


def _uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(settings.http.shutdown_grace_s),
        server_header=False,
    )


def live_rules(settings: Settings, settings_path: Path) -> LiveRules:
    """The triage rules; invalid ones (or failing golden tests) stop start-up: there are no
    earlier ones to keep."""
    queues = settings.queues
    golden = golden_check(settings)
    try:
        return LiveRules(
            lambda: load_rules(settings_path, queues.declared_teams(), queues.default, golden),
            lambda: watched_files(settings_path),
        )
    except RulesError as error:
        raise StartupError("invalid triage rules: " + "; ".join(error.problems)) from None


def build_decider(
    settings: Settings, rules: LiveRules, suggester: Suggester | None = None
) -> Decider:
    """The dispatcher's decider: triage on `rules`, acknowledgement requests, and intake
    (knowledge-base suggestions, incidents) as the settings turn them on."""
    router = RulesRouter(rules)
    acks = AckPolicy(
        router, lambda ack: unanswerable(ack.channel, ack.to, settings.channels, settings.outbound)
    )
    intake = _intake(settings, suggester)
    return Decider(settings.dispatcher, settings.queues.case_update, router, acks, intake)


def _intake(settings: Settings, suggester: Suggester | None) -> Intake | None:
    """Knowledge-base suggestions and incident detection, if either is on (imported only
    then: NumPy and datasketch are not small)."""
    from dispatcher.incidents.detect import IncidentDetector
    from dispatcher.intake import Intake

    detector = IncidentDetector(settings.incidents) if settings.incidents.enabled else None
    return Intake(suggester, detector) if suggester or detector else None


async def _warm_up_incidents(settings: Settings, with_dispatcher: bool) -> None:
    """Import datasketch (and the SciPy it brings: 0.7 s of CPU, seconds on a busy machine)
    before the dispatcher consumes, in a worker thread: imported by the first batch instead,
    or beside it, it held up the first forwards (and counted in every per-message figure of
    the benchmarks). Only a dispatcher imports it; the channels' start is not delayed."""
    if not (with_dispatcher and settings.incidents.enabled):
        return
    from dispatcher.incidents.signature import prepare

    await asyncio.to_thread(prepare)


def _suggester(kb: LiveRules, settings: Settings) -> Suggester:
    from dispatcher.knowledge.base import Suggester

    return Suggester(kb, settings.kb)


def _kb(settings: Settings) -> LiveRules | None:
    """The knowledge base, when `[kb] path` names one; a folder that cannot be read stops
    start-up (bad articles are only left out)."""
    if settings.kb.path is None:
        return None
    from dispatcher.knowledge.articles import KbError
    from dispatcher.knowledge.base import live_kb

    try:
        return live_kb(settings.kb.path)
    except KbError as error:
        raise StartupError("knowledge base: " + "; ".join(error.problems)) from None


def _install_signal_handlers(stop: asyncio.Event, lives: list[LiveRules]) -> None:
    loop = asyncio.get_running_loop()
    if lives:

        def reload_all() -> None:
            for live in lives:
                live.request_reload("SIGHUP")

        loop.add_signal_handler(signal.SIGHUP, reload_all)

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", signal=signum.name)
            os._exit(130)
        log.info("signal received", signal=signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def listen(host: str, port: int) -> socket.socket:
    """Bind the HTTP port first, so that a taken port stops start-up with one clear line.

    The protocol is named (IPPROTO_TCP, not 0): asyncio turns Nagle's algorithm off only on
    connections whose socket says TCP, and with it on, a response written as head and body
    waited for the client's delayed ACK, 40 ms on every request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    listener.set_inheritable(True)
    return listener


async def _wait_for_stop(stop: asyncio.Event, http: asyncio.Task[None]) -> None:
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, http], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if http.done() and not stop.is_set():
        raise StartupError("the HTTP server stopped unexpectedly")


async def _drain(runners: list[Runner], budget_s: float) -> None:
    """Let consumers take no new work and finish what they hold, within the budget."""
    for runner in runners:
        runner.stop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(budget_s):
            for runner in runners:
                await runner.idle.wait()


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
