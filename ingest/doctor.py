"""`ingest doctor`: one line per check of a running installation, each failure with the fix.

Checks what the daemon needs and an admin can get wrong: the settings, the broker (reachable,
this user's permissions, the topology declared), the store (reachable, migrated), the disk
under the data folder (room for the spool's limit and for blobs), TLS certificates (not
expired, not about to), the triage rules, and the OAuth2 authorizations of mailboxes and
the outbound relay (as the daemon recorded them: a refresh token the provider refused shows
here with the command that mends it; the doctor spends no token itself, since a refresh may
rotate the token under the running daemon).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import aio_pika
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ProbableAuthenticationError,
)

from channels.oauth2 import TokenStore
from ingest.redact import url_without_password
from ingest.settings import Settings

Status = Literal["ok", "warn", "FAIL"]
CERT_WARN_DAYS = 21
MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    """One check's outcome; `fix` says what to do when it is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"{self.status:<5} {self.name:<12} {self.detail}{fix}"


def run_checks(settings: Settings, settings_path: Path, role: str) -> list[Check]:
    """Every check, in the order an admin would fix them."""
    checks = [asyncio.run(broker_check(settings, role))]
    if role in ("all", "dispatcher"):
        checks.append(store_check(settings))
        checks.append(rules_check(settings, settings_path))
    checks.append(disk_check(settings))
    checks += certificate_checks(settings)
    if role in ("all", "channels"):
        checks += oauth2_checks(settings)
    return checks


async def broker_check(settings: Settings, role: str) -> Check:
    """Connect, then look for every queue this role uses and the exchanges it publishes to
    (passively: no permission needed to be told one exists, so a refusal here is about
    this user's vhost access), and publish a probe to those exchanges: routed to no queue,
    it is dropped, and a refusal says this user may not write there."""
    shown = url_without_password(settings.broker.url)
    try:
        connection = await aio_pika.connect(
            settings.broker.url, timeout=settings.broker.connect_timeout_s
        )
    except ProbableAuthenticationError:
        return Check(
            "broker",
            "FAIL",
            f"{shown}: login refused",
            "check the user and password in INGEST_BROKER__URL (deploy/rabbitmq/setup.sh)",
        )
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
        return Check(
            "broker",
            "FAIL",
            f"{shown}: cannot connect ({type(error).__name__}: {error})",
            "is RabbitMQ running (systemctl status rabbitmq-server) and [broker] url right?",
        )
    names = settings.queues
    wanted = [names.case_open, *names.partitions()] if role != "channels" else []
    wanted += [names.acknowledgements] if role != "dispatcher" else [names.case_events]
    wanted += names.declared_teams() if role != "channels" else []
    exchanges = [names.intake_exchange] if role != "dispatcher" else []
    exchanges += [names.dispatch_exchange] if role != "channels" else []
    missing: list[str] = []
    async with connection:
        for name in [*wanted, *exchanges]:
            channel = await connection.channel()
            try:
                if name in wanted:
                    await channel.declare_queue(name, passive=True)
                else:
                    await channel.declare_exchange(name, passive=True)
            except ChannelNotFoundEntity:
                missing.append(name)
            except ChannelAccessRefused:
                return Check(
                    "broker",
                    "FAIL",
                    f"{shown}: no access to {name}",
                    "give this user its permissions: deploy/rabbitmq/setup.sh",
                )
            finally:
                if not channel.is_closed:
                    await channel.close()
        publishable = [] if missing else exchanges
        refused = [name for name in publishable if not await _may_publish(connection, name)]
    if missing:
        return Check(
            "broker",
            "FAIL",
            f"{shown}: missing {', '.join(missing)}",
            "declare the topology: ingest broker declare --url <an admin user's URL>",
        )
    if refused:
        return Check(
            "broker",
            "FAIL",
            f"{shown}: may not publish to {', '.join(refused)}",
            "give this user its permissions: run deploy/rabbitmq/setup.sh again (safe to)",
        )
    found = f"{len(wanted)} queues and {len(exchanges)} exchange(s)"
    return Check("broker", "ok", f"{shown}: connected, {found} in place")


PROBE_KEY = "ingest-doctor.probe"
"""A routing key no queue is bound with on the intake and dispatch exchanges."""


