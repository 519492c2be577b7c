"""Secrets out of everything the daemon shows: settings, logs, health output.

Secrets are either `SecretStr` fields (shown as asterisks by pydantic), the web API keys, or
passwords inside URLs (`amqp://user:pw@host/`, `postgresql://user:pw@host/db`); the last kind is
the easy one to leak, because a URL is a plain string everywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yarl import URL

if TYPE_CHECKING:
    from ingest.settings import Settings

HIDDEN = "***"


def url_without_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***; any other URL as it is."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return url
    return str(parsed.with_password(HIDDEN)) if parsed.password else url


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready data with every secret hidden (for `ingest settings check`)."""
    shown = settings.model_dump(mode="json")
    shown["broker"]["url"] = url_without_password(settings.broker.url)
    shown["store"]["url"] = url_without_password(settings.store.url)
    shown["channels"]["web"]["api_keys"] = [
        f"<{len(key)} chars>" for key in settings.channels.web.api_keys
    ]
    return shown
