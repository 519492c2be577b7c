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
from typing import Literal

import structlog
import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from channels.smtp import SmtpChannel
from channels.web import api_router
from dispatcher.consumer import Dispatcher, Routes
from dispatcher.database import StoreNotMigrated, shown_url
from dispatcher.decide import Decider
from dispatcher.feedback import CaseEvents
from dispatcher.store import Store
from dispatcher.triage import DefaultQueue
from ingest.blobstore import BlobStore
from ingest.broker import Broker, Session
from ingest.http import ReadinessCheck, create_app
from ingest.pipeline import Pipeline
from ingest.publisher import Publisher, spool_directory
from ingest.quarantine import Quarantine
from ingest.settings import Settings, StoreSettings
from ingest.spool import Spool
from normalizer.envelope import Options

log = structlog.get_logger("ingest.daemon")

Role = Literal["all", "channels", "dispatcher"]
STOP_BUDGET_S = 9.0


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


async def serve(settings: Settings, role: Role) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order."""
    listener = _listen(settings.http.host, settings.http.port)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    with_channels = role in ("all", "channels")
    with_dispatcher = role in ("all", "dispatcher")

    store = await _open_store(settings.store) if with_dispatcher else None
    dispatcher = _dispatcher(settings, store) if store else None
    sessions: list[Session] = []
    if dispatcher and store:
        events = CaseEvents(store, settings.dispatcher.case_ref_prefix, _event_routes(settings))
        sessions = [dispatcher.session, events.session]
    broker = Broker(settings.broker, settings.queues, sessions)
    checks: dict[str, ReadinessCheck] = {"broker": broker.readiness}
    if dispatcher:
        checks["store"] = dispatcher.readiness

    app = create_app(checks, package_version())
    background: set[asyncio.Task[None]] = {asyncio.create_task(broker.run(), name="broker")}
    listeners = _channels(settings, broker, app, background) if with_channels else []
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
    if dispatcher:
        dispatcher.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_BUDGET_S - settings.http.shutdown_grace_s):
                await dispatcher.idle.wait()
    await _cancel(background)
    if store:
        await store.close()
    log.info("stopped")


def _channels(
    settings: Settings, broker: Broker, app: FastAPI, background: set[asyncio.Task[None]]
) -> list[SmtpChannel]:
    """Build the pipeline, mount the HTTP channels; return the channels with listeners."""
    data_dir = settings.paths.data_dir
    spool = Spool(spool_directory(data_dir))
    if len(spool):
        log.info("spool holds messages from before", pending=len(spool))
    publisher = Publisher(broker, spool, settings.broker.publish_timeout_s)
    background.add(asyncio.create_task(publisher.drain_forever(), name="spool-drain"))
    blobs = BlobStore(data_dir / "blobs")
    options = Options(case_ref_pattern=settings.channels.mail.case_ref_pattern)
    pipeline = Pipeline(
        publisher,
        settings.queues.case_open,
        blobs,
        Quarantine(data_dir / "quarantine", blobs),
        options,
    )
    if settings.channels.web.enabled:
        app.include_router(api_router(settings.channels.web, pipeline.emit))
    listeners = []
    if settings.channels.smtp.enabled:
        listeners.append(SmtpChannel(settings.channels.smtp, pipeline.emit))
    return listeners


class StartupError(Exception):
    """A dependency the daemon cannot run without is not there; the message says which."""


async def _open_store(settings: StoreSettings) -> Store:
    try:
        return await Store.open(settings.url, settings.auto_migrate, settings.pool_size)
    except StoreNotMigrated as error:
        raise StartupError(str(error)) from None
    except (OSError, SQLAlchemyError) as error:
        raise StartupError(
            f"the store at {shown_url(settings.url)} cannot be opened: {error}"
        ) from None


def _dispatcher(settings: Settings, store: Store) -> Dispatcher:
    names = settings.queues
    routes = Routes(
        inbound=names.case_open,
        exchange=names.cases_exchange,
        dead_letters=names.case_open_dead,
    )
    decider = Decider(settings.dispatcher, names.case_update, DefaultQueue(names.default))
    return Dispatcher(store, decider, settings.dispatcher, routes)


def _event_routes(settings: Settings) -> tuple[str, str]:
    return settings.queues.case_events, settings.queues.case_events_dead


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


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

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


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
