"""OAuth 2.0 for mailboxes and the outbound relay: refresh tokens kept on disk, access tokens
refreshed as needed (`tokens`), the device authorization grant for `authorize` (`device`).

    TokenError
     ├── TokenUnavailable   the token endpoint cannot answer now: try again later
     └── TokenRefused       lasting, an admin must act; `fix` says what
          └── Reauthorize   no refresh token, or the provider refused it (invalid_grant)
"""

from __future__ import annotations

from pathlib import Path

from channels.oauth2.providers import Endpoints, Service, endpoints
from channels.oauth2.store import Grant, TokenStore, WriteDurably, token_path
from channels.oauth2.tokens import (
    Reauthorize,
    TokenError,
    TokenRefused,
    TokenSource,
    TokenUnavailable,
)
from channels.settings import OAuth2Settings

__all__ = [
    "Endpoints",
    "Grant",
    "Reauthorize",
    "Service",
    "TokenError",
    "TokenRefused",
    "TokenSource",
    "TokenStore",
    "TokenUnavailable",
    "WriteDurably",
    "endpoints",
    "token_path",
    "token_source",
]


def token_source(
    settings: OAuth2Settings, service: Service, path: Path, write: WriteDurably, command: str
) -> TokenSource:
    """A TokenSource for one mailbox or relay's oauth2 settings and token file."""
    store = TokenStore(path, write, settings.refresh_token_env)
    return TokenSource(settings, endpoints(settings, service), store, command)
