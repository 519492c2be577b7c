"""A stand-in for the Telegram Bot API on loopback (aiohttp), for the real python-telegram-bot.

It serves what the daemon calls: getMe, deleteWebhook, setWebhook, getUpdates (with Telegram's
offset semantics: an update is forgotten once a call passes an offset above its id; long polls
wait up to `timeout` seconds), sendMessage, getFile and file downloads. Every call is recorded
so tests can see what the daemon asked and when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.daemon import BROKER_URL, AnyDaemon, free_port

TOKEN = "7012345678:AAtest-token-never-in-logs_0123456789"
TOKEN_ENV = {"INGEST_CHANNELS__TELEGRAM__TOKEN": TOKEN}
SECRET = "s3cret-webhook_token"
SECRET_ENV = {"INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET": SECRET}
BOT = {"id": 7012345678, "is_bot": True, "first_name": "Support", "username": "support_test_bot"}
FILE_LIMIT = 20 * 1024 * 1024
"""The real Bot API serves files up to 20 MB; larger ones get "file is too big"."""
JSON_PARAMETERS = {"offset", "limit", "timeout", "chat_id", "allowed_updates"}
"""python-telegram-bot sends these JSON-encoded; strings (like a message's text) go as is."""


USER = {
    "id": 381_000_042,
    "is_bot": False,
    "first_name": "Ann",
    "last_name": "Lee",
    "username": "Ann_Lee",
    "language_code": "en",
}
CHAT = {"id": USER["id"], "type": "private", "first_name": "Ann"}
SENT = 1_763_888_400  # 2025-11-23 09:00:00 UTC


async def start_daemon(
    make: Callable[..., AnyDaemon],
    api: BotApi,
    broker_url: str = BROKER_URL,
    **settings: object,
) -> AnyDaemon:
    """A ready daemon with the Telegram channel pointed at the stand-in; token from the env."""
    extra = api.settings(**settings)
    return await make(broker_url, extra=extra).launch(env=TOKEN_ENV | SECRET_ENV)


def message(message_id: int, **content: Any) -> dict[str, Any]:
    """A private-chat message from USER, as the Bot API sends it."""
    return {"message_id": message_id, "date": SENT, "chat": CHAT, "from": USER, **content}


@dataclass
class Call:
    """One Bot API call as the stand-in received it; `served` lists the update ids answered."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    served: list[int] = field(default_factory=list)


class BotApi:
    """The stand-in server; `push()` queues an update as Telegram would for a user's message."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.port = free_port()
        self.calls: list[Call] = []
        self.pending: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.send_failures: list[tuple[int, str]] = []
        """Error answers for the next sendMessage calls, used up in order."""
        self.downloads_open = asyncio.Event()
        self.downloads_open.set()
        self.download_requested = asyncio.Event()
        self._next_update_id = 500_000
        self._next_message_id = 1
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def settings(self, **overrides: object) -> str:
        """The daemon's `[channels.telegram]` section pointing at this server."""
        values: dict[str, object] = {
            "enabled": True,
            "base_url": self.base_url,
            "base_file_url": self.base_file_url,
            "poll_timeout_s": 2,
            "request_timeout_s": 5.0,
            "greeting": "Hi! Tell us what happened and we will get back to you.",
            "max_attachment_bytes": 65536,
        } | overrides
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        # These tests look at the channel: every chat message is to reach the team queue as a
        # case-open of its own, so the dispatcher's chat conversation window (level 3) is off.
        no_window = "\n[dispatcher.dedup]\nconversation_channels = []\n"
        return no_window + "\n[channels.telegram]\n" + "\n".join(lines) + "\n"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{bot}/{method}", self._api)
        app.router.add_get("/file/{bot}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening, as if the Bot API went away; `start()` brings it back on the port."""
        self.downloads_open.set()
        async with self._arrived:
            self._arrived.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def push(self, kind: str, message: dict[str, Any]) -> int:
        """Queue an update ("message" or "edited_message"); return its update_id."""
        self._next_update_id += 1
        await self.serve_again({"update_id": self._next_update_id, kind: message})
        return self._next_update_id

    async def serve_again(self, update: dict[str, Any]) -> None:
        """Queue an update as it is (Telegram serves one again when its confirm was lost)."""
        async with self._arrived:
            self.pending.append(update)
            self._arrived.notify_all()

    def message_id(self) -> int:
        self._next_message_id += 1
        return self._next_message_id

    def add_file(self, file_id: str, data: bytes) -> None:
        self.files[file_id] = data

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def offsets(self) -> list[int | None]:
        """The offset of every getUpdates call, in order."""
        return [call.params.get("offset") for call in self.called("getUpdates")]

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["bot"] != f"bot{self.token}":
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        call = Call(method, _params(dict(await request.post())))
        self.calls.append(call)
        handler = {
            "getMe": self._get_me,
            "deleteWebhook": self._true,
            "setWebhook": self._true,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "getFile": self._get_file,
        }.get(method)
        if handler is None:
            return _error(404, "Not Found")
        return await handler(call)

    async def _get_me(self, call: Call) -> web.Response:
        return _ok(BOT)

    async def _true(self, call: Call) -> web.Response:
        return _ok(True)

    async def _get_updates(self, call: Call) -> web.Response:
        offset = call.params.get("offset")
        limit = call.params.get("limit") or 100
        deadline = time.monotonic() + (call.params.get("timeout") or 0)
        async with self._arrived:
            if offset is not None:
                # Passing an offset confirms every update below it: Telegram forgets them.
                self.pending = [u for u in self.pending if u["update_id"] >= offset]
            while not self.pending and (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self.pending[:limit]
        call.served = [update["update_id"] for update in batch]
        return _ok(batch)

    async def _send_message(self, call: Call) -> web.Response:
        if self.send_failures:
            return _error(*self.send_failures.pop(0))
        chat_id = call.params["chat_id"]
        return _ok(
            {
                "message_id": self.message_id(),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT,
                "text": call.params["text"],
            }
        )

    async def _get_file(self, call: Call) -> web.Response:
        file_id = call.params["file_id"]
        data = self.files.get(file_id)
        if data is None:
            return _error(400, "Bad Request: invalid file_id")
        if len(data) > FILE_LIMIT:
            return _error(400, "Bad Request: file is too big")
        return _ok(
            {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_size": len(data),
                "file_path": f"documents/{file_id}",
            }
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["bot"] != f"bot{self.token}":
            return _error(401, "Unauthorized")
        self.calls.append(Call("download", {"path": request.match_info["path"]}))
        self.download_requested.set()
        await self.downloads_open.wait()
        file_id = request.match_info["path"].removeprefix("documents/")
        if file_id not in self.files:
            return _error(404, "Not Found")
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")


def _params(form: dict[str, Any]) -> dict[str, Any]:
    return {
        key: json.loads(value) if key in JSON_PARAMETERS else value for key, value in form.items()
    }


def _ok(result: object) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )
