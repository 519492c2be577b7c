"""Telegram updates: the Bot API's JSON in, a case-open and the attachment blobs out.

Pure: the channel fetches the attachments' bytes through the Bot API and passes them in the
payload, keyed by each file's `file_unique_id`; `attachment_files` tells it which files a
message carries, so the channel and the normaliser always agree on them.

Source ids: a message is "<chat_id>:<message_id>", unique per bot and stable when Telegram
serves the same update again. An edit keeps the message id, so it gets its own source id,
"<chat_id>:<message_id>:edit:<update_id>", and names the message it edits in `thread.edit_of`.
The update id (rather than the edit date, which has one-second resolution) makes two quick
edits two source ids, while a re-served edit keeps the one it had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from normalizer.blobs import Blob
from normalizer.errors import Unprocessable
from normalizer.model import Attachment, CaseOpen, Flags, Identity, Sender, Thread, Touchpoint
from normalizer.text import clean_line, clean_text

START_COMMAND = "/start"


class UnprocessableUpdate(Unprocessable):
    """The update cannot become a case-open; str() is the reason."""


class TelegramPayload(BaseModel):
    """What the Telegram channel hands to the pipeline: the update and its files' bytes."""

    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        frozen=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    update: dict[str, Any] = Field(description="The update's JSON as the Bot API gave it.")
    files: dict[str, bytes] = Field(
        default_factory=dict, description="Attachment bytes by file_unique_id."
    )
    missing: dict[str, str] = Field(
        default_factory=dict, description="Why an attachment was not fetched, by file_unique_id."
    )


class _Api(BaseModel):
    """Bot API objects: fields we do not use are ignored, as the API keeps adding some."""

    model_config = ConfigDict(defer_build=True, extra="ignore", frozen=True)


class _User(_Api):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class _Chat(_Api):
    id: int


class _File(_Api):
    file_id: str
    file_unique_id: str
    file_size: int | None = None
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0


class _Location(_Api):
    latitude: float
    longitude: float


class _Replied(_Api):
    message_id: int


class _Message(_Api):
    message_id: int
    date: int
    edit_date: int | None = None
    chat: _Chat
    from_: _User | None = Field(default=None, alias="from")
    text: str | None = None
    caption: str | None = None
    photo: list[_File] = Field(default_factory=list)
    document: _File | None = None
    voice: _File | None = None
    audio: _File | None = None
    video: _File | None = None
    video_note: _File | None = None
    location: _Location | None = None
    reply_to_message: _Replied | None = None


class _Update(_Api):
    update_id: int
    message: _Message | None = None
    edited_message: _Message | None = None


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file a message carries: what to ask getFile for, and how to name it."""

    file_id: str
    unique_id: str
    name: str
    media_type: str
    declared_size: int | None


def is_start(update: dict[str, Any]) -> bool:
    """Whether this is a new message saying /start (the greeting, not a case)."""
    message = _read(update).message
    words = (message.text or "").split() if message else []
    return bool(words) and words[0].split("@")[0] == START_COMMAND


def chat_id(update: dict[str, Any]) -> int:
    """The chat the update's message is in."""
    return _message(_read(update)).chat.id


def source_id(update: dict[str, Any]) -> str:
    """The update's source id (see the module docstring)."""
    parsed = _read(update)
    message = _message(parsed)
    own = f"{message.chat.id}:{message.message_id}"
    return own if parsed.message else f"{own}:edit:{parsed.update_id}"


def attachment_files(update: dict[str, Any]) -> list[FileRef]:
    """The files of the update's message: the largest photo size, a document, a voice note..."""
    message = _message(_read(update))
    found: list[FileRef] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size))
        found.append(_ref(largest, "photo", "image/jpeg", ".jpg"))
    for kind, file, media_type, suffix in [
        ("document", message.document, "application/octet-stream", ""),
        ("voice", message.voice, "audio/ogg", ".ogg"),
        ("audio", message.audio, "audio/mpeg", ".mp3"),
        ("video", message.video, "video/mp4", ".mp4"),
        ("video-note", message.video_note, "video/mp4", ".mp4"),
    ]:
        if file is not None:
            found.append(_ref(file, kind, media_type, suffix))
    return found


