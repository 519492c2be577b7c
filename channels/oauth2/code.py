"""The authorization code grant with PKCE (RFC 6749 4.1, RFC 7636) and a loopback redirect
that nothing needs to answer, for `ingest ... authorize --paste`.

Google's device flow does not allow the Gmail scope, and the daemon's host often has no
browser: the admin opens the address shown on any machine, consents, and the browser is sent
to http://127.0.0.1:<port>/?code=...; that page does not load (nothing listens there), and the
admin pastes the address from the browser's bar. The code is worth nothing without the PKCE
verifier, which never leaves this process.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from channels.oauth2.device import AuthorizationFailed
from channels.oauth2.providers import Endpoints
from channels.oauth2.store import Grant, TokenStore
from channels.oauth2.tokens import TokenUnavailable, describe_error, request_token
from channels.settings import OAuth2Settings

REDIRECT_URI = "http://127.0.0.1:53682/"
"""Loopback, any port (RFC 8252 7.3); one nothing usually listens on."""


@dataclass(frozen=True, slots=True)
class CodeRequest:
    """The address the admin opens, and what checks and redeems the answer."""

    url: str
    state: str
    verifier: str


def code_request(settings: OAuth2Settings, endpoints: Endpoints) -> CodeRequest:
    if endpoints.authorization_url is None:
        raise AuthorizationFailed("no authorization endpoint: set authorization_url")
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": settings.client_id,
        "redirect_uri": REDIRECT_URI,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        # Google hands out a refresh token only with these; others ignore them.
        "access_type": "offline",
        "prompt": "consent",
    }
    if endpoints.scope:
        query["scope"] = endpoints.scope
    return CodeRequest(f"{endpoints.authorization_url}?{urlencode(query)}", state, verifier)


def code_from(pasted: str, request: CodeRequest) -> str:
    """The code in the address the browser was sent to; checks the state and the error."""
    answer = parse_qs(urlsplit(pasted.strip()).query)
    if answer.get("state", [""])[0] != request.state:
        raise AuthorizationFailed("that address is not the answer to this request (state)")
    if "error" in answer:
        shown = {key: values[0] for key, values in answer.items()}
        raise AuthorizationFailed(f"the provider refused: {describe_error(shown)}")
    code = answer.get("code", [""])[0]
    if not code:
        raise AuthorizationFailed("no code in that address")
    return code


def authorize_by_code(
    settings: OAuth2Settings,
    endpoints: Endpoints,
    store: TokenStore,
    ask: Callable[[CodeRequest], str],
) -> Grant:
    """The whole grant: `ask` shows the address and returns what the admin pasted."""
    request = code_request(settings, endpoints)
    code = code_from(ask(request), request)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": settings.client_id,
        "code_verifier": request.verifier,
    }
    try:
        answer = request_token(settings, endpoints, form)
    except TokenUnavailable as error:
        raise AuthorizationFailed(str(error)) from None
    if "error" in answer:
        raise AuthorizationFailed(f"the token endpoint refused: {describe_error(answer)}")
    refresh_token = answer.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise AuthorizationFailed("the provider gave no refresh token (offline access)")
    grant = Grant(refresh_token, scope=answer.get("scope"))
    store.save(grant)
    return grant
