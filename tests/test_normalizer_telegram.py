"""The Telegram normaliser and settings: plain dicts in, a case-open (or a clear reason) out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.settings import SettingsError, load_settings
from normalizer.envelope import PAYLOAD_KINDS, Envelope, normalize
from normalizer.errors import Unprocessable
from normalizer.telegram import TelegramPayload, attachment_files, is_start, source_id
from tests.telegram_api import CHAT, USER, message

CASE_ID = "01JCKEPT0000000000000000TG"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def case(update: dict[str, Any], **payload: Any) -> Any:
    envelope = Envelope(
        "chat", "telegram", "@support_bot", NOW, TelegramPayload(update=update, **payload)
    )
    return normalize(envelope, CASE_ID)


def test_a_reply_names_the_message_it_answers_and_a_user_without_username_has_no_alternate() -> (
    None
):
    user = {"id": 5, "is_bot": False, "first_name": "Bo"}
    update = {
        "update_id": 1,
        "message": message(9, text="Still\x00 broken \u202e", reply_to_message={"message_id": 3})
        | {"from": user},
    }
    result = case(update).case
    assert result.thread.in_reply_to == f"{CHAT['id']}:3"
    assert (result.sender.address, result.sender.name, result.sender.alternates) == ("5", "Bo", [])
    assert result.text == "Still broken"
    assert result.language is None


def test_every_attachment_kind_is_found_and_the_largest_photo_wins() -> None:
    photo = [
        {"file_id": "s", "file_unique_id": "S", "width": 90, "height": 90, "file_size": 900},
        {"file_id": "l", "file_unique_id": "L", "width": 900, "height": 900, "file_size": 9000},
        {"file_id": "m", "file_unique_id": "M", "width": 320, "height": 320, "file_size": 3000},
    ]
    files = {
        "document": {"file_id": "d", "file_unique_id": "D", "file_name": " a\nb.pdf "},
        "voice": {"file_id": "v", "file_unique_id": "V", "mime_type": "audio/opus"},
        "audio": {"file_id": "a", "file_unique_id": "A"},
        "video": {"file_id": "w", "file_unique_id": "W"},
    }
    refs = attachment_files({"update_id": 1, "message": message(1, photo=photo, **files)})
    assert [(r.file_id, r.name, r.media_type) for r in refs] == [
        ("l", "photo-L.jpg", "image/jpeg"),
        ("d", "a b.pdf", "application/octet-stream"),
        ("v", "voice-V.ogg", "audio/opus"),
        ("a", "audio-A.mp3", "audio/mpeg"),
        ("w", "video-W.mp4", "video/mp4"),
    ]


def test_start_is_recognised_with_a_bot_name_or_a_deep_link_payload() -> None:
    def update(text: str) -> dict[str, Any]:
        return {"update_id": 1, "message": message(1, text=text)}

    assert is_start(update("/start"))
    assert is_start(update("/start@support_bot"))
    assert is_start(update("/start ref-42"))
    assert not is_start(update("/started my order"))
    assert not is_start(update("please /start"))
    assert not is_start({"update_id": 1, "edited_message": message(1, text="/start")})


def test_edits_get_their_own_source_id() -> None:
    assert source_id({"update_id": 8, "message": message(4, text="a")}) == f"{CHAT['id']}:4"
    edited = {"update_id": 9, "edited_message": message(4, text="b", edit_date=1)}
    assert source_id(edited) == f"{CHAT['id']}:4:edit:9"


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"update_id": 1}, "the update holds no message"),
        ({"update_id": 1, "message": {"message_id": 1}}, "not a Bot API update: message.date"),
        (
            {"update_id": 1, "message": message(1, text="hi") | {"from": USER | {"is_bot": True}}},
            "no human sender",
        ),
        ({"update_id": 1, "message": message(1, poll={"id": "p"})}, "nothing readable"),
        ({"update_id": 1, "message": message(1, text=" \x07 \r\n ")}, "nothing readable"),
    ],
)
def test_updates_that_cannot_become_a_case_say_why(update: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unprocessable, match=reason):
        case(update)


def test_a_payload_survives_quarantine_and_replay_byte_for_byte() -> None:
    kind = PAYLOAD_KINDS["telegram"]
    payload = TelegramPayload(
        update={"update_id": 3, "message": message(1, caption="x")},
        files={"U": b"\x00\xff binary"},
        missing={"V": "larger than the limit"},
    )
    assert kind.decode(kind.encode(payload), ("@support_bot",)) == payload


def write(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"[channels.telegram]\n{section}\n")
    return path


@pytest.mark.parametrize(
    ("section", "env", "expected"),
    [
        ("enabled = true", {}, "an enabled Telegram channel needs a token"),
        ('enabled = true\nmode = "webhook"', {"TOKEN": "1:a"}, "webhook mode needs webhook_secret"),
        ('mode = "webhook"', {"WEBHOOK_SECRET": "has spaces"}, "use 1 to 256 characters"),
        ('mode = "push"', {}, "channels.telegram.mode: Input should be 'polling' or 'webhook'"),
        ("poll_timeout_s = 90", {}, "channels.telegram.poll_timeout_s"),
        ("token = 1", {}, "channels.telegram.token"),
    ],
)
def test_bad_telegram_settings_stop_start_up_with_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"INGEST_CHANNELS__TELEGRAM__{key}", value)
    with pytest.raises(SettingsError, match=expected):
        load_settings(write(tmp_path, section))


def test_the_token_and_secret_come_from_the_environment_and_are_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_CHANNELS__TELEGRAM__TOKEN", "123:abc")
    monkeypatch.setenv("INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET", "s3cret")
    settings = load_settings(write(tmp_path, 'enabled = true\nmode = "webhook"'))
    telegram = settings.channels.telegram
    assert telegram.token is not None and telegram.token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(settings) and "s3cret" not in repr(settings)