async def _may_publish(connection: aio_pika.abc.AbstractConnection, exchange: str) -> bool:
    """Publish an empty message that routes nowhere; False when the broker refuses it."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(b""), routing_key=PROBE_KEY)
    except ChannelAccessRefused:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


def store_check(settings: Settings) -> Check:
    """Reachable and at the revision this version needs."""
    from ingest.store_ops import db_status

    try:
        status = db_status(settings)
    except Exception as error:  # click's exception carries the one line to show
        return Check(
            "store",
            "FAIL",
            str(getattr(error, "message", error)),
            "is the database up and [store] url right?",
        )
    current, _, needed = status.removeprefix("store at ").partition("; this version needs ")
    if current != needed:
        return Check("store", "FAIL", status, "ingest db upgrade (install.sh does it on upgrade)")
    return Check("store", "ok", f"migrated ({current})")


def rules_check(settings: Settings, settings_path: Path) -> Check:
    from dispatcher.triage import RulesError
    from ingest.rules_tool import golden_check, rules_from

    try:
        rule_set = rules_from(settings, settings_path, golden_check(settings))
    except RulesError as error:
        return Check(
            "rules",
            "FAIL",
            "; ".join(error.problems)[:300],
            "ingest rules check shows every problem",
        )
    return Check("rules", "ok", f"{len(rule_set.rules)} rules")


def disk_check(settings: Settings) -> Check:
    """Room under the data folder for the spool at its limit, and a margin for blobs."""
    folder = settings.paths.data_dir
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    needed = settings.spool.max_bytes + MIN_FREE_BYTES
    detail = f"{free / 2**30:.1f} GiB free at {existing}"
    if free < needed:
        return Check(
            "disk",
            "warn",
            f"{detail}, less than the spool's max_mb and 1 GiB for blobs",
            "free space there or lower [spool] max_mb",
        )
    return Check("disk", "ok", detail)


def certificate_checks(settings: Settings) -> list[Check]:
    files = {"smtp tls": settings.channels.smtp.tls_cert_file}
    return [certificate_check(name, path) for name, path in files.items() if path is not None]


def certificate_check(name: str, path: Path, now: datetime | None = None) -> Check:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as error:
        return Check(
            name,
            "FAIL",
            f"{path}: cannot read a PEM certificate ({error})",
            "check the file and its permissions (readable by the ingest user)",
        )
    expires = certificate.not_valid_after_utc
    left = expires - (now or datetime.now(UTC))
    detail = f"{path} expires {expires:%Y-%m-%d}"
    if left <= timedelta(0):
        return Check(
            name, "FAIL", f"{detail}: expired", "renew the certificate, then restart the service"
        )
    if left < timedelta(days=CERT_WARN_DAYS):
        return Check(name, "warn", f"{detail}: in {left.days} days", "renew it soon")
    return Check(name, "ok", f"{detail} ({left.days} days)")


def oauth2_checks(settings: Settings) -> list[Check]:
    """One line per mailbox or relay that logs in with OAuth2."""
    from channels.oauth2 import TokenStore, token_path

    data_dir = settings.paths.data_dir
    wanted = [
        (f"imap {account.name}", f"imap-{account.name}", account.oauth2, account.name)
        for account in settings.channels.imap.accounts
        if settings.channels.imap.enabled and account.oauth2 is not None
    ]
    mail = settings.outbound.mail
    if mail.enabled and mail.auth == "oauth2" and mail.oauth2 is not None:
        wanted.append(("outbound mail", "outbound-mail", mail.oauth2, None))
    checks = []
    for name, owner, oauth2, account in wanted:
        command = f"ingest imap authorize {account}" if account else "ingest outbound authorize"
        store = TokenStore(token_path(data_dir, owner), lambda *_: None, oauth2.refresh_token_env)
        checks.append(oauth2_check(name, store, command))
    return checks


def oauth2_check(name: str, store: TokenStore, command: str) -> Check:
    try:
        grant = store.load()
    except OSError as error:
        return Check(name, "FAIL", str(error), f"run `{command}` to write it again")
    if grant is None or not grant.refresh_token:
        return Check(name, "FAIL", "not authorized (no refresh token)", f"run `{command}`")
    if grant.refused:
        return Check(
            name,
            "FAIL",
            f"the provider refused the refresh token ({grant.refused})",
            f"run `{command}`",
        )
    mode = store.mode()
    if mode is not None and mode & 0o077:
        return Check(name, "warn", f"{store.path} is mode {mode:o}", f"chmod 600 {store.path}")
    where = f"saved {grant.saved_at}" if grant.saved_at else "from the environment"
    return Check(name, "ok", f"refresh token on hand ({where})")
