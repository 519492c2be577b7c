"""OAuth2 mailboxes end to end: the real daemon logs in to a real Dovecot with SASL
OAUTHBEARER or XOAUTH2, Dovecot checks each token at a stand-in provider (its oauth2 passdb,
introspection by POST), and the provider issues, refreshes, expires and revokes tokens."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from channels.oauth2 import Grant, TokenStore, token_path
from ingest.durable import write_durably
from tests.conftest import bodies, collect
from tests.daemon import Daemon, run_ingest
from tests.imap_server import SECOND_USER, USER, Dovecot
from tests.oauth_provider import OAuthProvider, authorize_with_consent
from tests.proxy import TcpProxy
from tests.test_imap import PASSWORD_ENV, mail
from tests.waiting import until


@pytest.fixture
def dovecot(provider: OAuthProvider) -> Iterator[Dovecot]:
    server = Dovecot(introspection_url=f"{provider.url}/introspect").start()
    yield server
    server.remove()


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[TcpProxy]:
    """Between the daemon and Dovecot, to drop the IMAP sessions (a new login follows)."""
    proxy = TcpProxy(target_port=dovecot.port)
    await proxy.start()
    yield proxy
    await proxy.cut()


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def account(name: str, port: int, user: str, **values: object) -> str:
    fields: dict[str, object] = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "user": user,
        "poll_interval_s": 0.5,
        "reconnect_max_s": 0.5,
        "timeout_s": 10.0,
    } | values
    lines = "\n".join(f"{key} = {_toml(value)}" for key, value in fields.items())
    return f"\n[[channels.imap.accounts]]\n{lines}\n"


def authorized(daemon: Daemon, name: str, refresh_token: str) -> None:
    """The token file as `ingest imap authorize` leaves it."""
    path = token_path(daemon.workdir / "var", f"imap-{name}")
    TokenStore(path, write_durably, None).save(Grant(refresh_token))


def readiness(daemon: Daemon) -> tuple[int, dict[str, str]]:
    """/readyz's status and checks (blocking: for `until(..., blocking=True)`)."""
    response = httpx.get(f"{daemon.url}/readyz", timeout=10)
    return response.status_code, response.json()["checks"]


def imap_check(daemon: Daemon) -> str | None:
    """The imap readiness check's complaint, if any (blocking)."""
    daemon._check_alive()
    try:
        status, checks = readiness(daemon)
    except httpx.TransportError:
        return None  # not listening yet
    if checks.get("imap", "ok") == "ok":
        return None
    assert status == 200, checks  # a mailbox to authorize again leaves the node ready
    return checks["imap"]


@pytest.mark.slow
async def test_mailboxes_log_in_with_tokens_and_a_refused_token_is_refreshed_once(
    provider: OAuthProvider,
    dovecot: Dovecot,
    proxy: TcpProxy,
    make_process: Callable[..., Daemon],
    amqp: AbstractChannel,
) -> None:
    provider.rotate = True  # each refresh retires the refresh token used
    oauth2 = provider.settings()
    extra = "[channels.imap]\nenabled = true\n"
    extra += account("support", proxy.port, USER, auth="oauth2", oauth2=oauth2)
    extra += account(
        "billing", proxy.port, SECOND_USER, auth="oauth2", oauth2=oauth2 | {"mechanism": "xoauth2"}
    )
    daemon = make_process(extra=extra)
    first = provider.issue(USER)
    authorized(daemon, "support", first)
    authorized(daemon, "billing", provider.issue(SECOND_USER))
    dovecot.append(mail("Waiting for support"))
    dovecot.append(mail("Waiting for billing"), user=SECOND_USER)
    await daemon.launch("channels")

    cases = bodies(await collect(amqp, daemon.names.case_open, 2))
    assert {case["subject"] for case in cases} == {"Waiting for support", "Waiting for billing"}
    log = dovecot.log_text()
    assert f"user=<{USER}>, method=OAUTHBEARER" in log, "offered, so preferred"
    assert f"user=<{SECOND_USER}>, method=XOAUTH2" in log, "as the settings ask"
    assert provider.grants == ["refresh_token", "refresh_token"]
    # Both mails are safe and the adapter has saved its place in each mailbox; a cut before
    # that would fetch a mail again (as designed: the dispatcher drops the repeat).
    state = daemon.workdir / "var" / "imap"
    await until(
        lambda: all((state / f"{name}.json").exists() for name in ("support", "billing")),
        "both mailboxes' positions saved",
        detail=daemon.log_text,
    )

    # The provider ends the access tokens early; the sessions drop and log in again: the
    # server refuses the cached token, the daemon refreshes it and is let in.
    provider.expire_access_tokens()
    await proxy.cut()
    await proxy.start()
    dovecot.append(mail("After the tokens ended"))
    [case] = bodies(await collect(amqp, daemon.names.case_open, 1, timeout_s=30))
    assert case["subject"] == "After the tokens ended"
    assert provider.grants.count("refresh_token") >= 3
    path = token_path(daemon.workdir / "var", "imap-support")
    grant = TokenStore(path, write_durably, None).load()
    assert grant is not None and grant.refresh_token != first, "the rotated one was saved"
    assert grant.refresh_token in provider.refresh_tokens, "and is the one in force"
    assert False in provider.introspected, "the old token was tried and refused first"
    status, checks = readiness(daemon)
    assert status == 200 and checks["imap"] == "ok"
    assert not re.search(r"(at|rt)-[A-Za-z0-9_-]{16,}", daemon.log_text()), "no token logged"


