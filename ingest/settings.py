"""Typed, validated settings: `settings.toml` overlaid by `INGEST_<SECTION>__<KEY>` variables."""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from channels.registry import ChannelSettings
from channels.settings import OutboundSettings
from dispatcher.settings import DispatcherSettings, IncidentSettings, KbSettings
from normalizer.envelope import Options
from normalizer.language import model_cache

ENV_PREFIX = "INGEST_"
ENV_NESTING = "__"
DEFAULT_SETTINGS_FILE = Path("settings.toml")
DATABASE_URL = re.compile(r"^(?P<backend>[A-Za-z][A-Za-z0-9]*)(\+\w+)?://(?P<rest>.*)$")


class SettingsError(Exception):
    """The settings cannot be used; the message names the source, the key and the reason."""


class Section(BaseModel):
    """Base of every settings section: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BrokerSettings(Section):
    """Where RabbitMQ is and how hard to lean on it."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    heartbeat_s: int = Field(default=15, ge=1, le=600)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    declare_topology: bool = Field(
        default=True,
        description="Declare queues and exchanges on connect; off for a broker user that may "
        "not (deploy/rabbitmq/setup.sh's users), where `ingest broker declare` did it.",
    )

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value


class StoreSettings(Section):
    """The SQL store: a plain database URL; the async driver is chosen from the scheme.

    `auto_migrate`: apply missing migrations at start-up instead of refusing to start.
    `lock_timeout_s`: how long a transaction waits for a lock another holds before it fails
    (and is retried): SQLite's busy timeout, PostgreSQL's `lock_timeout`.
    `statement_timeout_s`: PostgreSQL's `statement_timeout` for the dispatcher: a statement
    running longer fails (and its batch is retried).
    `check_interval_s`, `check_timeout_s`: how often /readyz's store check runs, with or
    without traffic, and how long it may take (connecting, and on PostgreSQL waiting for a
    lock on the dispatcher's tables) before the store is reported not ready.
    """

    url: str = "sqlite:///var/ingest.db"
    auto_migrate: bool = False
    pool_size: int = Field(default=5, ge=1, le=100)
    lock_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    statement_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    check_interval_s: float = Field(default=1.0, gt=0, le=60)
    check_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        found = DATABASE_URL.match(value)
        if found is None:
            raise ValueError("not a database URL (e.g. postgresql://user@host/db)")
        if found["backend"].lower() not in ("sqlite", "postgresql"):
            raise ValueError("only sqlite:/// and postgresql:// URLs are supported")
        return value


class PathSettings(Section):
    """Where the daemon keeps its local files (spool, blobs, the SQLite store)."""

    data_dir: Path = Path("./var")


class SpoolSettings(Section):
    """The local spool that keeps messages while the broker cannot take them."""

    max_mb: float = Field(
        default=1024.0,
        gt=0,
        description="Past this size new messages are refused with a retry-later answer.",
    )

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


class HttpSettings(Section):
    """The HTTP server shared by the web channel, later Twilio, and health endpoints."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    shutdown_grace_s: float = Field(default=5.0, ge=0)


class QueueSettings(Section):
    """Names on the broker; every name can be changed, e.g. to share one vhost."""

    case_open: str = "case-open"
    case_open_partitions: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Queues case-open is split over by sender (1: the one queue case_open).",
    )
    case_open_dead: str = "case-open.dead"
    intake_exchange: str = Field(
        default="intake",
        description="The channels' exchange: case-opens, contact-form events and the dead "
        "letters of acknowledgements, each routed by its queue's name. The channels' broker "
        "user may publish here only (deploy/rabbitmq/setup.sh), not to the default exchange.",
    )
    cases_exchange: str = "cases"
    dispatch_exchange: str = Field(
        default="dispatch",
        description="The dispatcher's exchange for what is not a case: acknowledgement "
        "requests, incident notices and dead letters, each routed by its queue's name. The "
        "dispatcher's broker user may publish here and to `cases` only.",
    )
    case_update: str = "case-update"
    case_events: str = "case-events"
    case_events_dead: str = "case-events.dead"
    default: str = "support.general"
    teams: list[str] = Field(default_factory=lambda: ["support.general"])
    team_dead: str = "cases.dead"
    delivery_limit: int = Field(default=5, ge=1, le=1000)
    team_delivery_limit: int = Field(default=20, ge=1, le=1000)
    acknowledgements: str = "acknowledgements"
    acknowledgements_dead: str = "acknowledgements.dead"
    acknowledgement_delivery_limit: int = Field(
        default=10, ge=2, le=1000, description="Send attempts of one acknowledgement."
    )
    incidents: str = Field(
        default="incidents", description="Notices of incidents forming and growing."
    )
    kb_events: str = Field(
        default="kb-events",
        description="Articles shown and accepted on the contact form, for the dispatcher.",
    )
    kb_events_dead: str = "kb-events.dead"

    def partitions(self) -> list[str]:
        """The partition queues of case-open (none when it is not split)."""
        count = self.case_open_partitions
        return [f"{self.case_open}.{p}" for p in range(count)] if count > 1 else []

    def declared_teams(self) -> list[str]:
        """The team queues to declare: the configured ones plus the default, once each."""
        return list(dict.fromkeys([*self.teams, self.default]))


class NormalizerSettings(Section):
    """What the normalisers share across channels."""

    languages: list[str] = Field(
        default_factory=lambda: ["en", "de", "fr", "es", "da", "zh", "ja"],
        description="ISO 639-1 codes to detect among when a message does not say; [] turns it off.",
    )


class WorkerSettings(Section):
    """The processes that parse and normalise mail (SMTP, IMAP), off the event loop.

    `processes`: how many; they die with the daemon. `queue`: mails that may wait for a
    free worker; past that, new mail is answered 451 4.3.2 (try again later).
    """

    processes: int = Field(default=2, ge=1, le=64)
    queue: int = Field(default=32, ge=0, le=10_000)


class LimitSettings(Section):
    """What the daemon may use of the machine.

    `memory_mb`: resident memory of the daemon and its parsing workers; past it, new mail is
    refused with 451 4.3.1 (and mail fetched over IMAP waits) until it is back under.
    0: no budget.
    """

    memory_mb: int = Field(default=1024, ge=0)


class LogSettings(Section):
    """Log lines, one event a line, on standard error (or output: journald takes either)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"
    stream: Literal["stderr", "stdout"] = "stderr"


