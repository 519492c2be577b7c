"""A stand-in for Twilio's REST API on loopback (aiohttp): the Messages resource only.

It checks HTTP Basic auth as Twilio does (account SID and auth token), records every request,
and answers like Twilio: 201 with the Message resource, or an error body when the test
scripts one (a 400 for a refused number, a 503 for an outage).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from aiohttp import web

from tests.daemon import free_port


@dataclass(frozen=True)
class Request:
    """One Messages.json POST as the stand-in received it."""

    account_sid: str
    form: dict[str, str]


class TwilioApi:
    """`answers` holds scripted (status, body) replies, used up in order; then 201s."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.port = free_port()
        self.requests: list[Request] = []
        self.created: list[Request] = []
        self.answers: list[tuple[int, dict[str, object]]] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request.headers.get("Authorization", "")):
            return _error(401, 20003, "Authenticate")
        sid = request.match_info["sid"]
        received = Request(sid, {k: str(v) for k, v in (await request.post()).items()})
        self.requests.append(received)
        if self.answers:
            status, body = self.answers.pop(0)
            return web.json_response(body, status=status)
        self.created.append(received)
        return web.json_response(_message(sid, received.form), status=201)

    def _authorised(self, header: str) -> bool:
        expected = f"{self.account_sid}:{self._auth_token}".encode()
        return header == "Basic " + base64.b64encode(expected).decode()


def error_body(status: int, code: int, message: str) -> dict[str, object]:
    """Twilio's error JSON."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(error_body(status, code, message), status=status)


def _message(account_sid: str, form: dict[str, str]) -> dict[str, object]:
    return {
        "sid": "SM" + secrets.token_hex(16),
        "account_sid": account_sid,
        "to": form.get("To"),
        "from": form.get("From"),
        "body": form.get("Body"),
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "date_created": "Mon, 23 Nov 2026 18:00:00 +0000",
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages.json",
    }
