"""The web channel's JSON API: `POST /api/v1/messages`, authenticated with API keys.

In order: the client address's rate limit (before anything else, so that guessing keys is
limited too), the key and its own rate limit, the body, the key's scope, then the
idempotency key, whose record decides the case-open id before the message is emitted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from channels.base import Built, Emit, NotSafe, Rejected, Wiring
from channels.http import read_body, require_media_type
from channels.problems import Problem
from channels.settings import WebChannelSettings
from channels.web_access import ApiAccess, Caller, Quota, Unavailable
from channels.web_openapi import IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY, submit_openapi
from normalizer.envelope import Envelope
from normalizer.web import WebMessage

_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


class Accepted(BaseModel):
    """The answer to an accepted message: its case-open id and the source id it was filed under."""

    id: str
    source_id: str | None
    status: str = "accepted"


def build(settings: WebChannelSettings, wiring: Wiring) -> Built:
    """The JSON API, on the daemon's HTTP server (its record needs "api-access")."""
    if wiring.access is None:
        raise LookupError("the JSON API needs the store's API access")
    return Built(router=api_router(settings, wiring.emit, wiring.access))


class RequestRoute(APIRoute):
    """A route whose endpoint takes the `Request` and returns its `Response` itself (it reads
    the body itself to answer 401/413/415 before parsing): FastAPI calls it directly, without
    solving parameters or validating a response model it would not use, which cost about a
    third of FastAPI's time per request. The route's OpenAPI description is unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[return-value]


def api_router(settings: WebChannelSettings, emit: Emit, access: ApiAccess) -> APIRouter:
    """The JSON API routes, bound to their settings, the pipeline's `emit` and the shared
    keys, rate limits and idempotency records."""
    router = APIRouter(prefix="/api/v1", tags=["messages"], route_class=RequestRoute)

    @router.post(
        "/messages",
        status_code=202,
        response_model=Accepted,
        **submit_openapi(settings.max_body_bytes),
    )
    async def submit_message(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        quota = _within(await access.admit(f"client:{client}", settings.rate_limit_per_client))
        caller = await _authenticate(request, access)
        limit = caller.rate_limit or settings.rate_limit_per_key
        quota = _tighter(quota, _within(await access.admit(f"key:{caller.name}", limit)))
        try:
            body = await read_body(request, settings.max_body_bytes)
            require_media_type(request, "application/json")
            message = _parse(body, settings)
            _in_scope(caller, message)
            case_id, source_id, replayed = await _identify(request, message, access)
            accepted = await _emit(emit, settings, message, case_id, source_id)
        except Problem as problem:
            problem.headers = quota.headers() | problem.headers
            raise
        headers = quota.headers() | ({"Idempotent-Replayed": "true"} if replayed else {})
        return Response(
            accepted.model_dump_json(), 202, headers=headers, media_type="application/json"
        )

    return router


def _within(quota: Quota) -> Quota:
    if not quota.allowed:
        raise Problem(
            429,
            "Too Many Requests",
            f"over {quota.limit} requests in {quota.window_s} s; retry in {quota.reset_s} s",
            headers=quota.headers(),
        )
    return quota


def _tighter(first: Quota, second: Quota) -> Quota:
    return first if first.remaining < second.remaining else second


async def _authenticate(request: Request, access: ApiAccess) -> Caller:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    # Looked up by the key's SHA-256: the time taken does not tell how much of a key matched.
    caller = await access.identify(token) if scheme.lower() == "bearer" and token else None
    if caller is None:
        raise Problem(
            401,
            "Unauthorized",
            "send a valid API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="ingest"'},
        )
    return caller


def _in_scope(caller: Caller, message: WebMessage) -> None:
    if message.channel not in caller.scopes:
        raise Problem(
            403,
            "Forbidden",
            f"the key {caller.name!r} may not submit channel {message.channel!r} "
            f"(its scopes: {', '.join(sorted(caller.scopes))})",
        )


def _parse(body: bytes, settings: WebChannelSettings) -> WebMessage:
    context = {"default_phone_region": settings.default_phone_region}
    try:
        return WebMessage.model_validate_json(body, context=context)
    except ValidationError as error:
        errors = [
            {"field": ".".join(str(p) for p in item["loc"]) or "(body)", "message": item["msg"]}
            for item in error.errors(include_url=False)
        ]
        fields = ", ".join(e["field"] for e in errors)
        raise Problem(
            422, "Unprocessable Content", f"the message is not valid: {fields}", errors=errors
        ) from None


async def _identify(
    request: Request, message: WebMessage, access: ApiAccess
) -> tuple[str | None, str | None, bool]:
    """The case-open id an idempotency key stands for (None without a key: the pipeline
    names it), the source id, and whether this is a repeat of an earlier request."""
    source_id = _source_id(request, message)
    if source_id is None:
        return None, None, False
    # The key itself (as external_id) is not part of what it names.
    digest = hashlib.sha256(message.model_dump_json(exclude={"external_id"}).encode()).hexdigest()
    try:
        claim = await access.claim(source_id, digest)
    except Unavailable as error:
        raise Problem(
            503, "Service Unavailable", str(error), headers={"Retry-After": "5"}
        ) from None
    if claim.digest != digest:
        raise Problem(
            422,
            "Unprocessable Content",
            f"Idempotency-Key {source_id!r} was used at {claim.first_used_at:%Y-%m-%dT%H:%M:%SZ} "
            "for a different message; use a new key for a new message",
            errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
            conflict={"key": source_id, "first_used_at": claim.first_used_at.isoformat()},
        )
    return claim.case_id, source_id, claim.replayed


async def _emit(
    emit: Emit,
    settings: WebChannelSettings,
    message: WebMessage,
    case_id: str | None,
    source_id: str | None,
) -> Accepted:
    envelope = Envelope(
        channel=message.channel,
        adapter="web-api",
        touchpoint=settings.touchpoint,
        received_at=datetime.now(UTC),
        payload=message,
        source_id=source_id,
        case_id=case_id,
    )
    try:
        emitted = await emit(envelope)
    except NotSafe as error:
        raise Problem(
            503, "Service Unavailable", str(error), headers={"Retry-After": "30"}
        ) from None
    except Rejected as error:  # the emit contract's other refusal; kept in quarantine
        raise Problem(
            422,
            "Unprocessable Content",
            f"the message cannot become a case: {error.reason}",
            quarantine_id=error.quarantine_id,
        ) from None
    return Accepted(id=emitted, source_id=source_id or emitted)


def _source_id(request: Request, message: WebMessage) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None:
        key = key.strip()
        if len(key) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.match(key):
            raise Problem(
                422,
                "Unprocessable Content",
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters",
                errors=[{"field": "Idempotency-Key", "message": "empty, too long or not ASCII"}],
            )
    if key and message.external_id and key != message.external_id:
        raise Problem(
            422,
            "Unprocessable Content",
            "Idempotency-Key and external_id name different messages",
            errors=[{"field": "external_id", "message": "differs from Idempotency-Key"}],
        )
    return key or message.external_id
