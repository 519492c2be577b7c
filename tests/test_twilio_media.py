"""MMS media fetched after the acknowledgement: the reply names the reference at once, the
case-open follows with the bytes in the blob store (or the link, when fetching fails)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable

import pytest
from aio_pika.abc import AbstractChannel
from aiohttp import web

from ingest.blobstore import BlobStore
from tests.conftest import bodies, collect
from tests.daemon import Daemon, free_port
from tests.local import LocalDaemon
from tests.twilio_client import AUTH_TOKEN, TOKEN_ENV, post, sms, twilio_settings

ACCOUNT_SID = "AC" + "1" * 32
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


class MediaServer:
    """Serves Twilio-like media URLs on loopback, only with the account's credentials."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[str] = []
        self.open = asyncio.Event()  # cleared: requests wait until it is set again
        self.open.set()
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/Accounts/{account}/Messages/{message}/Media/{name}", self._media)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.open.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _media(self, request: web.Request) -> web.Response:
        self.requests.append(request.match_info["name"])
        await self.open.wait()
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        if request.match_info["name"] == "ME-missing":
            return web.Response(status=404)
        return web.Response(body=PNG, content_type="image/png")


@pytest.fixture
async def media() -> AsyncIterator[MediaServer]:
    server = MediaServer()
    await server.start()
    yield server
    await server.stop()


def reference(response_text: str) -> str:
    [message] = [element.text or "" for element in ET.fromstring(response_text).iter("Message")]
    return message.rsplit(" ", 1)[-1]


def settings() -> str:
    return twilio_settings(
        fetch_media="true",
        account_sid=f'"{ACCOUNT_SID}"',
        media_fetch_attempts="2",
        media_fetch_timeout_s="5",
    )


async def test_media_are_fetched_after_the_reply_and_stored(
    make_daemon: Callable[..., LocalDaemon], media: MediaServer, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(extra=settings()).start(env=TOKEN_ENV)
    await daemon.wait_ready()
    media.open.clear()  # the download hangs: the reply must not wait for it
    fields = sms(body="Photo of the damage", NumMedia="1", MediaUrl0=media.url("ME-photo"))
    fields["MediaContentType0"] = "image/png"

    response = await asyncio.wait_for(post(daemon, "/twilio/sms", fields), 20)
    assert response.status_code == 200, response.text
    media.open.set()
    named = reference(response.text)
    repeated = await post(daemon, "/twilio/sms", fields)  # Twilio's retry: same reference
    assert reference(repeated.text) == named

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["id"] == named
    [attachment] = case["attachments"]
    assert attachment["url"] == media.url("ME-photo")
    assert attachment["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert attachment["size"] == len(PNG)
    assert BlobStore(daemon.workdir / "var" / "blobs").get(attachment["ref"]) == PNG
    assert list((daemon.workdir / "var" / "twilio-media").glob("*.json")) == []


async def test_media_that_cannot_be_fetched_stay_links(
    make_daemon: Callable[..., LocalDaemon], media: MediaServer, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(extra=settings()).start(env=TOKEN_ENV)
    await daemon.wait_ready()
    fields = sms(body="", NumMedia="2", MediaUrl0=media.url("ME-photo"))
    fields |= {"MediaContentType0": "image/png", "MediaUrl1": media.url("ME-missing")}
    fields["MediaContentType1"] = "image/jpeg"

    response = await post(daemon, "/twilio/sms", fields)
    assert response.status_code == 200

    [case] = bodies(await collect(amqp, daemon.names.default, 1, timeout_s=30))
    stored, linked = case["attachments"]
    assert stored["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert (linked["url"], linked["sha256"], linked["ref"]) == (media.url("ME-missing"), None, None)
    assert media.requests.count("ME-missing") == 2  # media_fetch_attempts
    assert "media not fetched" in daemon.log_text()


@pytest.mark.slow
async def test_a_pending_message_survives_a_restart(
    make_process: Callable[..., Daemon], media: MediaServer, amqp: AbstractChannel
) -> None:
    first = make_process(extra=settings()).start(env=TOKEN_ENV)
    await first.wait_ready()
    media.open.clear()  # the first daemon never gets the bytes
    fields = sms(body="Kept across a restart", NumMedia="1", MediaUrl0=media.url("ME-photo"))
    fields["MediaContentType0"] = "image/png"
    named = reference((await post(first, "/twilio/sms", fields)).text)
    first.kill()

    media.open.set()
    second = make_process(extra=settings()).start(env=TOKEN_ENV)
    await second.wait_ready()
    [case] = bodies(await collect(amqp, second.names.default, 1))
    assert case["id"] == named
    assert case["attachments"][0]["size"] == len(PNG)
