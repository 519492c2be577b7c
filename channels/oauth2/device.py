"""The OAuth 2.0 device authorization grant (RFC 8628), for `ingest ... authorize`.

The admin is shown an address and a short code to enter there (on any device with a
browser), signs in as the mailbox's user and consents; meanwhile the token endpoint is polled
at the interval the provider asked for, slower when it says slow_down, until it hands out the
tokens, or says the code expired or the admin declined.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from channels.oauth2.providers import Endpoints
from channels.oauth2.store import Grant, TokenStore
from channels.oauth2.tokens import TokenUnavailable, describe_error, post_form, request_token
from channels.settings import OAuth2Settings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5.0
SLOW_DOWN_STEP_S = 5.0


class AuthorizationFailed(Exception):
    """The grant did not give tokens; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the admin is shown, and what the poll needs."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def request_code(settings: OAuth2Settings, endpoints: Endpoints) -> DeviceCode:
    """Step 1: ask the device authorization endpoint for a code."""
    if endpoints.device_authorization_url is None:
        raise AuthorizationFailed(
            "no device authorization endpoint: set device_authorization_url in the oauth2 "
            "settings, or give the refresh token with refresh_token_env"
        )
    form = {"client_id": settings.client_id}
    if endpoints.scope:
        form["scope"] = endpoints.scope
    try:
        response = post_form(settings, endpoints.device_authorization_url, form)
        answer: Any = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise AuthorizationFailed(
            f"device authorization endpoint: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(answer, dict) or response.status_code != 200 or "error" in answer:
        shown = describe_error(answer) if isinstance(answer, dict) else response.status_code
        raise AuthorizationFailed(f"device authorization refused: {shown}")
    # Google names it verification_url, as drafts of RFC 8628 did.
    uri = answer.get("verification_uri") or answer.get("verification_url")
    try:
        return DeviceCode(
            device_code=str(answer["device_code"]),
            user_code=str(answer["user_code"]),
            verification_uri=str(uri),
            verification_uri_complete=answer.get("verification_uri_complete"),
            expires_in=float(answer.get("expires_in", 900)),
            interval=float(answer.get("interval", DEFAULT_INTERVAL_S)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AuthorizationFailed(f"device authorization answer lacks {error}") from None


def poll(
    settings: OAuth2Settings,
    endpoints: Endpoints,
    code: DeviceCode,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Step 2: poll the token endpoint until the admin has consented; the token answer."""
    interval = max(code.interval, 1.0)
    deadline = clock() + code.expires_in
    form = {"grant_type": DEVICE_GRANT, "device_code": code.device_code}
    form["client_id"] = settings.client_id
    while True:
        wait(interval)
        if clock() > deadline:
            raise AuthorizationFailed("the code expired before it was entered; run it again")
        try:
            answer = request_token(settings, endpoints, form)
        except TokenUnavailable:
            interval += SLOW_DOWN_STEP_S  # RFC 8628 3.5: back off on connection timeouts
            continue
        match answer.get("error"):
            case None:
                return answer
            case "authorization_pending":
                continue
            case "slow_down":
                interval += SLOW_DOWN_STEP_S
            case "expired_token":
                raise AuthorizationFailed("the code expired before it was entered; run it again")
            case "access_denied":
                raise AuthorizationFailed("the sign-in was declined (access_denied)")
            case _:
                raise AuthorizationFailed(f"the token endpoint refused: {describe_error(answer)}")


def authorize(
    settings: OAuth2Settings,
    endpoints: Endpoints,
    store: TokenStore,
    show: Callable[[DeviceCode], None],
    wait: Callable[[float], None] = time.sleep,
) -> Grant:
    """The whole grant: show the code, wait for consent, save the refresh token."""
    code = request_code(settings, endpoints)
    show(code)
    answer = poll(settings, endpoints, code, wait)
    refresh_token = answer.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise AuthorizationFailed(
            "the provider gave no refresh token: the scope needs offline_access (Microsoft) "
            "or the application is not allowed offline access"
        )
    grant = Grant(refresh_token, scope=answer.get("scope"))
    store.save(grant)
    return grant
