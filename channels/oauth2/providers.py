"""Where each provider's tokens come from, and the scopes a mailbox or relay needs there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from channels.settings import OAuth2Settings

Service = Literal["imap", "smtp"]

MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
MICROSOFT_SCOPES: dict[Service, str] = {
    "imap": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    "smtp": "https://outlook.office.com/SMTP.Send offline_access",
}
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_DEVICE_URL = "https://oauth2.googleapis.com/device/code"
GOOGLE_AUTHORIZATION_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The token endpoint, the device authorization and authorization endpoints (if any) and
    the scope asked."""

    token_url: str
    device_authorization_url: str | None
    scope: str | None
    authorization_url: str | None = None


def endpoints(settings: OAuth2Settings, service: Service) -> Endpoints:
    """The provider's preset, with whatever the settings give explicitly taking precedence."""
    match settings.provider:
        case "microsoft":
            base = MICROSOFT.format(tenant=settings.tenant)
            scope = MICROSOFT_SCOPES[service]
            preset = Endpoints(f"{base}/token", f"{base}/devicecode", scope, f"{base}/authorize")
        case "google":
            preset = Endpoints(
                GOOGLE_TOKEN_URL, GOOGLE_DEVICE_URL, GOOGLE_SCOPE, GOOGLE_AUTHORIZATION_URL
            )
        case _:
            preset = Endpoints(settings.token_url or "", None, None)
    return Endpoints(
        settings.token_url or preset.token_url,
        settings.device_authorization_url or preset.device_authorization_url,
        settings.scope or preset.scope,
        settings.authorization_url or preset.authorization_url,
    )
