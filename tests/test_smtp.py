"""The SMTP channel with a real SMTP client (smtplib) against the daemon, on RabbitMQ."""

from __future__ import annotations

import asyncio
import email.policy
import json
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import BILLING_ADDRESS, SUPPORT_ADDRESS, DaemonBase, ingest_command
from tests.local import LocalDaemon
from tests.proxy import TcpProxy


def mail(subject: str = "Printer on fire", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ann Lee <Ann.Lee@Customer.example>"
    message["To"] = SUPPORT_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-').lower()}@customer.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Hello,\nthe printer on floor 3 is on fire.\nAnn\n")
    return message


def wire(message: EmailMessage) -> bytes:
    """The message as an MTA sends it: CRLF line ends."""
    return message.as_bytes(policy=email.policy.SMTP)


def send(
    daemon: DaemonBase,
    message: EmailMessage | bytes,
    recipients: list[str],
    mail_from: str = "bounces@customer.example",
) -> str:
    """Send over a real SMTP session; return the server's answer to DATA. `mail_from` ""
    is the null reverse path (a bounce): no envelope sender to fall back on."""
    raw = message if isinstance(message, bytes) else wire(message)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        client.ehlo("mta.customer.example")
        client.mail(mail_from)
        for recipient in recipients:
            code, answer = client.rcpt(recipient)
            if code != 250:
                raise smtplib.SMTPRecipientsRefused({recipient: (code, answer)})
        code, answer = client.data(raw)
    return f"{code} {answer.decode()}"


async def test_a_mail_to_two_touchpoints_opens_one_case_listing_both(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    message = mail(Cc=BILLING_ADDRESS)
    answer = await asyncio.to_thread(send, daemon, message, [SUPPORT_ADDRESS, BILLING_ADDRESS])
    assert answer.startswith("250 2.0.0 OK queued as ")

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert answer.endswith(case["id"])
    assert (case["channel"], case["adapter"]) == ("email", "smtp")
    assert case["source_id"] == "printer-on-fire@customer.example"
    assert [t["address"] for t in case["touchpoints"]] == [SUPPORT_ADDRESS, BILLING_ADDRESS]
    assert (case["sender"]["address"], case["sender"]["name"]) == (
        "ann.lee@customer.example",
        "Ann Lee",
    )
    assert case["subject"] == "Printer on fire"
    assert case["text"] == "Hello,\nthe printer on floor 3 is on fire.\nAnn"
    stored = BlobStore(daemon.workdir / "var" / "blobs").get(case["raw_ref"])
    assert stored == wire(message)


async def test_a_whole_domain_can_be_ours(daemon: DaemonBase, amqp: AbstractChannel) -> None:
    answer = await asyncio.to_thread(send, daemon, mail(), ["Anyone@Help.Example"])
    assert answer.startswith("250 ")
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["touchpoints"] == [{"kind": "mailbox", "address": "anyone@help.example"}]


async def test_other_recipients_are_refused_it_is_no_open_relay(daemon: DaemonBase) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(send, daemon, mail(), ["victim@elsewhere.example"])
    code, answer = refused.value.recipients["victim@elsewhere.example"]
    assert code == 550
    assert answer.startswith(b"5.1.1")


async def test_an_oversize_mail_is_refused_with_552(daemon: DaemonBase) -> None:
    big = mail()
    big.set_content("x" * 70_000)

    def oversize() -> tuple[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("mta.customer.example")
            assert client.has_extn("size")
            size = client.esmtp_features["size"]
            client.mail("bounces@customer.example")
            client.rcpt(SUPPORT_ADDRESS)
            return size, client.data(wire(big))

    size, answer = await asyncio.to_thread(oversize)
    assert int(size) == 65536
    assert answer == (552, b"5.3.4 message too big for this system (limit 65536 bytes)")


async def test_a_declared_size_over_the_limit_is_refused_at_mail_from(daemon: DaemonBase) -> None:
    def declared_too_big() -> tuple[tuple[int, bytes], int]:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("mta.customer.example")
            answer = client.mail("bounces@customer.example", ["SIZE=70000"])
            return answer, client.noop()[0]

    (code, answer), noop = await asyncio.to_thread(declared_too_big)
    assert (code, answer[:9]) == (552, b"5.3.4 mes")
    assert noop == 250  # the session goes on


async def test_a_mail_without_from_takes_the_envelope_sender_flagged_inferred(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    headless = b"Subject: Invoice copy\r\nTo: support@example.com\r\n\r\nPlease resend it.\r\n"
    answer = await asyncio.to_thread(
        send, daemon, headless, [SUPPORT_ADDRESS], "Billing@Customer.example"
    )
    assert answer.startswith("250 2.0.0 OK queued as ")
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert (case["sender"]["address"], case["sender"]["name"]) == (
        "billing@customer.example",
        None,
    )
    assert case["flags"]["sender_inferred"] is True
    assert case["text"] == "Please resend it."
    assert BlobStore(daemon.workdir / "var" / "blobs").get(case["raw_ref"]) == headless


async def test_a_mail_without_sender_gets_554_is_kept_and_the_session_goes_on(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    broken = b"Subject: no sender here\r\nTo: support@example.com\r\n\r\nwho am I?\r\n"

    def two_mails_one_session() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo("mta.customer.example")
            answers = []
            for raw, mail_from in ((broken, ""), (wire(mail()), "bounces@customer.example")):
                client.mail(mail_from)
                client.rcpt(SUPPORT_ADDRESS)
                answers.append(client.data(raw))
        return answers[0], answers[1]

    refused, accepted = await asyncio.to_thread(two_mails_one_session)
    assert refused[0] == 554
    assert refused[1].startswith(b"5.6.0 no sender address")
    assert accepted[0] == 250
    assert len(bodies(await collect(amqp, daemon.names.default, 1))) == 1

    kept = list((daemon.workdir / "var" / "quarantine").glob("*.json"))
    assert len(kept) == 1
    entry = json.loads(kept[0].read_text())
    assert entry["reason"].startswith("no sender address")
    assert BlobStore(daemon.workdir / "var" / "blobs").get(entry["raw_ref"]) == broken
    assert refused[1].decode().endswith(f"kept as {entry['id']}")


@pytest.mark.slow
async def test_broker_outage_still_answers_250_then_delivers_once(
    make_daemon: Callable[..., LocalDaemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(proxy.amqp_url).start()
    await daemon.wait_ready()
    await proxy.cut()
    subjects = [f"Outage {n}" for n in range(5)]
    for subject in subjects:
        outage = mail(subject)
        outage.set_content(f"{subject}: the printer on floor 3 is on fire.\n")  # not duplicates
        answer = await asyncio.to_thread(send, daemon, outage, [SUPPORT_ADDRESS])
        assert answer.startswith("250 ")
    await proxy.start()
    forwarded = bodies(await collect(amqp, daemon.names.default, 5))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert [case["subject"] for case in forwarded] == subjects


@pytest.mark.slow
async def test_quarantine_is_listed_shown_and_replay_says_why_not(daemon: DaemonBase) -> None:
    broken = b"Subject: still no sender\r\n\r\nbody\r\n"
    answer = await asyncio.to_thread(send, daemon, broken, [SUPPORT_ADDRESS], "")
    assert answer.startswith("554 5.6.0 no sender address")

    listed = await ingest_command(daemon.settings_path, "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.decode().splitlines()
    entry_id = line.split()[0]
    assert "email/smtp" in line and "no sender address" in line

    shown = await ingest_command(daemon.settings_path, "quarantine", "show", entry_id, "--raw")
    assert shown.stdout == broken

    replayed = await ingest_command(daemon.settings_path, "quarantine", "replay", entry_id)
    assert replayed.returncode == 1
    assert "still cannot be used: no sender address" in replayed.stderr.decode()
    listed = await ingest_command(daemon.settings_path, "quarantine", "list")
    assert listed.stdout.decode().splitlines() == [line]


async def test_lmtp_answers_each_recipient_and_opens_one_case(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    daemon = make_daemon().start(env={"INGEST_CHANNELS__SMTP__LMTP": "true"})
    await daemon.wait_ready()

    def deliver() -> list[int]:
        with smtplib.LMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            client.mail("bounces@customer.example")
            client.rcpt(SUPPORT_ADDRESS)
            client.rcpt(BILLING_ADDRESS)
            first, _ = client.data(wire(mail("Delivered by LMTP", Cc=BILLING_ADDRESS)))
            second, _ = client.getreply()  # LMTP: one reply per recipient
            return [first, second]

    assert await asyncio.to_thread(deliver) == [250, 250]
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert [t["address"] for t in case["touchpoints"]] == [SUPPORT_ADDRESS, BILLING_ADDRESS]


def with_attachment(subject: str, attachment: bytes) -> EmailMessage:
    """A mail of its own text carrying an attachment that other mails carry too."""
    message = mail(subject)
    message.set_content(f"{subject}: the scan is attached.\n")
    message.add_attachment(attachment, maintype="application", subtype="pdf", filename="scan.pdf")
    return message


async def send_at_once(daemon: DaemonBase, messages: list[EmailMessage | bytes]) -> list[str]:
    """Each message over its own SMTP session, all sessions at the same time, from the
    null reverse path when they are bytes (mails without a sender, to be refused)."""
    return await asyncio.gather(
        *(
            asyncio.to_thread(
                send,
                daemon,
                message,
                [SUPPORT_ADDRESS],
                "" if isinstance(message, bytes) else "bounces@customer.example",
            )
            for message in messages
        )
    )


async def test_mails_sharing_an_attachment_at_once_all_get_250(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    # Four sessions storing the same attachment blob at the same moment, in several rounds
    # (a new attachment each round): each writer needs a temporary file of its own.
    rounds, per_round = 10, 4
    answers = []
    for round_ in range(rounds):
        attachment = f"%PDF-1.4 round {round_}\n".encode() + bytes(range(256)) * 160
        batch = [with_attachment(f"Scan {round_}-{n}", attachment) for n in range(per_round)]
        answers += await send_at_once(daemon, batch)
    assert [answer[:3] for answer in answers] == ["250"] * rounds * per_round, answers

    forwarded = bodies(await collect(amqp, daemon.names.default, rounds * per_round))
    assert len(forwarded) == rounds * per_round
    blobs = BlobStore(daemon.workdir / "var" / "blobs")
    for case in forwarded:
        [attached] = case["attachments"]
        assert blobs.get(attached["ref"])[:9] == b"%PDF-1.4 "
    leftovers = list((daemon.workdir / "var" / "blobs").rglob("*.tmp"))
    assert leftovers == []


async def test_the_same_unusable_mail_at_once_gets_554_every_time(daemon: DaemonBase) -> None:
    broken = b"Subject: no sender, sent four times\r\nTo: support@example.com\r\n\r\nhm\r\n"
    answers = []
    for _ in range(4):  # each round: four quarantines of the same original at once
        answers += await send_at_once(daemon, [broken] * 4)
    assert [answer[:10] for answer in answers] == ["554 5.6.0 "] * 16, answers
    kept = list((daemon.workdir / "var" / "quarantine").glob("*.json"))
    assert len(kept) == 16
    assert len({json.loads(path.read_text())["raw_ref"] for path in kept}) == 1
