"""DATA as the SMTP channel reads it: dot-stuffing undone exactly, the end found wherever the
blocks are cut, a pipelined next command left for the session, a large mail written to a file
as it arrives and moved into the blob store as the original."""

from __future__ import annotations

import asyncio
import email.policy
import socket
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from tests.conftest import bodies, collect
from tests.daemon import SUPPORT_ADDRESS
from tests.local import LocalDaemon
from tests.test_smtp import mail, send, wire

LARGE_LIMIT = 8_000_000


def stuffed(raw: bytes) -> bytes:
    """The mail as a client sends it after DATA: dots doubled at line starts, then "."."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


def leftovers(folder: Path) -> list[str]:
    """Files left in the folder where large mail is written as it arrives."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def talk(port: int, script: bytes, answers: int) -> list[bytes]:
    """Send `script` in one write after the greeting; read `answers` reply lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        reader = conn.makefile("rb")
        reader.readline()  # greeting
        conn.sendall(script)
        return [reader.readline() for _ in range(answers)]


async def test_dots_at_line_starts_and_ends_come_through_exactly(
    daemon: LocalDaemon, amqp: AbstractChannel
) -> None:
    message = mail("Dots")
    text = ".starts with a dot\n..two dots\n.\nends with a dot.\n. \nlast line\n"
    message.set_content(text)

    answer = await asyncio.to_thread(send, daemon, message, [SUPPORT_ADDRESS])

    assert answer.startswith("250 ")
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    stored = BlobStore(daemon.workdir / "var" / "blobs").get(case["raw_ref"])
    assert stored == wire(message)


async def test_a_pipelined_session_gets_every_answer_in_order(
    daemon: LocalDaemon, amqp: AbstractChannel
) -> None:
    raw = wire(mail("Pipelined"))
    script = (
        b"EHLO mta.customer.example\r\nMAIL FROM:<bounces@customer.example>\r\n"
        + f"RCPT TO:<{SUPPORT_ADDRESS}>\r\n".encode()
        + b"DATA\r\n"
        + stuffed(raw)
        + b".\r\nNOOP\r\nQUIT\r\n"
    )

    lines = await asyncio.to_thread(talk, daemon.smtp_port, script, 40)

    codes = [line[:4] for line in lines if line and line[3:4] == b" "]
    assert codes == [b"250 ", b"250 ", b"250 ", b"354 ", b"250 ", b"250 ", b"221 "]
    assert len(bodies(await collect(amqp, daemon.names.default, 1))) == 1


async def test_an_empty_mail_is_refused_as_having_no_sender(daemon: LocalDaemon) -> None:
    answer = await asyncio.to_thread(send, daemon, b"", [SUPPORT_ADDRESS], "")
    assert answer.startswith("554 5.6.0 no sender address")


async def test_a_large_mail_is_written_as_it_arrives_and_becomes_the_original(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    daemon = await make_daemon().launch(
        env={"INGEST_CHANNELS__SMTP__MAX_MESSAGE_BYTES": str(LARGE_LIMIT)}
    )
    message = mail("Large")
    attachment = bytes(range(256)) * 20_000  # 5 MB, 6.9 MB on the wire
    message.add_attachment(attachment, maintype="application", subtype="pdf", filename="a.pdf")
    raw = message.as_bytes(policy=email.policy.SMTP)

    answer = await asyncio.to_thread(send, daemon, raw, [SUPPORT_ADDRESS])

    assert answer.startswith("250 ")
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    blobs = BlobStore(daemon.workdir / "var" / "blobs")
    assert blobs.get(case["raw_ref"]) == raw
    [listed] = case["attachments"]
    assert blobs.get(listed["ref"]) == attachment
    assert await asyncio.to_thread(leftovers, daemon.workdir / "var" / "incoming") == []


async def test_a_large_mail_over_the_limit_is_refused_and_leaves_no_file(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch(
        env={"INGEST_CHANNELS__SMTP__MAX_MESSAGE_BYTES": str(2_000_000)}
    )
    message: EmailMessage = mail("Too large")
    message.add_attachment(b"x" * 3_000_000, maintype="application", subtype="octet-stream")

    answer = await asyncio.to_thread(send, daemon, wire(message), [SUPPORT_ADDRESS])

    assert answer.startswith("552 5.3.4 ")
    incoming = daemon.workdir / "var" / "incoming"
    assert await asyncio.to_thread(leftovers, incoming) == []
    assert daemon.alive()
