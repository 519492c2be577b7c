"""The daemon's lifecycle: start dependencies first and listeners last, stop in reverse.

SIGTERM or SIGINT: stop accepting HTTP requests and finish those in flight, let the
dispatcher finish its batch, then close the broker and the store; all within the grace time.
A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import structlog
import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from channels.base import Listener
from channels.contact import contact_router
from channels.imap import ImapChannel
from channels.replies import Repliers, build_repliers
from channels.smtp import SmtpChannel
from channels.telegram import telegram_channel
from channels.twilio import TwilioChannel
from channels.web import api_router
from dispatcher.acks import AckPolicy
from dispatcher.case_opens import CaseOpens, Routes
from dispatcher.database import StoreNotMigrated, shown_url
from dispatcher.decide import Decider
from dispatcher.feedback import CaseEvents
from dispatcher.store import Store
from dispatcher.triage import RulesError, RulesRouter, load_rules, watched_files
from dispatcher.triage.live import LiveRules
from ingest.acknowledger import Acknowledger
from ingest.blobstore import BlobStore
from ingest.broker import Broker
from ingest.durable import write_durably
from ingest.http import ReadinessCheck, create_app
from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.publisher import Publisher, spool_directory
from ingest.quarantine import Quarantine
from ingest.rules_tool import golden_check
from ingest.runner import Consuming, Runner
from ingest.settings import Settings, StoreSettings
from ingest.spool import Spool

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
    listener = _listen(settings.http.host, settings.http.port)
    with_channels = role in ("all", "channels")
    with_dispatcher = role in ("all", "dispatcher")
    rules = _rules(settings, settings_path) if with_dispatcher else None
    if stop is None:
        stop = asyncio.Event()
        _install_signal_handlers(stop, rules)

    metrics = Metrics()
    store = await _open_store(settings.store) if with_dispatcher else None
    runners = _dispatcher(settings, store, rules, metrics) if store and rules else []
    checks: dict[str, ReadinessCheck] = {}
    if runners:
        checks["store"] = runners[0].readiness
    repliers = build_repliers(settings.channels, settings.outbound) if with_channels else None
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
    app = create_app(checks, package_version(), metrics, reports)
    background: set[asyncio.Task[None]] = {asyncio.create_task(broker.run(), name="broker")}
    if rules:
        background.add(asyncio.create_task(rules.watch(), name="rules-watch"))
    listeners = _channels(settings, broker, app, background, metrics) if with_channels else []
    for channel in listeners:
        await channel.start()

    server = EmbeddedServer(_uvicorn_config(app, settings))
    http = asyncio.create_task(server.serve(sockets=[listener]), name="http")
    log.info("daemon started", role=role, http=f"{settings.http.host}:{settings.http.port}")
    await _wait_for_stop(stop, http)

    log.info("shutting down")
    server.should_exit = True
    for channel in listeners:
        await channel.stop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.http.shutdown_grace_s):
            await http
    await _drain(runners, STOP_BUDGET_S - settings.http.shutdown_grace_s)
    await _cancel(background)
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
) -> list[Listener]:
    """Build the pipeline, mount the HTTP channels; return the channels with listeners."""
    data_dir = settings.paths.data_dir
    spool = Spool(spool_directory(data_dir))
    if len(spool):
        log.info("spool holds messages from before", pending=len(spool))
    metrics.gauge(
        "ingest_spool_pending",
        "Case-opens in the local spool waiting for the broker.",
        spool.__len__,
    )
    publisher = Publisher(broker, spool, settings.broker.publish_timeout_s)
    background.add(asyncio.create_task(publisher.drain_forever(), name="spool-drain"))
    blobs = BlobStore(data_dir / "blobs")
    options = settings.normalizer_options()
    pipeline = Pipeline(
        publisher,
        settings.queues,
        blobs,
        Quarantine(data_dir / "quarantine", blobs),
        options,
        metrics,
    )
    if settings.channels.web.enabled:
        app.include_router(api_router(settings.channels.web, pipeline.emit))
    if settings.channels.contact.enabled:
        app.include_router(contact_router(settings.channels.contact, pipeline.emit))
    listeners: list[Listener] = []
    if settings.channels.smtp.enabled:
        listeners.append(SmtpChannel(settings.channels.smtp, pipeline.emit))
    if settings.channels.imap.enabled:
        imap_state = data_dir / "imap"
        listeners.append(
            ImapChannel(settings.channels.imap, pipeline.emit, imap_state, write_durably)
        )
    if settings.channels.twilio.enabled:
        twilio = TwilioChannel(
            settings.channels.twilio,
            pipeline.emit,
            data_dir / "twilio-calls",
            write_durably,
            data_dir / "twilio-media",
        )
        app.include_router(twilio.router)
        listeners.append(twilio)
    if settings.channels.telegram.enabled:
        telegram, router = telegram_channel(settings.channels.telegram, pipeline.emit)
        listeners.append(telegram)
        if router is not None:
            app.include_router(router)
    return listeners


class StartupError(Exception):
    """A dependency the daemon cannot run without is not there; the message says which."""


async def _open_store(settings: StoreSettings) -> Store:
    try:
        return await Store.open(
            settings.url, settings.auto_migrate, settings.pool_size, settings.lock_timeout_s
        )
    except StoreNotMigrated as error:
        raise StartupError(str(error)) from None
    except (OSError, SQLAlchemyError) as error:
        raise StartupError(
            f"the store at {shown_url(settings.url)} cannot be opened: {error}"
        ) from None


def _dispatcher(
    settings: Settings, store: Store, rules: LiveRules, metrics: Metrics
) -> list[Runner]:
    """The runners of case-open and case-events, the dispatcher's two queues."""
    names, options = settings.queues, settings.dispatcher
    router = RulesRouter(rules)
    decider = Decider(options, names.case_update, router, AckPolicy(router))
    routes = Routes(exchange=names.cases_exchange, acknowledgements=names.acknowledgements)
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
        prefetch=options.prefetch,
        batch_size=options.batch_size,
        batch_wait_s=options.batch_wait_ms / 1000,
        **retries,  # type: ignore[arg-type]
    )
    events = Consuming(
        name="case-events",
        queues=[names.case_events],
        dead_letters=names.case_events_dead,
        prefetch=CASE_EVENTS_PREFETCH,
        batch_size=CASE_EVENTS_PREFETCH,
        **retries,  # type: ignore[arg-type]
    )
    return [
        Runner(CaseOpens(store, decider, options, routes), case_opens, metrics.tally("case-open")),
        Runner(CaseEvents(store, options.case_ref_prefix), events, metrics.tally("case-events")),
    ]


