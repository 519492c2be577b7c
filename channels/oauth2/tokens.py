"""Access tokens for one mailbox or relay: refreshed before they expire, and on demand after
the server refused one; a rotated refresh token is saved before it is used.

Blocking (httpx), for the IMAP threads and the SMTP replier's worker threads; one lock per
source, so that two sessions never spend the same refresh token at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from channels.oauth2.providers import Endpoints
from channels.oauth2.store import Grant, TokenStore
from channels.settings import OAuth2Settings

DEFAULT_LIFETIME_S = 3600.0
"""When a token response gives no expires_in (RFC 6749 makes it optional)."""


class TokenError(Exception):
    """No access token now; the message says why, never with a token in it."""


class TokenUnavailable(TokenError):
    """Worth another try: the provider is unreachable, slow or failing."""


class TokenRefused(TokenError):
    """A lasting refusal an admin must fix; `fix` says how."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


class Reauthorize(TokenRefused):
    """The refresh token is missing, revoked or expired: authorize again."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float


class TokenSource:
    """`access_token()` for a session to log in with; `refused(token)` after the server said
    no to it. `problem` is the lasting trouble, if any, for readiness and the doctor."""

    def __init__(
        self,
        settings: OAuth2Settings,
        endpoints: Endpoints,
        store: TokenStore,
        authorize_command: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._endpoints = endpoints
        self._store = store
        self._authorize = authorize_command
        self._clock = clock
        self._lock = threading.Lock()
        self._current: AccessToken | None = None
        self.problem: str | None = None

    def access_token(self) -> str:
        """A token valid for at least `refresh_before_s` more (refreshed when not)."""
        with self._lock:
            current = self._current
            if current and self._clock() < current.expires_at - self._settings.refresh_before_s:
                return current.value
            try:
                self._current = self._refresh()
            except TokenRefused as error:
                self.problem = str(error)
                raise
            self.problem = None
            return self._current.value

    def refused(self, token: str) -> None:
        """The server refused this token: the next `access_token()` gets a fresh one."""
        with self._lock:
            if self._current is not None and self._current.value == token:
                self._current = None

    def _refresh(self) -> AccessToken:
        grant = self._store.load()
        fix = f"run `{self._authorize}`"
        if grant is None or not grant.refresh_token:
            raise Reauthorize("not authorized yet (no refresh token)", fix)
        if grant.refused:
            raise Reauthorize(f"the provider refused the refresh token ({grant.refused})", fix)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": grant.refresh_token,
            "client_id": self._settings.client_id,
        }
        try:
            answer = request_token(self._settings, self._endpoints, form)
        except LookupError as error:  # client_secret_env names a variable that is not set
            raise TokenRefused(str(error), "set it in the daemon's environment") from None
        if "error" in answer:
            self._refusal(grant, answer, fix)
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != grant.refresh_token:
            # Saved before the new access token is used: a crash now loses nothing.
            new = Grant(rotated, from_env=grant.from_env, scope=answer.get("scope"))
            self._store.save_if_current(grant.refresh_token, new)
        return access_token_of(answer, self._clock())

    def _refusal(self, grant: Grant, answer: dict[str, Any], fix: str) -> None:
        code = str(answer["error"])
        reason = describe_error(answer)
        if code == "invalid_grant":
            assert grant.refresh_token is not None
            if not self._store.save_if_current(grant.refresh_token, grant.refusing(reason)):
                # Authorized again while this refresh was under way: try the new one next.
                raise TokenUnavailable("the refresh token was replaced meanwhile")
            raise Reauthorize(f"the provider refused the refresh token ({reason})", fix)
        raise TokenRefused(
            f"the token endpoint refused the request ({reason})",
            "check client_id, client_secret_env, tenant and scope in the oauth2 settings",
        )


def request_token(
    settings: OAuth2Settings, endpoints: Endpoints, form: dict[str, str]
) -> dict[str, Any]:
    """POST to the token endpoint: the JSON answer (with "error" on a 4xx refusal); raises
    TokenUnavailable when the endpoint cannot answer now."""
    if endpoints.scope and form["grant_type"] == "refresh_token":
        form = form | {"scope": endpoints.scope}
    try:
        response = post_form(settings, endpoints.token_url, form)
    except httpx.HTTPError as error:
        raise TokenUnavailable(f"token endpoint unreachable: {type(error).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TokenUnavailable(f"token endpoint answered {response.status_code} without JSON")
    if response.status_code >= 500 or response.status_code == 429:
        raise TokenUnavailable(f"token endpoint answered {response.status_code}")
    if response.status_code >= 400 and "error" not in answer:
        answer["error"] = f"http_{response.status_code}"
    return answer


def post_form(settings: OAuth2Settings, url: str, form: dict[str, str]) -> httpx.Response:
    """POST an OAuth2 form to `url` asking for JSON, with the client secret when there is one
    (read from the environment now: LookupError when its variable is unset)."""
    secret = settings.client_secret()
    if secret is not None:
        form = form | {"client_secret": secret}
    return httpx.post(
        url, data=form, headers={"Accept": "application/json"}, timeout=settings.timeout_s
    )


def access_token_of(answer: dict[str, Any], now: float) -> AccessToken:
    value = answer.get("access_token")
    if not isinstance(value, str) or not value:
        raise TokenUnavailable("token endpoint answered without an access_token")
    try:
        lifetime = float(answer.get("expires_in", DEFAULT_LIFETIME_S))
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME_S
    return AccessToken(value, now + lifetime)


def describe_error(answer: dict[str, Any]) -> str:
    """ "code: description" from an RFC 6749 error answer, shortened."""
    code = str(answer.get("error"))
    description = str(answer.get("error_description") or "").strip().splitlines()
    return f"{code}: {description[0][:200]}" if description else code
