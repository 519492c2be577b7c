"""A stand-in OAuth 2.0 provider on loopback (Starlette under uvicorn, in a thread of its own,
so that Dovecot and blocking clients can call it while a test waits).

It serves a token endpoint (refresh token grant, device code grant), a device authorization
endpoint (RFC 8628) and a token introspection endpoint (RFC 7662, as Dovecot's oauth2 passdb
calls it with `introspection_mode = post`). A test issues, rotates, revokes and expires
tokens, and approves or declines device codes, as a provider and its admin would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.daemon import clean_environment, free_port

CLIENT_ID = "test-client-id"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
START_TIMEOUT_S = 10.0


@dataclass
class Device:
    """A device code waiting for the user: "pending", "approved", "denied" or "expired"."""

    user: str
    scope: str
    state: str = "pending"
    slow_downs: int = 0
    polls: list[float] = field(default_factory=list)


class OAuthProvider:
    """start(), issue(user) -> refresh token, revoke(), expire_access_tokens(), stop().

    `rotate`: every refresh hands out a new refresh token and retires the one used, as
    strict providers do. `access_lifetime_s`: expires_in of access tokens.
    """

    def __init__(self, *, rotate: bool = False, access_lifetime_s: int = 3600) -> None:
        self.port = free_port()
        self.rotate = rotate
        self.access_lifetime_s = access_lifetime_s
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expires_at)
        self.devices: dict[str, Device] = {}  # device code -> device
        self.user_codes: dict[str, str] = {}  # user code -> device code
        self.grants: list[str] = []  # grant_type of every token request, in order
        self.introspected: list[bool] = []  # each introspection's verdict
        self.device_interval_s = 1
        self.device_user = "support@example.com"
        self.consent = True  # what the user answers on the authorization page
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (user, challenge, redirect)
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/devicecode", self._devicecode, methods=["POST"]),
                Route("/introspect", self._introspect, methods=["POST"]),
                Route("/authorize", self._authorize, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="oauth-provider")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **extra: object) -> dict[str, object]:
        """The oauth2 table of an account or relay that uses this provider."""
        return {
            "provider": "generic",
            "client_id": CLIENT_ID,
            "token_url": f"{self.url}/token",
            "device_authorization_url": f"{self.url}/devicecode",
            "scope": "mail",
        } | extra

    def start(self) -> OAuthProvider:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the stand-in OAuth provider did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)

    # What a provider's admin or user does.

    def issue(self, user: str) -> str:
        """A new refresh token for this user."""
        token = f"rt-{secrets.token_urlsafe(16)}"
        with self._lock:
            self.refresh_tokens[token] = user
        return token

    def revoke(self, user: str) -> None:
        """Revoke every refresh token of this user (access tokens stay valid until expiry,
        as at Microsoft and Google)."""
        with self._lock:
            for token in [t for t, u in self.refresh_tokens.items() if u == user]:
                del self.refresh_tokens[token]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now (early, as after a password
        change or a policy's sign-out), though clients think it still valid."""
        with self._lock:
            self.access_tokens.clear()

    def approve(self, user_code: str) -> None:
        self._device(user_code).state = "approved"

    def deny(self, user_code: str) -> None:
        self._device(user_code).state = "denied"

    def expire_code(self, user_code: str) -> None:
        self._device(user_code).state = "expired"

    def slow_down(self, user_code: str, times: int) -> None:
        self._device(user_code).slow_downs = times

    def valid(self, token: str) -> str | None:
        """The user an access token belongs to, while it is valid."""
        with self._lock:
            user, expires_at = self.access_tokens.get(token, ("", 0.0))
        return user if user and time.time() < expires_at else None

    def wait_for_code(self, timeout_s: float = 10.0) -> str:
        """The user code of the first device authorization asked for (blocking)."""
        deadline = time.monotonic() + timeout_s
        while not self.user_codes:
            if time.monotonic() > deadline:
                raise AssertionError("no device authorization was asked for")
            time.sleep(0.02)
        return next(iter(self.user_codes))

    def _device(self, user_code: str) -> Device:
        with self._lock:
            return self.devices[self.user_codes[user_code]]

    # The endpoints.

    async def _token(self, request: Request) -> JSONResponse:
        form = await request.form()
        grant = str(form.get("grant_type"))
        self.grants.append(grant)
        if form.get("client_id") != CLIENT_ID:
            return _error("invalid_client", "unknown client", 401)
        if grant == "refresh_token":
            return self._refresh(str(form.get("refresh_token")))
        if grant == DEVICE_GRANT:
            return self._device_token(str(form.get("device_code")))
        if grant == "authorization_code":
            return self._code_token(
                str(form.get("code")), str(form.get("code_verifier")), str(form.get("redirect_uri"))
            )
        return _error("unsupported_grant_type", grant)

    def _refresh(self, refresh_token: str) -> JSONResponse:
        with self._lock:
            user = self.refresh_tokens.get(refresh_token)
            if user is None:
                return _error("invalid_grant", "AADSTS70008: the refresh token has expired")
            if self.rotate:
                del self.refresh_tokens[refresh_token]
        return self._tokens(user, new_refresh=self.rotate)

    def _device_token(self, device_code: str) -> JSONResponse:
        with self._lock:
            device = self.devices.get(device_code)
        if device is None:
            return _error("invalid_grant", "unknown device code")
        device.polls.append(time.monotonic())
        if device.slow_downs > 0:
            device.slow_downs -= 1
            return _error("slow_down", "polling too fast")
        match device.state:
            case "pending":
                return _error("authorization_pending", "waiting for the user")
            case "denied":
                return _error("access_denied", "the user declined")
            case "expired":
                return _error("expired_token", "the code expired")
        with self._lock:
            del self.devices[device_code]
        return self._tokens(device.user, new_refresh=True)

    def _tokens(self, user: str, *, new_refresh: bool) -> JSONResponse:
        access = f"at-{secrets.token_urlsafe(16)}"
        with self._lock:
            self.access_tokens[access] = (user, time.time() + self.access_lifetime_s)
        answer: dict[str, object] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.access_lifetime_s,
            "scope": "mail",
        }
        if new_refresh:
            answer["refresh_token"] = self.issue(user)
        return JSONResponse(answer)

    async def _devicecode(self, request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("client_id") != CLIENT_ID:
            return _error("invalid_client", "unknown client", 401)
        device_code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        with self._lock:
            self.devices[device_code] = Device(self.device_user, str(form.get("scope")))
            self.user_codes[user_code] = device_code
        return JSONResponse(
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": f"{self.url}/device",
                "expires_in": 600,
                "interval": self.device_interval_s,
            }
        )

    async def _authorize(self, request: Request) -> Response:
        """The page the user consents on: sends the browser to the redirect URI with a code
        (or with error=access_denied when `consent` is off)."""
        query = request.query_params
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        redirect = query["redirect_uri"]
        if not self.consent:
            answer = {"error": "access_denied", "state": query["state"]}
        else:
            code = secrets.token_urlsafe(16)
            with self._lock:
                self.codes[code] = (self.device_user, query["code_challenge"], redirect)
            answer = {"code": code, "state": query["state"]}
        return RedirectResponse(f"{redirect}?{urlencode(answer)}", status_code=302)

    def _code_token(self, code: str, verifier: str, redirect: str) -> JSONResponse:
        with self._lock:
            user, challenge, expected_redirect = self.codes.pop(code, ("", "", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        if not user or redirect != expected_redirect:
            return _error("invalid_grant", "unknown code or other redirect_uri")
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return _error("invalid_grant", "PKCE verification failed")
        return self._tokens(user, new_refresh=True)

    async def _introspect(self, request: Request) -> JSONResponse:
        form = await request.form()
        user = self.valid(str(form.get("token")))
        self.introspected.append(user is not None)
        if user is None:
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, "username": user})


def _error(code: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


async def authorize_with_consent(
    settings_path: Path, provider: OAuthProvider, *command: str
) -> str:
    """Run `ingest <command...>` (an authorize command) as an admin would: read the code it
    prints, approve it at the provider as the user would in a browser, wait for it to end;
    its output. The same environment as `run_ingest`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingest",
        *command,
        "--settings",
        str(settings_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_environment(),
    )
    assert process.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(60):
            while not re.search(r"enter the code (\S+) ", output):
                line = await process.stdout.readline()
                if not line:
                    break
                output += line.decode()
            found = re.search(r"enter the code (\S+) ", output)
            if found is not None:
                provider.approve(found.group(1))
            output += (await process.stdout.read()).decode()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output
    return output
