"""The IMAP adapter against a real Dovecot: fetch, make safe, then flag or move; never twice."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import Daemon
from tests.imap_server import PASSWORD, SECOND_USER, USER, Dovecot
from tests.proxy import TcpProxy

PASSWORD_ENV = {"TEST_IMAP_PASSWORD": PASSWORD}
SEEN = b"\\Seen"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    yield server
    server.remove()


@pytest.fixture
def dovecot_without_idle() -> Iterator[Dovecot]:
    server = Dovecot(idle=False).start()
    yield server
    server.remove()


def imap_settings(server: Dovecot, **account: object) -> str:
    """The [channels.imap] section for one account on the test server."""
    values: dict[str, object] = {
        "name": "support",
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "user": USER,
        "password_env": "TEST_IMAP_PASSWORD",
        "poll_interval_s": 0.5,
        "reconnect_max_s": 1.0,
        "timeout_s": 10.0,
    } | account
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return f"[channels.imap]\nenabled = true\n\n[[channels.imap.accounts]]\n{lines}\n"


def mail(subject: str, sender: str = "Ann Lee <ann@customer.example>") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = USER
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-').lower()}@customer.example>"
    message.set_content(f"{subject}: the details.\n")
    return message.as_bytes()


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait until `check()` holds; fail with the timeout otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"still not true after {timeout_s} s"
        await asyncio.sleep(0.1)


def all_seen(server: Dovecot) -> bool:
    flags = server.flags()
    return bool(flags) and all(SEEN in f for f in flags.values())


async def start(make_process: Callable[..., Daemon], extra: str, **kwargs: str) -> Daemon:
    return await make_process(extra=extra, **kwargs).launch(env=PASSWORD_ENV)


async def test_waiting_and_new_mail_is_fetched_then_flagged_seen(
    dovecot: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    dovecot.append(mail("Waiting one"))
    dovecot.append(mail("Already read by a person"), flags=(SEEN,))
    dovecot.append(mail("Waiting two"))
    daemon = await start(make_process, imap_settings(dovecot))

    cases = bodies(await collect(amqp, daemon.names.default, 2))
    assert [case["subject"] for case in cases] == ["Waiting one", "Waiting two"]
    assert {case["adapter"] for case in cases} == {"imap"}
    assert cases[0]["touchpoints"] == [{"kind": "mailbox", "address": USER}]
    assert cases[0]["sender"]["address"] == "ann@customer.example"
    await eventually(lambda: all_seen(dovecot))

    dovecot.append(mail("Arrives while watching"))  # IDLE tells the adapter at once
    [new] = bodies(await collect(amqp, daemon.names.default, 1, timeout_s=10))
    assert new["subject"] == "Arrives while watching"
    await eventually(lambda: all_seen(dovecot))


@pytest.mark.slow
async def test_a_restart_neither_refetches_nor_misses(
    dovecot: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    dovecot.append(mail("Before the restart"))
    first = await start(make_process, imap_settings(dovecot))
    assert len(await collect(amqp, first.names.default, 1)) == 1
    await eventually(lambda: all_seen(dovecot))
    assert first.stop() == 0

    dovecot.append(mail("While the daemon was down"))
    # Someone reads it in their mail client before the daemon is back: still ours.
    with dovecot.client() as client:
        client.select_folder("INBOX")
        client.add_flags(client.search("ALL"), [SEEN])
    second = await start(make_process, imap_settings(dovecot))

    cases = bodies(await collect(amqp, second.names.default, 1))
    cases += await forwarded_behind(amqp, second.names)
    assert [case["subject"] for case in cases] == ["While the daemon was down"]


@pytest.mark.slow
async def test_move_mode_polls_a_server_without_idle_and_moves_after_publish(
    dovecot_without_idle: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    server = dovecot_without_idle
    with server.client() as client:
        assert b"IDLE" not in client.capabilities()
    server.append(mail("Move me"), flags=(SEEN,))  # moved whether read or not
    settings = imap_settings(server, after="move", move_to="Processed")
    daemon = await start(make_process, settings)

    cases = bodies(await collect(amqp, daemon.names.default, 1))
    assert [case["subject"] for case in cases] == ["Move me"], daemon.log_text()
    await eventually(lambda: server.uids("INBOX") == [] and len(server.uids("Processed")) == 1)

    server.append(mail("Found by polling"))
    [polled] = bodies(await collect(amqp, daemon.names.default, 1, timeout_s=10))
    assert polled["subject"] == "Found by polling"
    await eventually(lambda: len(server.uids("Processed")) == 2)
    assert "imap watching" in daemon.log_text()


async def test_unprocessable_and_oversize_mail_go_to_their_folder_and_block_nothing(
    dovecot: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    dovecot.append(b"Subject: no sender at all\r\n\r\nwho wrote this?\r\n")
    dovecot.append(mail("Far too long") + b"x" * 4096 + b"\r\n")
    dovecot.append(mail("Behind the bad ones"))
    settings = imap_settings(dovecot, max_message_bytes=2048, unprocessable_folder="Bad")
    daemon = await start(make_process, settings)

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["subject"] == "Behind the bad ones"
    await eventually(lambda: len(dovecot.uids("Bad")) == 2)
    assert dovecot.uids("INBOX") == [3]
    kept = list((daemon.workdir / "var" / "quarantine").glob("*.json"))
    assert [json.loads(path.read_text())["adapter"] for path in kept] == ["imap"]
    log = daemon.log_text()
    assert "imap mail unprocessable, moved aside" in log
    assert "imap mail over the size limit" in log


@pytest.mark.slow
async def test_mail_stays_unflagged_until_it_can_be_made_safe(
    dovecot: Dovecot,
    make_process: Callable[..., Daemon],
    proxy: TcpProxy,
    amqp: AbstractChannel,
) -> None:
    daemon = await start(make_process, imap_settings(dovecot), broker_url=proxy.amqp_url)
    # Neither the broker nor the spool can take a message: the mail must stay as it is.
    await proxy.cut()
    incoming = daemon.workdir / "var" / "spool" / "incoming"
    shutil.rmtree(incoming)
    incoming.write_text("not a folder")
    dovecot.append(mail("Not safe yet"))
    await eventually(lambda: "imap mail cannot be made safe now" in daemon.log_text())
    assert SEEN not in dovecot.flags()[1]

    incoming.unlink()
    incoming.mkdir()
    await proxy.start()
    cases = bodies(await collect(amqp, daemon.names.default, 1, timeout_s=30))
    assert [case["subject"] for case in cases] == ["Not safe yet"]
    await eventually(lambda: all_seen(dovecot))


@pytest.mark.slow
async def test_reconnects_after_the_server_restarts(
    dovecot: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    daemon = await start(make_process, imap_settings(dovecot))
    await eventually(lambda: "imap watching" in daemon.log_text())
    dovecot.stop()
    await eventually(lambda: "imap session failed" in daemon.log_text())
    dovecot.start()
    dovecot.append(mail("After the outage"))

    [case] = bodies(await collect(amqp, daemon.names.default, 1, timeout_s=20))
    assert case["subject"] == "After the outage"
    assert "imap session back" in daemon.log_text()
    assert daemon.log_text().count("imap session failed") == 1  # once per outage


@pytest.mark.slow
async def test_a_renumbered_folder_is_scanned_again(
    dovecot: Dovecot, make_process: Callable[..., Daemon], amqp: AbstractChannel, tmp_path: Path
) -> None:
    dovecot.append(mail("Unseen in a renumbered folder"))
    state = tmp_path / "var" / "imap"  # make_process's working folder
    state.mkdir(parents=True)
    (state / "support.json").write_text(json.dumps({"uidvalidity": 1, "last_uid": 999}))
    daemon = await start(make_process, imap_settings(dovecot))

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["subject"] == "Unseen in a renumbered folder"
    assert "imap folder renumbered (UIDVALIDITY)" in daemon.log_text()


@pytest.mark.slow
async def test_a_wrong_password_is_logged_and_the_daemon_stays_up(
    dovecot: Dovecot, make_process: Callable[..., Daemon]
) -> None:
    daemon = make_process(extra=imap_settings(dovecot)).start(
        env={"TEST_IMAP_PASSWORD": "not-the-password"}
    )
    await daemon.wait_ready()
    await eventually(lambda: "imap session failed" in daemon.log_text())
    assert "not-the-password" not in daemon.log_text()
    assert daemon.alive()


@pytest.mark.slow
async def test_two_accounts_over_tls_and_starttls_with_a_private_ca(
    make_process: Callable[..., Daemon], amqp: AbstractChannel, certificate: tuple[Path, Path]
) -> None:
    server = Dovecot(certificate=certificate).start()
    try:
        server.append(mail("Over implicit TLS"))
        server.append(mail("Over STARTTLS"), user=SECOND_USER)
        cert = str(certificate[0])
        support = imap_settings(server, port=server.tls_port, security="tls", ca_file=cert)
        billing = imap_settings(
            server, name="billing", user=SECOND_USER, security="starttls", ca_file=cert
        )
        accounts = support + billing.split("\n", 2)[2]  # the second [[accounts]] table only
        daemon = await start(make_process, accounts)

        cases = bodies(await collect(amqp, daemon.names.default, 2))
        touchpoints = {case["subject"]: case["touchpoints"][0]["address"] for case in cases}
        assert touchpoints == {"Over implicit TLS": USER, "Over STARTTLS": SECOND_USER}
        assert server.log_text().count("TLS, session=") >= 2  # both logins were encrypted
    finally:
        server.remove()
