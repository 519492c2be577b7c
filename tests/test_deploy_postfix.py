"""deploy/postfix with a real Postfix in front of the daemon's LMTP listener: a mail becomes a
case; with the daemon stopped Postfix keeps the mail and delivers it once the daemon is back,
exactly once; an unknown recipient is refused by Postfix at RCPT time."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage

import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import SUPPORT_ADDRESS
from tests.local import LocalDaemon
from tests.postfix import DEPLOY, Postfix
from tests.waiting import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("postfix") is None, reason="deploy/local/test.sh installs it"),
]


@pytest.fixture
async def daemon(make_daemon: Callable[..., LocalDaemon]) -> LocalDaemon:
    return await make_daemon().launch(env={"INGEST_CHANNELS__SMTP__LMTP": "true"})


@pytest.fixture
async def postfix(daemon: LocalDaemon) -> AsyncIterator[Postfix]:
    """Postfix in front of the running daemon; started and stopped in a thread (`postfix`
    commands take seconds), so that the daemon's event loop goes on meanwhile."""
    made = Postfix(["example.com"], f"127.0.0.1:{daemon.smtp_port}", DEPLOY / "recipients")
    started = await asyncio.to_thread(made.start)
    yield started
    await asyncio.to_thread(started.stop)


def submit(postfix: Postfix, subject: str, to: str = SUPPORT_ADDRESS) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ann Lee <ann@customer.example>", to, subject
    mail["Message-ID"] = f"<{subject.replace(' ', '-')}@customer.example>"
    mail.set_content(f"{subject}: the kettle does not heat.")
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.send_message(mail)


async def test_postfix_delivers_to_the_daemon_and_keeps_mail_while_it_is_down(
    daemon: LocalDaemon, postfix: Postfix, amqp: AbstractChannel
) -> None:
    await asyncio.to_thread(submit, postfix, "First mail")
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert (case["subject"], case["adapter"]) == ("First mail", "smtp")

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(submit, postfix, "Stranger", "nobody@example.com")
    [(code, reason)] = refused.value.recipients.values()
    assert code == 550 and b"unknown" in reason.lower(), reason

    await daemon.close()
    await asyncio.to_thread(submit, postfix, "While down")  # Postfix takes it: 250 queued
    await until(lambda: len(postfix.deferred()) == 1, "deferral", 60, detail=postfix.log)

    await daemon.launch(env={"INGEST_CHANNELS__SMTP__LMTP": "true"})
    await asyncio.to_thread(postfix.flush)
    await until(lambda: not postfix.queued(), "delivery", 60, detail=postfix.log)
    [late] = bodies(await collect(amqp, daemon.names.default, 1))
    assert late["subject"] == "While down"
    assert await forwarded_behind(amqp, daemon.names) == [], "delivered more than once"
    assert "status=deferred" in postfix.log() and "status=sent" in postfix.log()
