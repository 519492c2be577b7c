"""The Telegram channel: the real python-telegram-bot in the real daemon, against a stand-in API.

Long polling is the default mode; the webhook tests post update JSON over real HTTP. Cases are
read from the team queue, after the dispatcher, as a support team would see them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from tests.conftest import bodies, collect
from tests.daemon import DaemonBase, ingest_command
from tests.local import LocalDaemon
from tests.telegram_api import CHAT, SENT, TOKEN_ENV, USER, BotApi, message, start_daemon
from tests.waiting import until

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"invoice 1234\n" * 100
OGG = b"OggS" + bytes(200)


def blob(daemon: DaemonBase, ref: str) -> bytes:
    return BlobStore(daemon.workdir / "var" / "blobs").get(ref)


async def test_a_text_message_opens_a_chat_case_and_is_confirmed_after(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    mid = bot_api.message_id()
    update_id = await bot_api.push("message", message(mid, text="My order 1234 never came.\r\n"))

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert (case["channel"], case["adapter"], case["source_id"]) == (
        "chat",
        "telegram",
        f"{CHAT['id']}:{mid}",
    )
    assert case["touchpoints"] == [{"kind": "bot", "address": "@support_test_bot"}]
    assert case["sender"] == {
        "kind": "telegram",
        "address": str(USER["id"]),
        "name": "Ann Lee",
        "alternates": [{"kind": "telegram", "address": "@ann_lee"}],
    }
    assert case["text"] == "My order 1234 never came."
    assert case["language"] == "en"
    assert case["sent_at"] == "2025-11-23T09:00:00Z"
    assert case["thread"]["conversation_key"] == f"telegram:{CHAT['id']}"
    assert case["flags"]["edited"] is False
    assert case["dedup"]["verdict"] == "new"
    original = blob(daemon, case["raw_ref"])
    assert b"My order 1234" in original and str(update_id).encode() in original

    # The update is confirmed (an offset past it) only by a later getUpdates call.
    await until(lambda: update_id + 1 in bot_api.offsets())
    assert bot_api.called("deleteWebhook"), "polling clears a webhook first"
    assert not bot_api.called("sendMessage")


async def test_a_photo_with_a_caption_keeps_the_largest_size(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    bot_api.add_file("photo-small", b"\xff\xd8 thumbnail")
    bot_api.add_file("photo-large", JPEG)
    sizes = [
        {"file_id": "photo-small", "file_unique_id": "AQADs", "width": 90, "height": 60},
        {"file_id": "photo-large", "file_unique_id": "AQADl", "width": 1280, "height": 853},
    ]
    await bot_api.push("message", message(bot_api.message_id(), photo=sizes, caption="Broken"))

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["text"] == "Broken"
    [attachment] = case["attachments"]
    assert attachment == {
        "name": "photo-AQADl.jpg",
        "media_type": "image/jpeg",
        "size": len(JPEG),
        "sha256": hashlib.sha256(JPEG).hexdigest(),
        "ref": f"sha256:{hashlib.sha256(JPEG).hexdigest()}",
        "url": None,
        "duration_s": None,
    }
    assert blob(daemon, attachment["ref"]) == JPEG
    assert [call.params["file_id"] for call in bot_api.called("getFile")] == ["photo-large"]
    assert [call.params["path"] for call in bot_api.called("download")] == ["documents/photo-large"]


async def test_a_document_a_voice_note_and_a_location_each_open_a_case(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    bot_api.add_file("doc-1", PDF)
    bot_api.add_file("voice-1", OGG)
    document = {
        "file_id": "doc-1",
        "file_unique_id": "AgADd",
        "file_name": "invoice 1234.pdf",
        "mime_type": "application/pdf",
        "file_size": len(PDF),
    }
    voice = {"file_id": "voice-1", "file_unique_id": "AwADv", "duration": 4, "file_size": len(OGG)}
    ids = [bot_api.message_id() for _ in range(3)]
    await bot_api.push("message", message(ids[0], document=document))
    await bot_api.push("message", message(ids[1], voice=voice, caption="Listen please"))
    await bot_api.push("message", message(ids[2], location={"latitude": 52.52, "longitude": 13.4}))

    cases = {
        case["source_id"]: case for case in bodies(await collect(amqp, daemon.names.default, 3))
    }
    assert list(cases) == [f"{CHAT['id']}:{mid}" for mid in ids]
    by_document, by_voice, by_location = cases.values()
    assert by_document["text"] == ""
    assert [(a["name"], a["media_type"], a["size"]) for a in by_document["attachments"]] == [
        ("invoice 1234.pdf", "application/pdf", len(PDF))
    ]
    assert blob(daemon, by_document["attachments"][0]["ref"]) == PDF
    assert by_voice["text"] == "Listen please"
    assert [(a["name"], a["media_type"]) for a in by_voice["attachments"]] == [
        ("voice-AwADv.ogg", "audio/ogg")
    ]
    assert blob(daemon, by_voice["attachments"][0]["ref"]) == OGG
    assert by_location["text"] == "Location: 52.52, 13.4"
    assert by_location["attachments"] == []


async def test_an_attachment_over_the_limit_is_named_in_the_text_not_kept(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api, max_attachment_bytes=4096)
    bot_api.add_file("big", PDF * 4)  # no size announced in the message: found out on getFile
    document = {"file_id": "big", "file_unique_id": "AgADb", "file_name": "scan.pdf"}
    gone = {"file_id": "expired", "file_unique_id": "AgADx", "file_name": "old.pdf"}
    await bot_api.push("message", message(bot_api.message_id(), document=document, caption="a"))
    await bot_api.push("message", message(bot_api.message_id(), document=gone, caption="b"))

    first, second = bodies(await collect(amqp, daemon.names.default, 2))
    assert first["attachments"] == second["attachments"] == []
    assert first["text"] == "a\n\n[attachment not kept: scan.pdf: larger than the 4096-byte limit]"
    assert second["text"] == (
        "b\n\n[attachment not kept: old.pdf: the Bot API refused it (Invalid file_id)]"
    )
    assert not bot_api.called("download")


async def test_start_is_answered_with_the_greeting_and_opens_no_case(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    start_id = await bot_api.push("message", message(bot_api.message_id(), text="/start"))
    mid = bot_api.message_id()
    await bot_api.push("message", message(mid, text="Now my question."))

    await daemon.settled(1)
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["source_id"] == f"{CHAT['id']}:{mid}"
    [greeting] = bot_api.called("sendMessage")
    assert greeting.params == {
        "chat_id": CHAT["id"],
        "text": "Hi! Tell us what happened and we will get back to you.",
    }
    await until(lambda: any(o is not None and o > start_id for o in bot_api.offsets()))


async def test_an_edit_is_flagged_and_names_the_message_it_edits(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    mid = bot_api.message_id()
    await bot_api.push("message", message(mid, text="Order 1243 is late"))
    edited = message(mid, text="Order 1234 is late", edit_date=SENT + 60)
    edit_update = await bot_api.push("edited_message", edited)
    second_edit = message(mid, text="Order 1234 is very late", edit_date=SENT + 60)
    second_update = await bot_api.push("edited_message", second_edit)

    first, edit, again = bodies(await collect(amqp, daemon.names.default, 3))
    own = f"{CHAT['id']}:{mid}"
    assert (first["source_id"], first["flags"]["edited"], first["thread"]["edit_of"]) == (
        own,
        False,
        None,
    )
    assert edit["source_id"] == f"{own}:edit:{edit_update}"
    assert edit["flags"]["edited"] is True
    assert edit["thread"]["edit_of"] == own
    assert edit["text"] == "Order 1234 is late"
    assert edit["sent_at"] == "2025-11-23T09:01:00Z"
    # Two edits within the same second are still two updates, so neither is taken for a repeat.
    assert again["source_id"] == f"{own}:edit:{second_update}"
    assert again["text"] == "Order 1234 is very late"


async def test_an_update_served_again_after_it_was_safe_opens_no_second_case(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    """As after a crash between making the case safe and confirming the update to Telegram."""
    daemon = await start_daemon(make_daemon, bot_api)
    mid = bot_api.message_id()
    update = {"update_id": 777, "message": message(mid, text="Only once, please")}
    await bot_api.serve_again(update)
    await until(lambda: 778 in bot_api.offsets())
    await bot_api.serve_again(update)
    await daemon.settled(1, "case-open", "repeat")

    forwarded = bodies(await collect(amqp, daemon.names.default, 1))
    assert await daemon.consumed() == 2
    assert [case["source_id"] for case in forwarded] == [f"{CHAT['id']}:{mid}"]


async def test_updates_that_cannot_be_read_are_quarantined_and_polling_goes_on(
    make_daemon: Callable[..., LocalDaemon], bot_api: BotApi, amqp: AbstractChannel
) -> None:
    daemon = await start_daemon(make_daemon, bot_api)
    sticker = {
        "file_id": "st",
        "file_unique_id": "AgADs",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    await bot_api.push("message", message(bot_api.message_id(), sticker=sticker))
    # Not what the Bot API documents: python-telegram-bot's own parser would choke on it.
    await bot_api.push("message", {"message_id": "x", "chat": 5})
    mid = bot_api.message_id()
    await bot_api.push("message", message(mid, text="Sorry, wrong button."))

    await daemon.settled(1)
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["source_id"] == f"{CHAT['id']}:{mid}"
    command = await ingest_command(daemon.settings_path, "quarantine", "list", env=TOKEN_ENV)
    listed = command.stdout.decode()
    assert listed.count("telegram") == 2, listed
    assert "nothing readable" in listed and "not a Bot API update" in listed
