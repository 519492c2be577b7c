"""Structured log lines on standard error: one event a line, logfmt or JSON."""

from __future__ import annotations

import logging
import sys

import structlog

from channels.registry import CHANNELS
from ingest.settings import LogSettings


def configure_logging(settings: LogSettings, handler: logging.Handler | None = None) -> None:
    """Route structlog and the standard library (aio-pika, uvicorn) through one renderer, to
    standard error unless another handler is given (the tests' in-process daemons)."""
    renderer: structlog.typing.Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["ts", "level", "event", "logger"], drop_missing=True
        )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    structlog.configure(
        # Below the level, a call costs one level check rather than the whole chain (the
        # time stamp alone is more than many a request's own work).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = handler or logging.StreamHandler(
        sys.stdout if settings.stream == "stdout" else sys.stderr
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # Library chatter stays at warning unless we are debugging.
    quiet = logging.DEBUG if settings.level == "debug" else logging.WARNING
    libraries = ("aio_pika", "aiormq", "uvicorn.access", "uvicorn.error", "sqlalchemy", "alembic")
    for name in (*libraries, *(name for channel in CHANNELS for name in channel.chatty_loggers)):
        logging.getLogger(name).setLevel(quiet)
    # A channel's secret loggers name URLs holding a token (a Telegram bot's), or customers'
    # messages (Twilio's client logs every request's recipient and text): warnings only, even
    # when debugging.
    for name in (name for channel in CHANNELS for name in channel.secret_loggers):
        logging.getLogger(name).setLevel(logging.WARNING)