def _acknowledger(settings: Settings, repliers: Repliers, metrics: Metrics) -> Runner:
    """The sender of acknowledgements (the channels role, unless turned off)."""
    names, outbound = settings.queues, settings.outbound
    consuming = Consuming(
        name="acknowledger",
        queues=[names.acknowledgements],
        dead_letters=names.acknowledgements_dead,
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


def _rules(settings: Settings, settings_path: Path) -> LiveRules:
    """The triage rules; invalid ones (or failing golden tests) stop start-up: there are no
    earlier ones to keep."""
    queues = settings.queues
    golden = golden_check(settings, cached=False)
    try:
        return LiveRules(
            lambda: load_rules(settings_path, queues.declared_teams(), queues.default, golden),
            lambda: watched_files(settings_path),
        )
    except RulesError as error:
        raise StartupError("invalid triage rules: " + "; ".join(error.problems)) from None


def _install_signal_handlers(stop: asyncio.Event, rules: LiveRules | None) -> None:
    loop = asyncio.get_running_loop()
    if rules is not None:
        loop.add_signal_handler(signal.SIGHUP, rules.request_reload, "SIGHUP")

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", signal=signum.name)
            os._exit(130)
        log.info("signal received", signal=signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the HTTP port first, so that a taken port stops start-up with one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
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