_file_values: ContextVar[dict[str, Any] | None] = ContextVar("_file_values", default=None)


class Settings(BaseSettings):
    """Everything the daemon reads at start-up. Passed explicitly, never a global."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTING, extra="forbid"
    )

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    queues: QueueSettings = Field(default_factory=QueueSettings)
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    normalizer: NormalizerSettings = Field(default_factory=NormalizerSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    kb: KbSettings = Field(default_factory=KbSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    triage: dict[str, Any] = Field(
        default_factory=dict,
        description="Triage rules; validated by dispatcher.triage (`ingest rules check`).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, so that secrets never need to be in it.
        return env_settings, InitSettingsSource(settings_cls, _file_values.get() or {})

    def normalizer_options(self) -> Options:
        """What the normalisers need from these settings."""
        return Options(
            case_ref_pattern=self.channels.mail.case_ref_pattern,
            languages=tuple(self.normalizer.languages),
            model_cache=model_cache(),
        )

    def resolved(self, base: Path) -> Settings:
        """Relative paths in the file are taken relative to the file's own folder."""
        data_dir = self.paths.data_dir
        if not data_dir.is_absolute():
            data_dir = (base / data_dir).resolve()
        kb_path = self.kb.path
        if kb_path is not None and not kb_path.is_absolute():
            kb_path = (base / kb_path).resolve()
        return self.model_copy(
            update={
                "paths": self.paths.model_copy(update={"data_dir": data_dir}),
                "kb": self.kb.model_copy(update={"path": kb_path}),
                "store": self.store.model_copy(update={"url": _sqlite_path(self.store.url, base)}),
            }
        )


def _sqlite_path(url: str, base: Path) -> str:
    """A SQLite URL with its file relative to `base` made absolute; any other URL as it is.
    (Parsed here rather than by SQLAlchemy, so that commands that never open the store start
    without importing it.)"""
    found = DATABASE_URL.match(url)
    if found is None or found["backend"].lower() != "sqlite":
        return url
    database, mark, query = found["rest"].removeprefix("/").partition("?")
    if not database or database == ":memory:" or Path(database).is_absolute():
        return url
    scheme = url.split("://", 1)[0]
    return f"{scheme}:///{(base / database).resolve()}{mark}{query}"


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings file and the environment; raise SettingsError with one readable line."""
    path = path or DEFAULT_SETTINGS_FILE
    values = _read_toml(path)
    token = _file_values.set(values)
    try:
        settings = Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error, path)) from None
    finally:
        _file_values.reset(token)
    return settings.resolved(path.resolve().parent)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None


def _describe(error: ValidationError, path: Path) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        problems.append(f"{_source_of(item['loc'], path)}: {key}: {item['msg']}")
    return "; ".join(problems)


def _source_of(loc: tuple[int | str, ...], path: Path) -> str:
    """Name the environment variable that set this key, if one did, else the file."""
    for end in range(len(loc), 0, -1):
        name = ENV_PREFIX + ENV_NESTING.join(str(part) for part in loc[:end]).upper()
        if name in os.environ:
            return f"environment {name}"
    return str(path)
