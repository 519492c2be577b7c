"""Telegram webhook mode: real HTTP POSTs of update JSON to the daemon, checked by secret token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.telegram_api import CHAT, SECRET, TOKEN, BotApi, message, start_daemon
from tests.telegram_faults import spool_unwritable
from tests.test_spool import wait_not_ready
from tests.waiting import until

PATH = "/hooks/telegram"
PUBLIC_URL = "https://support.example/hooks/telegram"
JPEG = b"\xff\xd8\xff\xe0 a photo of a broken kettle"


async def webhook_daemon(
    make_daemon: Callable[..., LocalDaemon], api: BotApi, broker_url: str | None = None
) -> DaemonBase:
    options: dict[str, Any] = {"broker_url": broker_url} if broker_url else {}
    return await start_daemon(
        make_daemon, api, mode="webhook", webhook_path=PATH, webhook_url=PUBLIC_URL, **options
    )


async def post(daemon: DaemonBase, body: object, secret: str | None = SECRET) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with daemon.client() as client:
        if isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            return await client.post(PATH, content=body, headers=headers)
        return await client.post(PATH, json=body, headers=headers)


async def test_an_update_posted_with_the_secret_opens_a_case_once(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await webhook_daemon(make_daemon, bot_api)
    await until(lambda: bot_api.called("setWebhook"))
    [registered] = bot_api.called("setWebhook")
    assert registered.params["url"] == PUBLIC_URL
    assert registered.params["secret_token"] == SECRET
    assert registered.params["allowed_updates"] == ["message", "edited_message"]

    bot_api.add_file("kettle", JPEG)
    photo = [{"file_id": "kettle", "file_unique_id": "AQADk", "width": 800, "height": 600}]
    mid = bot_api.message_id()
    update = {"update_id": 42, "message": message(mid, photo=photo, caption="Kettle broke")}
    answer = await post(daemon, update)
    assert answer.status_code == 200, answer.text
    again = await post(daemon, update)  # Telegram retrying a delivery it thinks failed
    assert again.status_code == 200

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert await forwarded_behind(amqp, daemon.names) == []
    assert answer.json() == {"status": "accepted", "outcome": case["id"]}
    assert (case["channel"], case["adapter"], case["source_id"]) == (
        "chat",
        "telegram",
        f"{CHAT['id']}:{mid}",
    )
    assert case["text"] == "Kettle broke"
    [attachment] = case["attachments"]
    assert BlobStore(daemon.workdir / "var" / "blobs").get(attachment["ref"]) == JPEG
    assert not bot_api.called("getUpdates"), "webhook mode never polls"


async def test_start_through_the_webhook_is_greeted(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await webhook_daemon(make_daemon, bot_api)
    answer = await post(daemon, {"update_id": 7, "message": message(2, text="/start")})
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "greeted"
    [greeting] = bot_api.called("sendMessage")
    assert greeting.params["chat_id"] == CHAT["id"]
    assert await forwarded_behind(amqp, daemon.names) == []


async def test_a_wrong_secret_or_a_bad_body_is_refused_with_problem_details(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await webhook_daemon(make_daemon, bot_api)
    update = {"update_id": 9, "message": message(3, text="hello")}
    async with daemon.client() as client:
        form = await client.post(
            PATH,
            content=b"update_id=9",
            headers={
                "X-Telegram-Bot-Api-Secret-Token": SECRET,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    answers = {
        "wrong secret": (await post(daemon, update, secret="not-the-secret"), 403),
        "no secret": (await post(daemon, update, secret=None), 403),
        "not json": (await post(daemon, b'{"update_id": '), 400),
        "no update_id": (await post(daemon, {"message": message(3, text="hi")}), 400),
        "form body": (form, 415),
    }
    for name, (answer, status) in answers.items():
        assert answer.status_code == status, (name, answer.text)
        assert answer.headers["content-type"] == "application/problem+json", name
        assert answer.json()["status"] == status, name
    assert "X-Telegram-Bot-Api-Secret-Token" in answers["wrong secret"][0].json()["detail"]
    assert await forwarded_behind(amqp, daemon.names) == []

    poll = {"update_id": 10, "message": message(4, poll={"id": "p", "question": "?"})}
    kept = await post(daemon, poll)  # well-formed, but nothing to open a case with
    assert (kept.status_code, kept.json()["outcome"]) == (200, "quarantined")
    good = await post(daemon, update)
    assert good.status_code == 200
    assert len(await collect(amqp, daemon.names.default, 1)) == 1


async def test_the_answer_is_503_until_the_case_open_is_safe(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = await webhook_daemon(make_daemon, bot_api, broker_url=proxy.amqp_url)
    update = {"update_id": 11, "message": message(4, text="Is anyone there?")}
    await proxy.cut()
    await wait_not_ready(daemon)
    with spool_unwritable(daemon):
        refused = await post(daemon, update)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["content-type"] == "application/problem+json"
    assert await collect(amqp, daemon.names.default, 0) == []

    retried = await post(daemon, update)  # Telegram delivers it again; the spool takes it now
    assert retried.status_code == 200
    await proxy.start()
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["source_id"] == f"{CHAT['id']}:4"
    assert case["id"] == retried.json()["outcome"]


async def test_a_text_update_is_taken_while_the_bot_api_is_unreachable(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    unreachable = BotApi()  # never started: its port refuses every call
    daemon = await webhook_daemon(make_daemon, unreachable)
    first = {"update_id": 50, "message": message(50, text="My kettle broke")}
    answer = await post(daemon, first)
    assert answer.status_code == 200, answer.text

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["text"] == "My kettle broke"
    assert case["touchpoints"][0]["address"].startswith("telegram-bot-"), case["touchpoints"]
    assert "set [channels.telegram] username" in daemon.log_text()
    assert TOKEN not in daemon.log_text()


async def test_the_configured_username_is_the_touchpoint_without_asking_the_bot_api(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    unreachable = BotApi()
    daemon = await start_daemon(
        make_daemon,
        unreachable,
        mode="webhook",
        webhook_path=PATH,
        username="kettle_support_bot",
    )
    answer = await post(daemon, {"update_id": 51, "message": message(51, text="Hello")})
    assert answer.status_code == 200, answer.text
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["touchpoints"][0]["address"] == "@kettle_support_bot"


async def test_an_attachment_is_fetched_later_when_the_bot_api_is_unreachable(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    api = BotApi()  # not started yet: unreachable while the update comes in
    daemon = await webhook_daemon(make_daemon, api)
    photo = [{"file_id": "kettle", "file_unique_id": "AQADk", "width": 800, "height": 600}]
    update = {"update_id": 60, "message": message(60, photo=photo, caption="Kettle broke")}
    answer = await post(daemon, update)
    assert answer.status_code == 200, answer.text  # kept, not refused
    reference = answer.json()["outcome"]
    again = await post(daemon, update)  # Telegram delivering it again: the same reference
    assert again.json()["outcome"] == reference
    kept = list((daemon.workdir / "var" / "telegram-updates").glob("*.json"))
    assert [path.name for path in kept] == ["60.json"]

    await api.start()  # the Bot API is back: the fetcher's next try gets the photo
    try:
        api.add_file("kettle", JPEG)
        [case] = bodies(await collect(amqp, daemon.names.default, 1))
    finally:
        await api.stop()
    assert case["id"] == reference
    assert case["text"] == "Kettle broke"
    [attachment] = case["attachments"]
    assert BlobStore(daemon.workdir / "var" / "blobs").get(attachment["ref"]) == JPEG
    assert not list((daemon.workdir / "var" / "telegram-updates").glob("*.json"))
    assert await forwarded_behind(amqp, daemon.names) == []