@pytest.mark.slow
async def test_a_revoked_token_is_a_lasting_error_until_authorized_and_others_go_on(
    provider: OAuthProvider,
    dovecot: Dovecot,
    make_process: Callable[..., Daemon],
    amqp: AbstractChannel,
) -> None:
    extra = "[channels.imap]\nenabled = true\n"
    extra += account("support", dovecot.port, USER, auth="oauth2", oauth2=provider.settings())
    extra += account("billing", dovecot.port, SECOND_USER, password_env="TEST_IMAP_PASSWORD")
    daemon = make_process(extra=extra, log_level="debug")
    authorized(daemon, "support", provider.issue(USER))
    provider.revoke(USER)  # the mailbox's owner signed the application out
    daemon.start("channels", env=PASSWORD_ENV)

    await until(lambda: imap_check(daemon), "the imap check to fail", 60, blocking=True)
    shown = imap_check(daemon)
    assert shown is not None and shown.startswith("account support: ")
    assert "invalid_grant" in shown and shown.endswith("run `ingest imap authorize support`")

    # The other account goes on.
    dovecot.append(mail("For billing meanwhile"), user=SECOND_USER)
    [case] = bodies(await collect(amqp, daemon.names.case_open, 1))
    assert case["subject"] == "For billing meanwhile"

    # One line per outage, however often it is retried (the retries log at debug level).
    def attempts() -> list[str]:
        lines = daemon.log_text().splitlines()
        return [line for line in lines if "imap account cannot log in" in line]

    await until(lambda: len(attempts()) >= 4, "several attempts", detail=daemon.log_text)
    assert [line for line in attempts() if "level=debug" not in line] == [attempts()[0]]
    assert "level=error" in attempts()[0]
    assert provider.grants == ["refresh_token"], "a refused token is not offered again"

    doctor = run_ingest(daemon.settings_path, "doctor", "--role", "channels")
    lines = doctor.stdout.decode().splitlines()
    [line] = [line for line in lines if "imap support" in line]
    assert line.startswith("FAIL") and "invalid_grant" in line
    assert line.endswith("-> run `ingest imap authorize support`")
    assert doctor.returncode == 1

    output = await authorize_with_consent(
        daemon.settings_path, provider, "imap", "authorize", "support"
    )
    assert f"open {provider.url}/device" in output and "authorized" in output

    dovecot.append(mail("After authorizing"))
    [case] = bodies(await collect(amqp, daemon.names.case_open, 1, timeout_s=30))
    assert case["subject"] == "After authorizing"
    # A first session takes the waiting mail before it counts as back (the check clears and
    # the line is written once it is caught up), so the case can come first.
    await until(lambda: imap_check(daemon) is None, "the imap check to pass", blocking=True)
    assert "imap session back" in daemon.log_text()
    doctor = run_ingest(daemon.settings_path, "doctor", "--role", "channels")
    [line] = [line for line in doctor.stdout.decode().splitlines() if "imap support" in line]
    assert line.startswith("ok")


@pytest.mark.slow
async def test_a_token_the_server_will_not_take_is_shown_with_what_to_check(
    provider: OAuthProvider, dovecot: Dovecot, make_process: Callable[..., Daemon]
) -> None:
    # The admin signed in as the wrong user: the provider's tokens are good, Dovecot's
    # introspection says they belong to someone else.
    extra = "[channels.imap]\nenabled = true\n"
    extra += account("support", dovecot.port, USER, auth="oauth2", oauth2=provider.settings())
    daemon = make_process(extra=extra)
    authorized(daemon, "support", provider.issue(SECOND_USER))
    daemon.start("channels")
    await daemon.wait_ready()

    await until(lambda: imap_check(daemon), "the imap check to fail", 60, blocking=True)
    shown = imap_check(daemon)
    assert shown is not None
    assert f"the server refused a fresh access token for {USER}" in shown
    assert shown.endswith("check user, the scope, and that IMAP is allowed for this mailbox")
    assert provider.grants.count("refresh_token") >= 2, "a fresh token was tried"
