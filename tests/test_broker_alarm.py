"""Push back, never hang: a RabbitMQ memory alarm, forced on a node of the test's own.

Under the alarm the broker blocks publishing connections. The daemon must then answer at once:
spool while the spool has room, and past `[spool] max_mb` refuse with the protocol's retry-later
answer (API 503 with Retry-After, SMTP 451 4.3.1, the contact form's "try again"); /readyz says
why. When the alarm clears, every accepted message reaches case-open exactly once.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage

import aio_pika
import httpx
import pytest

from tests.conftest import bodies, collect
from tests.contact import CONTACT_SETTINGS, open_form, send
from tests.daemon import API_KEY, SUPPORT_ADDRESS
from tests.local import LocalDaemon
from tests.rabbit_node import RabbitNode

pytestmark = pytest.mark.slow

PUBLISH_TIMEOUT_S = 60.0
"""The daemon's: without push-back, each request under the alarm waited this long."""
PUSHBACK_LIMIT_S = 10.0
"""What "at once" must beat here: far below the publish timeout, and far above what is seen
(tens of milliseconds, printed), so that a loaded machine (an SMTP session took 5.6 s once)
does not fail the test for being slow."""


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    started = RabbitNode().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def alarm(node: RabbitNode) -> AsyncIterator[Callable[[bool], Awaitable[None]]]:
    """`await alarm(True)` raises a memory alarm on the test's node, `await alarm(False)`
    clears it; it is cleared after the test whatever happens.

    `rabbitmqctl` runs in a thread: it starts an Erlang VM (seconds, tens of them on a loaded
    machine), and the daemon under test shares this event loop; blocked, it would miss the
    broker's heartbeats and lose its connection for reasons of the test's own."""

    async def set_alarm(on: bool) -> None:
        await asyncio.to_thread(
            node.ctl, "set_vm_memory_high_watermark", "0.000001" if on else "0.6"
        )

    yield set_alarm
    await set_alarm(False)


async def post_message(client: httpx.AsyncClient, key: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await client.post(
        "/api/v1/messages",
        json={"sender": {"email": "ann@example.com"}, "text": f"message {key}"},
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
    )
    return answer, time.monotonic() - started


def send_mail(port: int, number: int) -> smtplib.SMTPResponseException | None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "bob@example.org", SUPPORT_ADDRESS, "Hello"
    mail["Message-ID"] = f"<alarm-{number}@example.org>"
    mail.set_content("The printer is on fire.")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.send_message(mail)
    except smtplib.SMTPResponseException as refused:
        return refused
    return None


async def test_a_memory_alarm_is_pushed_back_at_once_and_nothing_is_lost_or_doubled(
    node: RabbitNode,
    alarm: Callable[[bool], Awaitable[None]],
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = make_daemon(
        node.url,
        "[spool]\nmax_mb = 0.02\n" + CONTACT_SETTINGS,
        publish_timeout_s=PUBLISH_TIMEOUT_S,
    )
    await daemon.launch(role="channels")
    accepted: set[str] = set()
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        answer, _ = await post_message(client, "before")
        assert answer.status_code == 202, answer.text
        accepted.add("before")

        await alarm(True)
        # The broker tells a connection it is blocked when it next publishes: the first
        # message waits for that notice, then goes to the spool instead (not sent twice).
        answer, took = await post_message(client, "first-under-alarm")
        assert answer.status_code == 202, answer.text
        accepted.add("first-under-alarm")
        assert took < PUSHBACK_LIMIT_S, f"the first message under the alarm took {took:.2f} s"
        print(f"first message under the alarm answered in {took * 1000:.0f} ms")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "low on memory" in ready.json()["checks"]["broker"]

        refused: list[tuple[httpx.Response, float]] = []
        spooled = 0
        for number in range(200):
            answer, took = await post_message(client, f"m{number}")
            if answer.status_code == 202:
                accepted.add(f"m{number}")
                spooled += 1
                assert took < PUSHBACK_LIMIT_S, f"spooling took {took:.2f} s"
                continue
            refused.append((answer, took))
            if len(refused) == 3:
                break
        assert spooled >= 1, "the spool took nothing while it had room"
        assert len(refused) == 3, "the spool limit never refused a message"
        for answer, took in refused:
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            detail = answer.json()["detail"]
            assert "low on memory" in detail and "spool is full" in detail, detail
            assert took < PUSHBACK_LIMIT_S, f"a refusal took {took:.2f} s"
        print(f"{spooled} spooled, refusals in {[f'{t * 1000:.0f} ms' for _, t in refused]}")
        ready = (await client.get("/readyz")).json()["checks"]
        assert "low on memory" in ready["broker"] and ready["spool"].startswith("full"), ready

        started = time.monotonic()
        mail_refusal = await asyncio.to_thread(send_mail, daemon.smtp_port, 1)
        assert mail_refusal is not None, "the mail was taken although the spool is full"
        assert mail_refusal.smtp_code == 451, mail_refusal
        assert b"4.3.1" in mail_refusal.smtp_error and b"low on memory" in mail_refusal.smtp_error
        assert time.monotonic() - started < PUSHBACK_LIMIT_S

        token = await open_form(client)
        page = await send(client, token)
        assert page.status_code == 503 and page.headers["retry-after"]
        assert "Please try again in a minute" in page.text

        await alarm(False)
        await _spool_empty(daemon)
        async with await aio_pika.connect(node.url) as connection:
            channel = await connection.channel()
            # Every publish is confirmed once the spool is empty: a copy would be there now.
            delivered = await collect(channel, daemon.names.case_open, len(accepted))
    keys = sorted(case["source_id"] for case in bodies(delivered))
    assert keys == sorted(accepted), "lost or doubled: " + ", ".join(keys)
    await daemon.wait_ready()


async def _spool_empty(daemon: LocalDaemon, timeout_s: float = 90.0) -> None:
    """Wait until the broker took every spooled message (the alarm clears within ~30 s)."""
    deadline = time.monotonic() + timeout_s
    while (await daemon.metrics()).get(("ingest_spool_pending", ())) != 0.0:
        assert time.monotonic() < deadline, "the spool did not drain:\n" + daemon.log_text()
        await asyncio.sleep(0.1)
