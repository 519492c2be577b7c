"""Acknowledgements through a relay that wants OAuth2 (SMTP AUTH XOAUTH2, as Microsoft 365
and Gmail): the real daemon and smtplib against an aiosmtpd relay that checks each token at
the stand-in provider; refreshed after a refusal, a revoked token a lasting error until
`ingest outbound authorize`, and the reply sent then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from channels.oauth2 import Grant, TokenStore, token_path
from ingest.durable import write_durably
from tests.daemon import Names
from tests.local import LocalDaemon
from tests.mail_relay import MailRelay
from tests.oauth_provider import OAuthProvider, authorize_with_consent
from tests.test_acknowledgements import publish, request, settings
from tests.test_imap_oauth2 import _toml
from tests.waiting import until

SENDER = "acks@example.com"


@pytest.fixture
async def relay(provider: OAuthProvider) -> AsyncIterator[MailRelay]:
    server = MailRelay(introspection_url=f"{provider.url}/introspect")
    await server.start()
    yield server
    await server.stop()


def relay_check(daemon: LocalDaemon) -> str | None:
    """The outbound-mail readiness check's complaint, if any (blocking)."""
    response = httpx.get(f"{daemon.url}/readyz", timeout=10)
    shown = response.json()
    assert response.status_code == 200, shown  # a relay to authorize again leaves the node ready
    return None if shown["checks"]["outbound-mail"] == "ok" else shown["checks"]["outbound-mail"]


@pytest.mark.slow
async def test_replies_log_in_with_xoauth2_and_a_revoked_token_waits_for_authorize(
    provider: OAuthProvider,
    relay: MailRelay,
    make_daemon: Callable[..., LocalDaemon],
    amqp: AbstractChannel,
    names: Names,
) -> None:
    provider.rotate = True
    provider.device_user = SENDER
    oauth2 = _toml(provider.settings(mechanism="xoauth2"))  # auto would pick OAUTHBEARER
    mail = f'user = "{SENDER}"\nauth = "oauth2"\noauth2 = {oauth2}\n'
    daemon = make_daemon(extra=settings(relay, mail=mail))
    path = token_path(daemon.workdir / "var", "outbound-mail")
    TokenStore(path, write_durably, None).save(Grant(provider.issue(SENDER)))
    # Attempts enough that the waiting reply outlasts the outage (10 by default).
    await daemon.launch("channels", {"INGEST_QUEUES__ACKNOWLEDGEMENT_DELIVERY_LIMIT": "1000"})

    await publish(amqp, names, request())
    await until(lambda: len(relay.received) == 1, detail=daemon.log_text)
    assert relay.received[0].login == SENDER
    assert relay.logins == [("XOAUTH2", SENDER, True)]

    # Tokens ended early: the relay refuses the cached one, a fresh one is let in.
    provider.expire_access_tokens()
    await publish(amqp, names, request(case_id="01JCZ5Q2X7K9V3M4N5P6Q7R8T0"))
    await until(lambda: len(relay.received) == 2, detail=daemon.log_text)
    assert relay.logins[1:] == [("XOAUTH2", SENDER, False), ("XOAUTH2", SENDER, True)]
    grant = TokenStore(path, write_durably, None).load()
    assert grant is not None and grant.refresh_token in provider.refresh_tokens, "rotated, saved"

    # Revoked: the reply waits, /readyz says what to run, the log says it once.
    provider.revoke(SENDER)
    provider.expire_access_tokens()
    await publish(amqp, names, request(case_id="01JCZ5Q2X7K9V3M4N5P6Q7R8T1"))
    await until(lambda: relay_check(daemon), "the relay check to fail", blocking=True)
    shown = await asyncio.to_thread(relay_check, daemon)  # the daemon runs in this loop
    assert shown is not None and "invalid_grant" in shown
    assert shown.endswith("run `ingest outbound authorize`")
    await until(lambda: daemon.log_text().count("will retry") >= 4, "several attempts")
    assert daemon.log_text().count("outbound relay cannot log in") == 1
    assert len(relay.received) == 2

    output = await authorize_with_consent(daemon.settings_path, provider, "outbound", "authorize")
    assert "authorized" in output
    await until(lambda: len(relay.received) == 3, "the waiting reply", timeout_s=30)
    assert relay.received[2].message["X-Ingest-Case"] == "01JCZ5Q2X7K9V3M4N5P6Q7R8T1"
    await until(lambda: relay_check(daemon) is None, "ready again", blocking=True)
    assert "outbound relay logs in again" in daemon.log_text()
