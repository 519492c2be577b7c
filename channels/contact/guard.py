"""What keeps the contact form from being abused: cross-site checks and rate limits.

Cross-site submission is refused twice over. Each form carries a token signed with the
daemon's secret that names a random value also set as a cookie (SameSite=Strict, HttpOnly);
a post must bring both, matching, and not older than `form_max_age_s`. A page on another
site can neither read the token nor make the browser send the cookie. On top, when the
browser says where the post comes from (`Origin`, `Sec-Fetch-Site`), it must be this site
or one of `allowed_origins`.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

CSRF_COOKIE = "contact_csrf"


class CrossSite(Exception):
    """The post does not come from our own form; str() says why, for the log."""


@dataclass(frozen=True, slots=True)
class FormTicket:
    """What a rendered form carries: the signed token, and the form's own id."""

    token: str
    form_id: str


class CsrfGuard:
    """Issues form tokens tied to a cookie value and checks them on the way back."""

    def __init__(self, secret: str, max_age_s: int, allowed_origins: list[str]) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="contact-form")
        self._max_age_s = max_age_s
        self._allowed_origins = set(allowed_origins)

    @staticmethod
    def new_cookie_value() -> str:
        return secrets.token_urlsafe(24)

    def issue(self, cookie_value: str, form_id: str | None = None) -> FormTicket:
        """A token for one form; `form_id` stays the same when a form is shown again."""
        form_id = form_id or secrets.token_urlsafe(12)
        token = self._serializer.dumps({"c": cookie_value, "f": form_id})
        return FormTicket(token, form_id)

    def check(self, token: str | None, cookie_value: str | None) -> str:
        """The form id of a valid token that matches the cookie; CrossSite otherwise."""
        if not cookie_value:
            raise CrossSite("no form cookie")
        if not token:
            raise CrossSite("no form token")
        try:
            data = self._serializer.loads(token, max_age=self._max_age_s)
        except BadSignature as error:
            raise CrossSite(f"bad or expired form token ({type(error).__name__})") from None
        if not isinstance(data, dict) or not secrets.compare_digest(
            str(data.get("c", "")), cookie_value
        ):
            raise CrossSite("form token does not match the cookie")
        return str(data.get("f", ""))

    def check_origin(self, origin: str | None, fetch_site: str | None, host: str | None) -> None:
        """Refuse a post the browser marks as coming from another site."""
        if origin is not None:
            if origin.lower() in self._allowed_origins:
                return
            if origin == "null" or urlsplit(origin).netloc.lower() != (host or "").lower():
                raise CrossSite(f"post from origin {origin!r}")
        if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
            raise CrossSite(f"post marked Sec-Fetch-Site: {fetch_site}")


class RateLimits:
    """Submissions per email address and per client address in a moving window.

    Counted in this process's memory: several channel processes each keep their own count.
    """

    def __init__(self, per_email: int, per_ip: int, window_s: int) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_email = RateLimitItemPerSecond(per_email, window_s)
        self._per_ip = RateLimitItemPerSecond(per_ip, window_s)
        self.window_s = window_s

    async def allow(self, email: str | None, client_ip: str) -> int | None:
        """Count one submission; when the address or the client is over its limit, count
        nothing and return the seconds until the next submission is allowed."""
        checks = [(self._per_ip, ("contact", "ip", client_ip))]
        if email:
            checks.append((self._per_email, ("contact", "email", email.strip().lower())))
        for item, keys in checks:
            if not await self._limiter.test(item, *keys):
                reset_at, _ = await self._limiter.get_window_stats(item, *keys)
                return max(1, math.ceil(reset_at - time.time()))
        for item, keys in checks:
            await self._limiter.hit(item, *keys)
        return None
