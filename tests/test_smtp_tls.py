"""STARTTLS and AUTH on the SMTP channel, with a certificate made for the test."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import SUPPORT_ADDRESS, DaemonBase
from tests.local import LocalDaemon
from tests.test_smtp import mail, wire

PASSWORD = "relay-secret-42"


@pytest.fixture
async def tls_daemon(
    make_daemon: Callable[..., LocalDaemon], certificate: tuple[Path, Path]
) -> DaemonBase:
    cert, key = certificate
    daemon = make_daemon().start(
        env={
            "INGEST_CHANNELS__SMTP__TLS_CERT_FILE": str(cert),
            "INGEST_CHANNELS__SMTP__TLS_KEY_FILE": str(key),
            "INGEST_CHANNELS__SMTP__AUTH_USER": "relay",
            "INGEST_CHANNELS__SMTP__AUTH_PASSWORD": PASSWORD,
        }
    )
    await daemon.wait_ready()
    return daemon


def session(daemon: DaemonBase, cert: Path, password: str | None) -> tuple[int, bytes]:
    """STARTTLS, AUTH, then one mail; the answer to DATA (or to MAIL when refused)."""
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        assert isinstance(client.sock, ssl.SSLSocket)
        client.ehlo("mta.customer.example")
        if password is not None:
            client.login("relay", password)
        code, answer = client.mail("bounces@customer.example")
        if code != 250:
            return code, answer
        client.rcpt(SUPPORT_ADDRESS)
        return client.data(wire(mail("Over TLS")))


async def test_a_relay_authenticated_over_starttls_is_accepted(
    tls_daemon: DaemonBase, certificate: tuple[Path, Path], amqp: AbstractChannel
) -> None:
    code, _ = await asyncio.to_thread(session, tls_daemon, certificate[0], PASSWORD)
    assert code == 250
    [case] = bodies(await collect(amqp, tls_daemon.names.default, 1))
    assert case["subject"] == "Over TLS"


async def test_without_auth_or_with_a_wrong_password_nothing_is_accepted(
    tls_daemon: DaemonBase, certificate: tuple[Path, Path]
) -> None:
    code, answer = await asyncio.to_thread(session, tls_daemon, certificate[0], None)
    assert code == 530, answer
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        await asyncio.to_thread(session, tls_daemon, certificate[0], "wrong")
    assert refused.value.smtp_code == 535
    assert PASSWORD not in tls_daemon.log_text()
