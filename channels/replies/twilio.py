"""SMS and WhatsApp replies through Twilio's REST API, with the `twilio` package's own client."""

from __future__ import annotations

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.replies.base import Permanent, Transient
from channels.settings import TwilioChannelSettings
from normalizer.acks import E164, AckRequest


class TwilioReplier:
    """Creates one Message resource per reply, from the number the original reached."""

    name = "twilio"

    def __init__(self, settings: TwilioChannelSettings) -> None:
        assert settings.account_sid and settings.auth_token, "validated: they go together"
        self._settings = settings
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def send(self, ack: AckRequest) -> str:
        if not E164.match(ack.via):
            raise Permanent(f"{ack.via!r} is not a Twilio number to send from")
        to, sender = ack.to, ack.via
        if ack.channel == "whatsapp":
            to, sender = f"whatsapp:{to}", f"whatsapp:{sender}"
        try:
            message = await self._api().messages.create_async(to=to, from_=sender, body=ack.text)
        except (TwilioRestException, TwilioServiceException) as error:
            raise _by_status(error) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Transient(f"Twilio unreachable: {type(error).__name__}: {error}") from None
        return str(message.sid)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _api(self) -> Client:
        # The HTTP client opens an aiohttp session, which wants the running loop: made lazily.
        if self._client is None:
            settings = self._settings
            assert settings.auth_token is not None
            self._http = AsyncTwilioHttpClient(timeout=settings.api_timeout_s)
            self._client = Client(
                settings.account_sid,
                settings.auth_token.get_secret_value(),
                http_client=self._http,
            )
            self._client.api.base_url = settings.api_base_url.rstrip("/")
        return self._client


def _by_status(error: TwilioRestException | TwilioServiceException) -> Transient | Permanent:
    """429 and 5xx are worth another try, and so is 401 (the credentials are the
    configuration's fault, not the reply's); any other 4xx is Twilio refusing this message."""
    if isinstance(error, TwilioRestException):
        text = error.msg
    else:
        text = f"{error.title}: {error.detail}" if error.detail else error.title
    reason = f"Twilio answered {error.status} (code {error.code}): {text}"
    if error.status in (401, 429) or error.status >= 500:
        return Transient(reason)
    return Permanent(reason)
