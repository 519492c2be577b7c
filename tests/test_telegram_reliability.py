"""Telegram polling keeps its promise: an update is confirmed to Telegram only once safe.

Confirming is passing an offset above the update's id to getUpdates, so each test looks at
the offsets the stand-in Bot API received and when.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import Daemon
from tests.proxy import TcpProxy
from tests.telegram_api import CHAT, TOKEN, TOKEN_ENV, BotApi, message, start_daemon
from tests.telegram_faults import spool_unwritable
from tests.test_spool import wait_not_ready
from tests.waiting import until

JPEG = b"\xff\xd8\xff\xe0 a photo of the damage" * 10


def confirmed_after(api: BotApi, update_id: int) -> list[float]:
    """When getUpdates calls confirmed the update (passed an offset above its id)."""
    return [
        call.at for call in api.called("getUpdates") if (call.params.get("offset") or 0) > update_id
    ]


def served(api: BotApi, update_id: int) -> int:
    """How many getUpdates answers carried the update."""
    return sum(update_id in call.served for call in api.called("getUpdates"))


@pytest.mark.slow
async def test_a_crash_between_fetching_and_making_safe_loses_nothing(
    make_process: Callable[..., Daemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    bot_api.add_file("damage", JPEG)
    bot_api.downloads_open.clear()  # the attachment download hangs: fetched, not yet safe
    first = await start_daemon(make_process, bot_api)
    photo = [{"file_id": "damage", "file_unique_id": "AQADd", "width": 640, "height": 480}]
    mid = bot_api.message_id()
    update_id = await bot_api.push("message", message(mid, photo=photo, caption="Crash test"))
    await asyncio.wait_for(bot_api.download_requested.wait(), 20)

    first.kill()  # SIGKILL: no clean stop, no last confirmation
    crashed_at = time.monotonic()
    assert served(bot_api, update_id) == 1
    assert confirmed_after(bot_api, update_id) == []
    assert await collect(amqp, first.names.default, 0) == []

    bot_api.downloads_open.set()
    second = await start_daemon(make_process, bot_api)  # same folder, same queues
    [case] = bodies(await collect(amqp, second.names.default, 1))
    assert case["source_id"] == f"{CHAT['id']}:{mid}"
    assert case["text"] == "Crash test"
    assert [a["size"] for a in case["attachments"]] == [len(JPEG)]
    assert served(bot_api, update_id) == 2, "Telegram served the update again after the crash"
    await until(lambda: confirmed_after(bot_api, update_id))
    assert min(confirmed_after(bot_api, update_id)) > crashed_at


@pytest.mark.slow
async def test_a_crash_while_the_broker_and_spool_are_down_loses_nothing(
    make_process: Callable[..., Daemon], bot_api: BotApi, proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    first = await start_daemon(make_process, bot_api, proxy.amqp_url)
    await proxy.cut()
    await wait_not_ready(first)
    with spool_unwritable(first):
        update_id = await bot_api.push("message", message(30, text="Lost? Never."))
        await until(lambda: "telegram update not safe yet" in first.log_text())
        first.kill()
    crashed_at = time.monotonic()
    assert confirmed_after(bot_api, update_id) == []

    second = await start_daemon(make_process, bot_api)  # broker reachable, spool writable
    [case] = bodies(await collect(amqp, second.names.default, 1))
    assert case["source_id"] == f"{CHAT['id']}:30"
    assert served(bot_api, update_id) == 2
    await until(lambda: confirmed_after(bot_api, update_id))
    assert min(confirmed_after(bot_api, update_id)) > crashed_at


@pytest.mark.slow
async def test_an_update_that_cannot_be_made_safe_is_retried_never_skipped(
    make_process: Callable[..., Daemon], bot_api: BotApi, proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_process, bot_api, proxy.amqp_url)
    await proxy.cut()
    await wait_not_ready(daemon)
    with spool_unwritable(daemon):
        first = await bot_api.push("message", message(10, text="First, not safe yet"))
        await bot_api.push("message", message(11, text="Second, waits its turn"))
        await until(lambda: daemon.log_text().count("spool write failed") >= 3)
        assert confirmed_after(bot_api, first - 1) == [], "nothing is confirmed while not safe"
    await until(lambda: "telegram updates safe again" in daemon.log_text())
    await proxy.start()

    forwarded = bodies(await collect(amqp, daemon.names.default, 2))
    assert [case["source_id"] for case in forwarded] == [f"{CHAT['id']}:10", f"{CHAT['id']}:11"]
    assert daemon.log_text().count("telegram update not safe yet") == 1, "logged once"


@pytest.mark.slow
async def test_a_bot_api_outage_is_logged_once_and_never_shows_the_token(
    make_process: Callable[..., Daemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = make_process(extra=bot_api.settings(), log_level="debug").start(env=TOKEN_ENV)
    await daemon.wait_ready()
    await until(lambda: bot_api.called("getUpdates"))
    await bot_api.push("message", message(20, text="Before the outage"))
    await bot_api.stop()
    await until(lambda: daemon.log_text().count("still telegram bot api unreachable") >= 2)
    async with daemon.client() as client:
        assert (await client.get("/healthz")).status_code == 200

    await bot_api.start()  # back on the same port
    await bot_api.push("message", message(21, text="After the outage"))
    forwarded = bodies(await collect(amqp, daemon.names.default, 2))
    assert [case["text"] for case in forwarded] == ["Before the outage", "After the outage"]

    log = daemon.log_text()
    assert log.count('level=warning event="telegram bot api unreachable, retrying"') == 1
    assert "telegram bot api reachable again" in log
    secret_part = TOKEN.split(":")[1]
    assert secret_part not in log, "the token is in a log line"


async def test_sigterm_cuts_a_long_poll_short_and_stops_cleanly(
    make_process: Callable[..., Daemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_process, bot_api, poll_timeout_s=50)
    update_id = await bot_api.push("message", message(40, text="Just before the stop"))
    assert len(await collect(amqp, daemon.names.default, 1)) == 1
    await until(lambda: confirmed_after(bot_api, update_id))  # now waiting in a 50 s long poll

    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(60) == 0
    assert time.monotonic() - started < 30  # well short of the 50 s long poll
    assert "stopped" in daemon.log_text()
