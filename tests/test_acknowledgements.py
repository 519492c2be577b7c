"""Acknowledgements sent back through the channel a message came by, by the real daemon.

Requests are published straight to the acknowledgements queue, as the dispatcher does; the
replies go out through the real client libraries (smtplib, twilio, python-telegram-bot) to
stand-ins on loopback: an aiosmtpd relay, a Twilio REST stand-in, the Telegram stand-in.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from normalizer.acks import ACK_SCHEMA, AckRequest
from tests.conftest import collect
from tests.daemon import SUPPORT_ADDRESS, AnyDaemon, Daemon, DaemonBase, Names
from tests.local import LocalDaemon
from tests.mail_relay import MailRelay
from tests.telegram_api import CHAT, TOKEN_ENV, BotApi
from tests.twilio_api import TwilioApi, error_body
from tests.twilio_client import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER
from tests.twilio_client import TOKEN_ENV as TWILIO_TOKEN_ENV
from tests.waiting import until

CASE = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"
RELAY_PASSWORD = "relay-password-never-logged"


def request(channel: str = "email", **fields: str) -> AckRequest:
    """An acknowledgement as the dispatcher would ask for one."""
    values = {
        "case_id": CASE,
        "channel": channel,
        "to": "ann@example.org",
        "via": SUPPORT_ADDRESS,
        "source_id": "orig-1@mail.example.org",
        "language": "en",
        "subject": f"We have your request [{CASE}]",
        "text": f"Thank you, we have your message. Your reference: {CASE}",
    } | fields
    return AckRequest.model_validate(values)


async def publish(amqp: AbstractChannel, names: Names, *bodies: AckRequest | bytes) -> None:
    for body in bodies:
        payload = body.to_json() if isinstance(body, AckRequest) else body
        await amqp.default_exchange.publish(
            aio_pika.Message(
                payload,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-schema": ACK_SCHEMA},
            ),
            routing_key=names.acknowledgements,
        )


def settings(
    relay: MailRelay | None = None,
    twilio: TwilioApi | None = None,
    *,
    mail: str = "",
    security: str = "none",
    twilio_extra: str = "",
    retry_first_s: float = 0.1,
) -> str:
    """[outbound] with short retries, the relay and Twilio pointed at the stand-ins."""
    retry_max_s = max(0.5, retry_first_s)
    text = f"\n[outbound]\nretry_first_s = {retry_first_s}\nretry_max_s = {retry_max_s}\n"
    if relay is not None:
        text += (
            f'\n[outbound.mail]\nenabled = true\nhost = "127.0.0.1"\nport = {relay.port}\n'
            f'security = "{security}"\ntimeout_s = 5.0\n{mail}'
        )
    if twilio is not None:
        text += (
            f'\n[channels.twilio]\naccount_sid = "{ACCOUNT_SID}"\n'
            f'api_base_url = "{twilio.base_url}"\napi_timeout_s = 5.0\n{twilio_extra}'
        )
    return text


async def dead_letters(
    amqp: AbstractChannel, names: Names, n: int
) -> list[AbstractIncomingMessage]:
    return await collect(amqp, names.acknowledgements_dead, n, timeout_s=20)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioApi]:
    server = TwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    await server.start()
    yield server
    await server.stop()


async def started(
    make: Callable[..., AnyDaemon], extra: str, role: str = "channels", **env: str
) -> AnyDaemon:
    return await make(extra=extra).launch(role, env)


async def test_an_email_reply_threads_onto_the_original_and_says_it_is_automatic(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel, names: Names
) -> None:
    daemon = await started(make_daemon, settings(relay), role="all")
    await publish(amqp, names, request())

    await until(lambda: relay.received)
    [mail] = relay.received
    assert mail.mail_from == "<>", "RFC 3834: an automatic reply has a null envelope sender"
    assert mail.rcpt_tos == ["ann@example.org"]
    headers = mail.message
    assert headers["From"] == SUPPORT_ADDRESS, "from the mailbox the original reached"
    assert headers["To"] == "ann@example.org"
    assert headers["Subject"] == f"We have your request [{CASE}]"
    assert headers["In-Reply-To"] == "<orig-1@mail.example.org>"
    assert headers["References"] == "<orig-1@mail.example.org>"
    assert headers["Message-ID"].endswith("@example.com>")
    assert headers["Message-ID"] != headers["In-Reply-To"]
    assert headers["Date"] is not None and headers["Date"].datetime.tzinfo is not None
    assert headers["Auto-Submitted"] == "auto-replied"
    assert headers["X-Auto-Response-Suppress"] == "All"
    assert headers["Precedence"] == "auto_reply"
    assert headers["Content-Language"] == "en"
    assert (
        headers.get_content().strip() == f"Thank you, we have your message. Your reference: {CASE}"
    )

    await daemon.settled(1, "acknowledgements")
    assert await daemon.consumed("acknowledgements", "sent") == 1
    assert await collect(amqp, names.acknowledgements_dead, 0) == []


async def test_a_web_contact_is_answered_by_email_from_the_configured_address(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel, names: Names
) -> None:
    relay = MailRelay(credentials=("acks", RELAY_PASSWORD))
    await relay.start()
    try:
        mail = (
            'from_address = "Help@Example.com"\nfrom_name = "Example Support"\n'
            'user = "acks"\nnull_sender = false\n'
        )
        daemon = await started(
            make_daemon,
            settings(relay, mail=mail),
            INGEST_OUTBOUND__MAIL__PASSWORD=RELAY_PASSWORD,
        )
        web = request("web", to="Bob@Example.org", via="api", source_id="order-77", subject="")
        await publish(amqp, names, web.model_copy(update={"subject": None}))

        await until(lambda: relay.received)
        [mail_in] = relay.received
        assert mail_in.login == "acks"
        assert mail_in.mail_from == "help@example.com"
        assert mail_in.rcpt_tos == ["bob@example.org"]
        assert mail_in.message["From"] == "Example Support <help@example.com>"
        assert mail_in.message["Subject"] == f"Your request {CASE}"
        assert mail_in.message["In-Reply-To"] is None, "a web idempotency key is no Message-ID"
        assert mail_in.message["Auto-Submitted"] == "auto-replied"
        assert RELAY_PASSWORD not in daemon.log_text()
    finally:
        await relay.stop()


@pytest.mark.slow
async def test_while_the_relay_is_down_a_reply_is_retried_then_sent_once(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel, names: Names
) -> None:
    relay = MailRelay()  # not started: connections are refused
    daemon = await started(make_daemon, settings(relay))
    await publish(amqp, names, request())

    await daemon.settled(2, "acknowledgements", "retried")
    await relay.start()
    try:
        await until(lambda: relay.received)
        await daemon.settled(1, "acknowledgements", "sent")
        assert len(relay.received) == 1
        assert await daemon.consumed("acknowledgements", "dead-lettered") == 0
        assert await collect(amqp, names.acknowledgements_dead, 0) == []
        assert "unreachable" in daemon.log_text()
    finally:
        await relay.stop()


async def test_a_refused_recipient_is_dead_lettered_at_once_with_the_reason(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel, names: Names
) -> None:
    relay.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: user unknown"
    await started(make_daemon, settings(relay))
    refused = request(to="gone@example.org")
    await publish(amqp, names, refused)

    [dead] = await dead_letters(amqp, names, 1)
    assert AckRequest.model_validate_json(dead.body) == refused
    assert dead.headers is not None
    reason = dead.headers["x-ingest-reason"]
    assert isinstance(reason, str) and "550" in reason and "user unknown" in reason
    assert dead.headers["x-ingest-attempts"] == 1
    assert dead.headers["x-ingest-origin"] == names.acknowledgements
    assert relay.received == []


@pytest.mark.slow
async def test_a_relay_that_keeps_failing_is_tried_up_to_the_limit_then_dead_lettered(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel, names: Names
) -> None:
    relay.refuse["ann@example.org"] = "451 4.3.0 try again later"
    daemon = await started(make_daemon, settings(relay))
    await publish(amqp, names, request())

    [dead] = await dead_letters(amqp, names, 1)
    assert dead.headers is not None
    limit = 10  # the default acknowledgement_delivery_limit
    assert dead.headers["x-ingest-attempts"] == limit + 1
    reason = dead.headers["x-ingest-reason"]
    assert isinstance(reason, str) and reason.startswith(f"gave up after {limit + 1} attempts")
    assert "451" in reason
    assert await daemon.consumed("acknowledgements", "retried") == limit


async def test_sms_and_whatsapp_replies_go_through_twilio_from_our_number(
    make_daemon: Callable[..., LocalDaemon], twilio: TwilioApi, amqp: AbstractChannel, names: Names
) -> None:
    daemon = await started(make_daemon, settings(twilio=twilio), **TWILIO_TOKEN_ENV)
    sms = request("sms", to="+4915112345678", via=OUR_NUMBER, source_id="SM" + "a" * 32)
    whatsapp = request("whatsapp", to="+4915112345679", via=OUR_NUMBER, source_id="SM" + "b" * 32)
    await publish(amqp, names, sms, whatsapp)

    await until(lambda: len(twilio.created) == 2)
    forms = sorted((r.form for r in twilio.created), key=lambda form: form["To"])
    assert [r.account_sid for r in twilio.created] == [ACCOUNT_SID] * 2
    assert forms == [
        {"To": "+4915112345678", "From": OUR_NUMBER, "Body": sms.text},
        {"To": "whatsapp:+4915112345679", "From": f"whatsapp:{OUR_NUMBER}", "Body": sms.text},
    ]
    await daemon.settled(2, "acknowledgements")
    assert await daemon.consumed("acknowledgements", "sent") == 2
    assert await collect(amqp, names.acknowledgements_dead, 0) == []
    log = daemon.log_text()
    assert "replier=twilio" in log
    assert AUTH_TOKEN not in log


async def test_twilio_busy_is_retried_and_a_refused_number_dead_lettered(
    make_daemon: Callable[..., LocalDaemon], twilio: TwilioApi, amqp: AbstractChannel, names: Names
) -> None:
    await started(make_daemon, settings(twilio=twilio), **TWILIO_TOKEN_ENV)
    twilio.answers.append((503, {"message": "Service Unavailable", "status": 503}))
    twilio.answers.append((429, error_body(429, 20429, "Too Many Requests")))
    await publish(amqp, names, request("sms", to="+4915112345678", via=OUR_NUMBER))
    await until(lambda: len(twilio.created) == 1)
    assert len(twilio.requests) == 3

    twilio.answers.append(
        (400, error_body(400, 21211, "The 'To' number +4915100000000 is not valid."))
    )
    await publish(amqp, names, request("sms", to="+4915100000000", via=OUR_NUMBER))
    [dead] = await dead_letters(amqp, names, 1)
    assert dead.headers is not None
    reason = dead.headers["x-ingest-reason"]
    assert isinstance(reason, str) and "400" in reason and "21211" in reason
    assert dead.headers["x-ingest-attempts"] == 1
    assert len(twilio.created) == 1


async def test_a_call_is_acknowledged_by_sms_only_when_configured(
    make_daemon: Callable[..., LocalDaemon], twilio: TwilioApi, amqp: AbstractChannel, names: Names
) -> None:
    extra = settings(twilio=twilio, twilio_extra="acknowledge_calls_by_sms = true\n")
    await started(make_daemon, extra, **TWILIO_TOKEN_ENV)
    call = request("voice", to="+442079460958", via=OUR_NUMBER, source_id="CA" + "c" * 32)
    await publish(amqp, names, call)

    await until(lambda: twilio.created)
    assert twilio.created[0].form == {"To": "+442079460958", "From": OUR_NUMBER, "Body": call.text}


async def test_a_chat_reply_goes_through_the_bot_quoting_the_original(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel, names: Names
) -> None:
    daemon = await started(make_daemon, settings() + bot_api.settings(), **TOKEN_ENV)
    chat_id = str(CHAT["id"])
    chat = request("chat", to=chat_id, via="@support_test_bot", source_id=f"{chat_id}:4711")
    await publish(amqp, names, chat)

    await until(lambda: bot_api.called("sendMessage"))
    [sent] = bot_api.called("sendMessage")
    assert sent.params["chat_id"] == CHAT["id"]
    assert sent.params["text"] == chat.text
    reply = json.loads(sent.params["reply_parameters"])
    assert reply == {"message_id": 4711, "allow_sending_without_reply": True}
    await daemon.settled(1, "acknowledgements")
    assert await daemon.consumed("acknowledgements", "sent") == 1
    assert await collect(amqp, names.acknowledgements_dead, 0) == []
    assert TOKEN_ENV["INGEST_CHANNELS__TELEGRAM__TOKEN"].split(":")[1] not in daemon.log_text()


async def test_a_channel_without_a_replier_and_a_bad_request_are_dead_lettered_with_reasons(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel, names: Names
) -> None:
    daemon = await started(make_daemon, settings())
    email = request()
    another_email = request(case_id="C-2")
    call = request("voice", to="+442079460958", via=OUR_NUMBER)
    phone_only = request("web", to="+442079460958", via="api")
    bad = [b'{"schema": "acknowledgement/1"}', b"\xff"]
    await publish(amqp, names, email, another_email, call, phone_only, *bad)

    dead = await dead_letters(amqp, names, 6)
    reasons: dict[bytes, str] = {}
    for message in dead:
        assert message.headers is not None
        reason = message.headers["x-ingest-reason"]
        assert isinstance(reason, str)
        reasons[message.body] = reason
    assert reasons[email.to_json()] == (
        "no replier configured: email replies need [outbound.mail] enabled"
    )
    assert "acknowledge_calls_by_sms is off" in reasons[call.to_json()]
    assert "by email only" in reasons[phone_only.to_json()]
    assert reasons[b'{"schema": "acknowledgement/1"}'].startswith(
        "not a valid acknowledgement/1 request: case_id: Field required"
    )
    assert reasons[b"\xff"].startswith("not a valid acknowledgement/1 request")
    log = daemon.log_text()
    assert log.count("acknowledgement dead-lettered") == 6
    # A channel without a replier is a setting: warned about once, then logged at info.
    assert log.count('level=info event="acknowledgement dead-lettered"') == 1
    assert (await daemon_ready(daemon)) == 200, "the daemon stays up"


async def daemon_ready(daemon: DaemonBase) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{daemon.url}/readyz")).status_code


async def test_a_bot_api_outage_is_retried_and_a_blocked_bot_dead_lettered(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel, names: Names
) -> None:
    await started(make_daemon, settings() + bot_api.settings(), **TOKEN_ENV)
    chat_id = str(CHAT["id"])
    bot_api.send_failures.append((502, "Bad Gateway"))
    await publish(amqp, names, request("chat", to=chat_id, via="@bot", source_id=f"{chat_id}:9"))
    await until(lambda: len(bot_api.called("sendMessage")) == 2)

    bot_api.send_failures.append((403, "Forbidden: bot was blocked by the user"))
    await publish(amqp, names, request("chat", to=chat_id, via="@bot", source_id=f"{chat_id}:10"))
    [dead] = await dead_letters(amqp, names, 1)
    assert dead.headers is not None
    assert dead.headers["x-ingest-reason"] == ("Telegram: Forbidden: bot was blocked by the user")
    assert len(bot_api.called("sendMessage")) == 3


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_the_relay_is_reached_over_tls_verified_against_the_configured_ca(
    make_daemon: Callable[..., LocalDaemon],
    amqp: AbstractChannel,
    names: Names,
    certificate: tuple[Path, Path],
    security: str,
) -> None:
    relay = MailRelay(tls=security, certificate=certificate)
    await relay.start()
    try:
        mail = f'ca_file = "{certificate[0]}"\n'
        await started(make_daemon, settings(relay, mail=mail, security=security))
        await publish(amqp, names, request())
        await until(lambda: relay.received)
        assert relay.received[0].tls
        assert relay.received[0].message["Auto-Submitted"] == "auto-replied"
    finally:
        await relay.stop()


@pytest.mark.slow
async def test_sigterm_during_a_retry_wait_stops_at_once_and_keeps_the_request(
    make_process: Callable[..., Daemon], amqp: AbstractChannel, names: Names
) -> None:
    relay = MailRelay()  # never started: every try fails
    daemon = await started(make_process, settings(relay, retry_first_s=60.0))
    waiting = request()
    await publish(amqp, names, waiting)
    await until(lambda: "will retry" in daemon.log_text())

    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(60) == 0
    # Well short of the 60 s retry wait (a loaded machine may take seconds to stop at all).
    assert time.monotonic() - began < 30, "a retry wait does not hold up shutdown"
    [kept] = await collect(amqp, names.acknowledgements, 1)
    assert AckRequest.model_validate_json(kept.body) == waiting


async def test_a_dispatcher_only_process_sends_no_acknowledgements(
    make_daemon: Callable[..., LocalDaemon], relay: MailRelay, amqp: AbstractChannel, names: Names
) -> None:
    daemon = make_daemon(extra=settings(relay)).start(role="dispatcher")
    await daemon.wait_ready()
    await publish(amqp, names, request())
    kept = await collect(amqp, names.acknowledgements, 1)
    assert [m.body for m in kept] == [request().to_json()]
    assert relay.received == []
    assert "sending acknowledgements" not in daemon.log_text()
