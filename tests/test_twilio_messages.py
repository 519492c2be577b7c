"""Twilio messaging end to end: signed form posts in, TwiML out, the case in the team queue."""

from __future__ import annotations

import asyncio
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.twilio_client import (
    AUTH_TOKEN,
    FORM,
    OUR_NUMBER,
    TOKEN_ENV,
    new_sid,
    post,
    signature,
    sms,
    twilio_settings,
)

FTP_MEDIA = {"MediaUrl0": "ftp://example.com/1", "MediaContentType0": "image/png"}


@pytest.fixture
async def daemon(make_daemon: Callable[..., LocalDaemon]) -> DaemonBase:
    """A daemon with the Twilio channel on, its Auth Token from the environment."""
    running = make_daemon(extra=twilio_settings()).start(env=TOKEN_ENV)
    await running.wait_ready()
    return running


def replies(response: httpx.Response) -> list[str]:
    """The <Message> texts of a TwiML answer."""
    assert response.headers["content-type"].startswith("text/xml"), response.text
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    return [element.text or "" for element in root.iter("Message")]


async def test_an_sms_opens_a_case_and_the_reply_names_it_in_the_senders_language(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    fields = sms(sender="+49 151 1234 5678", body="Hallo,\r\nmein Paket fehlt. [#C-77]")
    response = await post(daemon, "/twilio/sms", fields)
    assert response.status_code == 200, response.text

    [case] = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert replies(response) == [f"Danke! Ref {case['id']}"]
    assert (case["channel"], case["adapter"], case["source_id"]) == (
        "sms",
        "twilio",
        fields["MessageSid"],
    )
    assert case["sender"] == {
        "kind": "phone",
        "address": "+4915112345678",
        "name": None,
        "alternates": [],
    }
    assert case["touchpoints"] == [{"kind": "number", "address": OUR_NUMBER}]
    assert case["text"] == "Hallo,\nmein Paket fehlt. [#C-77]"
    assert case["thread"]["case_ref"] == "C-77"
    assert case["attachments"] == []
    assert case["triage"]["queue"] == daemon.names.default


async def test_mms_media_become_linked_attachments(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    base = f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Messages/MM1/Media"
    fields = sms(
        sender="+12025550143",
        body="",
        NumMedia="2",
        MediaUrl0=f"{base}/ME{'a' * 32}",
        MediaContentType0="image/jpeg",
        MediaUrl1=f"{base}/ME{'b' * 32}",
        MediaContentType1="application/pdf",
    )
    response = await post(daemon, "/twilio/sms", fields)
    assert response.status_code == 200, response.text

    [case] = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert replies(response) == [f"Thanks! Ref {case['id']}"]  # a US number: the default
    assert case["text"] == ""
    assert case["attachments"] == [
        {
            "name": f"ME{'a' * 32}.jpg",
            "media_type": "image/jpeg",
            "size": None,
            "sha256": None,
            "ref": None,
            "url": f"{base}/ME{'a' * 32}",
            "duration_s": None,
        },
        {
            "name": f"ME{'b' * 32}.pdf",
            "media_type": "application/pdf",
            "size": None,
            "sha256": None,
            "ref": None,
            "url": f"{base}/ME{'b' * 32}",
            "duration_s": None,
        },
    ]


async def test_whatsapp_is_its_own_channel_with_the_profile_name(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    fields = sms(
        sender="whatsapp:+436641234567",
        body="Servus, wo ist meine Rechnung?",
        To=f"whatsapp:{OUR_NUMBER}",
        ProfileName="Anna Gruber",
        WaId="436641234567",
    )
    response = await post(daemon, "/twilio/sms", fields)
    assert response.status_code == 200, response.text

    [case] = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert replies(response) == [f"Danke! Ref {case['id']}"]  # Austria: German
    assert case["channel"] == "whatsapp"
    assert case["sender"]["address"] == "+436641234567"
    assert case["sender"]["name"] == "Anna Gruber"
    assert case["touchpoints"] == [{"kind": "number", "address": OUR_NUMBER}]


async def test_a_retried_message_sid_forwards_one_case(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    fields = sms()
    answers = [await post(daemon, "/twilio/sms", fields) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert [case["source_id"] for case in forwarded] == [fields["MessageSid"]]
    # Twilio retries when it did not get the first answer: every answer names the one case.
    for answer in answers:
        assert replies(answer) == [f"Danke! Ref {forwarded[0]['id']}"]


async def test_retries_at_the_same_moment_all_name_the_one_case(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    fields = sms(body="Sent once, retried three times at once.")
    answers = await asyncio.gather(*(post(daemon, "/twilio/sms", fields) for _ in range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4, [a.text for a in answers]

    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    forwarded += await forwarded_behind(amqp, daemon.names)
    assert [case["source_id"] for case in forwarded] == [fields["MessageSid"]]
    assert {replies(answer)[0] for answer in answers} == {f"Danke! Ref {forwarded[0]['id']}"}


async def test_retries_of_an_unusable_message_at_once_all_get_422(daemon: DaemonBase) -> None:
    for _ in range(3):
        fields = sms(sender="VODAFONE")  # kept in quarantine, each retry under one id
        answers = await asyncio.gather(*(post(daemon, "/twilio/sms", fields) for _ in range(4)))
        assert [answer.status_code for answer in answers] == [422] * 4, [a.text for a in answers]
        assert {answer.headers["content-type"] for answer in answers} == {
            "application/problem+json"
        }
        [kept] = {answer.json()["quarantine_id"] for answer in answers}
        entry = json.loads((daemon.workdir / "var" / "quarantine" / f"{kept}.json").read_text())
        assert entry["source_id"] == fields["MessageSid"]
    assert daemon.alive()


async def test_signatures_are_checked_against_the_public_url(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    fields = sms()
    loopback_url = daemon.url  # where the request really went: its Host is never trusted
    tampered = fields | {"Body": "changed on the way"}
    attempts = {
        "missing": {},
        "wrong token": {"X-Twilio-Signature": signature("/twilio/sms", fields, token="nope")},
        "signed for the Host": {
            "X-Twilio-Signature": signature("/twilio/sms", fields, base=loopback_url)
        },
        "other body": {"X-Twilio-Signature": signature("/twilio/sms", fields)},
        "other path": {"X-Twilio-Signature": signature("/twilio/voice", tampered)},
    }
    async with daemon.client() as client:
        for name, headers in attempts.items():
            sent = tampered if name in ("other body", "other path") else fields
            response = await client.post(
                "/twilio/sms",
                content=urlencode(sent),
                headers={"Content-Type": FORM} | headers,
            )
            assert response.status_code == 403, name
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 403

    good = await post(daemon, "/twilio/sms", fields)
    assert good.status_code == 200
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert [case["text"] for case in forwarded] == [fields["Body"]]
    assert AUTH_TOKEN not in daemon.log_text()


async def test_bad_input_gets_http_errors_and_the_daemon_keeps_serving(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    no_sid = {k: v for k, v in sms().items() if k not in ("MessageSid", "From")}
    checks = [
        (await post(daemon, "/twilio/sms", no_sid), 422),
        (await post(daemon, "/twilio/sms", sms(message_sid="SM-not-a-sid")), 422),
        (await post(daemon, "/twilio/sms", sms(NumMedia="2", MediaUrl0="https://x/1")), 422),
        (await post(daemon, "/twilio/sms", sms(NumMedia="many")), 422),
        (await post(daemon, "/twilio/sms", sms(NumMedia="1", **FTP_MEDIA)), 422),
        (await post(daemon, "/twilio/sms", sms(body="x" * 5000)), 413),
        (await post(daemon, "/twilio/sms", sms(sender="VODAFONE")), 422),
        (await post(daemon, "/twilio/voice", {"CallSid": new_sid("CA")}), 422),
    ]
    for response, status in checks:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert checks[0][0].json()["errors"] == [
        {"field": "MessageSid", "message": "missing"},
    ]
    assert checks[2][0].json()["errors"] == [{"field": "MediaContentType0", "message": "missing"}]
    assert checks[4][0].json()["errors"][0]["field"] == "MediaUrl0"
    assert "quarantine_id" in checks[6][0].json()  # an unusable sender: kept, not lost

    async with daemon.client() as client:
        as_json = await client.post("/twilio/sms", json=sms())
        not_utf8 = await client.post(
            "/twilio/sms", content=b"Body=%FF&From=\xff", headers={"Content-Type": FORM}
        )
    assert as_json.status_code == 415
    assert not_utf8.status_code == 400

    good = await post(daemon, "/twilio/sms", sms())
    assert good.status_code == 200
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert len(forwarded) == 1
    assert daemon.alive()


async def test_not_safe_answers_503_so_that_twilio_retries(
    make_daemon: Callable[..., LocalDaemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(proxy.amqp_url, extra=twilio_settings()).start(env=TOKEN_ENV)
    await daemon.wait_ready()
    spool = daemon.workdir / "var" / "spool"
    await proxy.cut()  # no broker
    shutil.rmtree(spool)
    spool.write_bytes(b"")  # and no spool: a file where the folder should be
    fields = sms()

    refused = await post(daemon, "/twilio/sms", fields)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "30"

    spool.unlink()
    (spool / "incoming").mkdir(parents=True)
    retried = await post(daemon, "/twilio/sms", fields)  # Twilio's retry: the spool takes it
    assert retried.status_code == 200, retried.text
    await proxy.start()
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1, timeout_s=40))
    assert [case["source_id"] for case in forwarded] == [fields["MessageSid"]]


async def test_unsigned_requests_pass_only_when_verification_is_off(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    daemon = make_daemon(extra=twilio_settings(verify_signatures="false")).start()
    await daemon.wait_ready()
    response = await post(daemon, "/twilio/sms", sms(), signed=False)
    assert response.status_code == 200, response.text
    assert len(await collect(amqp, daemon.names.default, expected=1)) == 1
    assert "twilio signatures are NOT verified" in daemon.log_text()
    async with daemon.client() as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/twilio/sms", "/twilio/voice", "/twilio/voice/recording"} <= set(paths)
