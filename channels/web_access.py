"""What the JSON API asks of the daemon about callers: who a key belongs to, whether a caller
is within its rate limit, and whether an idempotency key was used before.

The daemon implements `ApiAccess` on the shared store (`ingest.api_access`); the channel only
asks, so it never imports the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

SCOPES = ("web", "logged")
"""A key's scopes name the channels it may submit: "web" (what customers sent through the
site or app) and "logged" (contacts an agent took in by hand)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The integration an API key belongs to."""

    name: str
    scopes: frozenset[str]
    rate_limit: int | None
    """Requests per window for this key; None: the configured `rate_limit_per_key`."""


@dataclass(frozen=True, slots=True)
class Quota:
    """One rate limit after a request was counted (or refused)."""

    limit: int
    remaining: int
    reset_s: int
    """Seconds until the window ends and the count starts again."""
    window_s: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        """The RateLimit header fields (IETF httpapi draft), plus Retry-After when refused."""
        fields = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }
        if not self.allowed:
            fields["Retry-After"] = str(self.reset_s)
        return fields


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer an idempotency key stands for: the case-open id to answer with, the digest
    of the request that first used the key, and whether this request is a repeat."""

    case_id: str
    digest: str
    first_used_at: datetime
    replayed: bool


class Unavailable(Exception):
    """The shared store could not be asked; the request should be retried later."""


class ApiAccess(Protocol):
    """Keys, rate limits and idempotency records, shared by every channels process."""

    async def identify(self, key: str) -> Caller | None:
        """The caller a key belongs to; None for an unknown or revoked key. Records the use.
        A key not known here may be new: it is looked for in the store before it is refused."""
        ...

    async def admit(self, bucket: str, limit: int) -> Quota:
        """Count one request against `bucket` unless it is over `limit` in this window."""
        ...

    async def claim(self, key: str, digest: str) -> Claim:
        """Claim an idempotency key for a request with this digest (a new case-open id), or
        find what an earlier request with the key was answered. Raises `Unavailable`."""
        ...
