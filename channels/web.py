"""The web channel's JSON API: `POST /api/v1/messages`, authenticated with API keys."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from channels.base import Emit, NotSafe
from channels.http import read_body, require_media_type
from channels.problems import PROBLEM_TYPE, Problem
from channels.settings import WebChannelSettings
from normalizer.envelope import Envelope
from normalizer.web import WebMessage

MAX_IDEMPOTENCY_KEY = 200


class Accepted(BaseModel):
    """The answer to an accepted message: its case-open id and the source id it was filed under."""

    id: str
    source_id: str | None
    status: str = "accepted"


def _problem_schema(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": {"type": "object"}}}}


def api_router(settings: WebChannelSettings, emit: Emit) -> APIRouter:
    """The JSON API routes, bound to their settings and the pipeline's `emit`."""
    router = APIRouter(prefix="/api/v1", tags=["messages"])
    keys = [key.encode() for key in settings.api_keys]

    @router.post(
        "/messages",
        status_code=202,
        response_model=Accepted,
        summary="Submit a customer message; answers once the message is safe.",
        openapi_extra={
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
                    "description": "Repeats with the same key open no second case.",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": WebMessage.model_json_schema()}},
            },
        },
        responses={
            401: _problem_schema("Missing or wrong API key"),
            413: _problem_schema("Body over the configured limit"),
            415: _problem_schema("Body is not application/json"),
            422: _problem_schema("Invalid message; `errors` names each field"),
            503: _problem_schema("The message could not be made safe; retry later"),
        },
    )
    async def submit_message(request: Request) -> JSONResponse:
        _authenticate(request, keys)
        body = await read_body(request, settings.max_body_bytes)
        require_media_type(request, "application/json")
        message = _parse(body, settings)
        source_id = _source_id(request, message)
        envelope = Envelope(
            channel=message.channel,
            adapter="web-api",
            touchpoint=settings.touchpoint,
            received_at=datetime.now(UTC),
            payload=message,
            source_id=source_id,
        )
        try:
            case_id = await emit(envelope)
        except NotSafe as error:
            raise Problem(
                503, "Service Unavailable", str(error), headers={"Retry-After": "30"}
            ) from None
        accepted = Accepted(id=case_id, source_id=source_id or case_id)
        return JSONResponse(accepted.model_dump(), status_code=202)

    return router


def _authenticate(request: Request, keys: list[bytes]) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    # Compare against every key so the time taken does not tell which prefix matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    if scheme.lower() != "bearer" or not given or not matched:
        raise Problem(
            401,
            "Unauthorized",
            "send a valid API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="ingest"'},
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


def _source_id(request: Request, message: WebMessage) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None:
        key = key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise Problem(
                422,
                "Unprocessable Content",
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                errors=[{"field": "Idempotency-Key", "message": "empty or too long"}],
            )
    if key and message.external_id and key != message.external_id:
        raise Problem(
            422,
            "Unprocessable Content",
            "Idempotency-Key and external_id name different messages",
            errors=[{"field": "external_id", "message": "differs from Idempotency-Key"}],
        )
    return key or message.external_id
