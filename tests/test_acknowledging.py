"""The dispatcher asks for acknowledgements the rules name, with the case reference, never for
auto-replies and never more than the daily cap per address; the relay stand-in receives them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import SUPPORT_ADDRESS, DaemonBase, run_ingest
from tests.local import LocalDaemon
from tests.mail_relay import MailRelay
from tests.test_acknowledgements import settings as outbound_settings
from tests.test_smtp import mail, send
from tests.test_web_api import MESSAGE, submit

TRIAGE = """
[triage]
ack_daily_cap = 2

[triage.templates.received]
subject = { en = "We got it [#{reference}]", da = "Modtaget [#{reference}]" }
text = { en = "Hello {name}, reference {reference}.", da = "Hej {name}, reference {reference}." }

[[triage.rules]]
name = "acknowledge"
when = { channel = ["email", "web"] }
acknowledge = "received"
"""


async def start(make_daemon: Callable[..., LocalDaemon], relay: MailRelay) -> DaemonBase:
    extra = TRIAGE + outbound_settings(relay, mail='from_address = "support@example.com"\n')
    daemon = make_daemon(extra=extra).start()
    await daemon.wait_ready()
    return daemon


async def test_a_new_case_is_acknowledged_with_its_reference(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, relay)
    danish = MESSAGE | {"subject": "Hjælp", "text": "Min pakke er ikke kommet.", "language": "da"}
    assert (await submit(daemon, danish)).status_code == 202

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    reference = case["dedup"]["case_id"]
    assert (case["triage"]["acknowledge"], case["triage"]["acknowledged"]) == ("received", True)
    await daemon.settled(1, "acknowledgements")
    [sent] = relay.received
    assert sent.rcpt_tos == ["ann.lee@example.com"]
    assert sent.message["Subject"] == f"Modtaget [#{reference}]"
    assert sent.message["Auto-Submitted"] == "auto-replied"
    assert f"Hej Ann Lee, reference {reference}." in sent.message.get_content()


async def test_no_more_than_the_daily_cap_to_one_address(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, relay)
    for n in range(4):
        message = MESSAGE | {"subject": f"Question {n}", "text": f"Distinct question number {n}"}
        assert (await submit(daemon, message)).status_code == 202

    cases = bodies(await collect(amqp, daemon.names.default, 4))
    assert [case["triage"]["acknowledged"] for case in cases] == [True, True, False, False]
    await daemon.settled(2, "acknowledgements")  # the two requests the dispatcher made
    assert len(relay.received) == 2
    assert daemon.log_text().count("acknowledgement capped") == 2


async def test_auto_replies_are_never_acknowledged(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, relay)
    auto = mail("Out of office", Auto_Submitted="auto-replied")
    answer = await asyncio.to_thread(send, daemon, auto, [SUPPORT_ADDRESS])
    assert answer.startswith("250")

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["flags"]["auto_reply"] is True
    assert (case["triage"]["acknowledge"], case["triage"]["acknowledged"]) == ("received", False)

    # A marker behind it: a person's mail, acknowledged. Had the auto-reply been acknowledged,
    # its request would have been on the queue before the marker's.
    person = mail("A real question")
    person.replace_header("From", "Bob <bob@customer.example>")
    assert (await asyncio.to_thread(send, daemon, person, [SUPPORT_ADDRESS])).startswith("250")
    await daemon.settled(1, "acknowledgements")
    assert [sent.rcpt_tos for sent in relay.received] == [["bob@customer.example"]]
    assert await daemon.consumed("acknowledgements") == 1


async def test_without_a_replier_nothing_is_requested_and_the_case_says_why(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    daemon = await make_daemon(extra=TRIAGE).launch()  # no [outbound.mail]: nobody can send
    assert (await submit(daemon, MESSAGE)).status_code == 202

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert (case["triage"]["acknowledge"], case["triage"]["acknowledged"]) == ("received", False)
    assert "[outbound.mail]" in case["triage"]["not_acknowledged"]
    await daemon.settled(1)
    for queue in (daemon.names.acknowledgements, daemon.names.acknowledgements_dead):
        declared = await amqp.declare_queue(queue, passive=True)
        assert declared.declaration_result.message_count == 0, queue
    assert "dead-lettered" not in daemon.log_text()


def test_rules_check_warns_about_an_acknowledgement_nobody_can_send(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(TRIAGE)
    checked = run_ingest(settings, "rules", "check")
    assert checked.returncode == 0, checked.stderr
    warnings = checked.stderr.decode().splitlines()
    assert len(warnings) == 2, warnings  # email and web, the channels the rule names
    assert all("rule 'acknowledge'" in line and "[outbound.mail]" in line for line in warnings)

    settings.write_text(
        TRIAGE + '\n[outbound.mail]\nenabled = true\nfrom_address = "s@x.example"\n'
    )
    assert run_ingest(settings, "rules", "check").stderr == b""