@dataclass(frozen=True, slots=True)
class NormalizedUpdate:
    """The case-open and the bytes to store: the update's JSON first, then the attachments."""

    case: CaseOpen
    blobs: list[Blob]


def normalize_telegram(
    payload: TelegramPayload, *, case_id: str, received_at: datetime, touchpoint: str
) -> NormalizedUpdate:
    """Turn a message or an edited message into a case-open; UnprocessableUpdate otherwise."""
    update = _read(payload.update)
    message = _message(update)
    user = message.from_
    if user is None or user.is_bot:
        raise UnprocessableUpdate("the message has no human sender")
    original = Blob.of(json.dumps(payload.update, ensure_ascii=False, sort_keys=True).encode())
    attachments, blobs, notes = _attachments(payload)
    text = _text(message, notes)
    if not text and not attachments:
        raise UnprocessableUpdate("the message holds nothing readable (a sticker, a poll, ...)")
    edited = update.message is None
    own = f"{message.chat.id}:{message.message_id}"
    replied = message.reply_to_message
    return NormalizedUpdate(
        CaseOpen(
            id=case_id,
            received_at=received_at,
            sent_at=_time(message.edit_date if edited else None) or _time(message.date),
            channel="chat",
            adapter="telegram",
            source_id=source_id(payload.update),
            touchpoints=[Touchpoint(kind="bot", address=touchpoint)],
            sender=_sender(user),
            text=text,
            language=_language(user.language_code),
            thread=Thread(
                in_reply_to=f"{message.chat.id}:{replied.message_id}" if replied else None,
                conversation_key=f"telegram:{message.chat.id}",
                edit_of=own if edited else None,
            ),
            attachments=attachments,
            flags=Flags(edited=edited),
            raw_ref=original.ref,
        ),
        [original, *blobs],
    )


def _read(update: dict[str, Any]) -> _Update:
    try:
        return _Update.model_validate(update)
    except ValidationError as error:
        raise UnprocessableUpdate(f"not a Bot API update: {_first_error(error)}") from None


def _message(update: _Update) -> _Message:
    message = update.message or update.edited_message
    if message is None:
        raise UnprocessableUpdate("the update holds no message")
    return message


def _first_error(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"


def _ref(file: _File, kind: str, media_type: str, suffix: str) -> FileRef:
    name = clean_line(file.file_name or "") or f"{kind}-{file.file_unique_id}{suffix}"
    return FileRef(
        file.file_id, file.file_unique_id, name, file.mime_type or media_type, file.file_size
    )


def _attachments(payload: TelegramPayload) -> tuple[list[Attachment], list[Blob], list[str]]:
    attachments, blobs, notes = [], [], []
    for ref in attachment_files(payload.update):
        data = payload.files.get(ref.unique_id)
        if data is None:
            why = payload.missing.get(ref.unique_id, "not fetched")
            notes.append(f"[attachment not kept: {ref.name}: {why}]")
            continue
        blob = Blob.of(data)
        blobs.append(blob)
        attachments.append(
            Attachment(
                name=ref.name,
                media_type=ref.media_type,
                size=len(data),
                sha256=blob.sha256,
                ref=blob.ref,
            )
        )
    return attachments, blobs, notes


def _text(message: _Message, notes: list[str]) -> str:
    lines = [clean_text(message.text or message.caption or "")]
    if message.location:
        lines.append(f"Location: {message.location.latitude}, {message.location.longitude}")
    return "\n\n".join(line for line in [*lines, *notes] if line)


def _sender(user: _User) -> Sender:
    name = clean_line(f"{user.first_name} {user.last_name or ''}")
    # Usernames are case-insensitive and can change hands; the user id is the identity.
    username = user.username
    alternates = [Identity(kind="telegram", address=f"@{username.lower()}")] if username else []
    return Sender(
        kind="telegram",
        address=str(user.id),
        name=name or None,
        alternates=alternates,
    )


def _language(code: str | None) -> str | None:
    """The sender's Telegram language (IETF tag), a fair guess at the language they write."""
    return code.lower() if code and code.replace("-", "").isalnum() else None


def _time(unix: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix else None
