"""What every Twilio webhook shares: a bounded, signed form in, TwiML or problem+json out."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML

from channels.base import Emit, NotSafe, Rejected
from channels.http import read_body, require_media_type
from channels.problems import PROBLEM_SCHEMA, PROBLEM_TYPE, Problem
from channels.settings import TwilioChannelSettings
from normalizer.envelope import Envelope

log = structlog.get_logger("channels.twilio")

FORM = "application/x-www-form-urlencoded"
SIGNATURE_HEADER = "x-twilio-signature"
MAX_FIELDS = 200
SID = re.compile(r"^[A-Za-z]{2}[0-9a-fA-F]{32}$")
RETRY_AFTER_S = "30"

Form = ImmutableMultiDict[str, str]


class Gate:
    """Reads a webhook's form and checks Twilio's signature against the public URL."""

    def __init__(self, settings: TwilioChannelSettings) -> None:
        self._settings = settings
        token = settings.auth_token.get_secret_value() if settings.auth_token else ""
        self._validator = RequestValidator(token)

    async def form(self, request: Request) -> Form:
        """The posted form, once it is within the size limit, a form, and signed by Twilio."""
        body = await read_body(request, self._settings.max_body_bytes)
        require_media_type(request, FORM)
        form = _parse(body)
        if self._settings.verify_signatures:
            self._verify(request, form)
        return form

    def _verify(self, request: Request, form: Form) -> None:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise _forbidden("the X-Twilio-Signature header is missing")
        # Twilio signs the URL it was given, not what a proxy in front of us turned it into.
        url = self._settings.url(request.url.path)
        if request.url.query:
            url += "?" + request.url.query
        if not self._validator.validate(url, form, signature):
            log.warning("twilio signature refused", path=request.url.path)
            raise _forbidden("the X-Twilio-Signature does not match this request")


def required(form: Form, *names: str) -> list[str]:
    """The values of fields Twilio always sends; 422 naming every one that is missing."""
    missing = [name for name in names if not form.get(name, "").strip()]
    if missing:
        raise invalid(missing, "missing")
    return [form[name].strip() for name in names]


def sid(form: Form, name: str) -> str:
    """A Twilio SID field (two letters and 32 hex digits); 422 when missing or malformed."""
    [value] = required(form, name)
    if not SID.match(value):
        raise invalid([name], "not a Twilio SID")
    return value


def invalid(fields: list[str], message: str) -> Problem:
    """A 422 problem naming the form fields at fault."""
    return Problem(
        422,
        "Unprocessable Content",
        f"the form is not a valid Twilio webhook: {', '.join(fields)}",
        errors=[{"field": name, "message": message} for name in fields],
    )


async def emit_safely(emit: Emit, envelope: Envelope) -> str:
    """Emit; NotSafe becomes 503 with Retry-After (Twilio retries), Rejected a 422."""
    try:
        return await emit(envelope)
    except NotSafe as error:
        raise Problem(
            503, "Service Unavailable", str(error), headers={"Retry-After": RETRY_AFTER_S}
        ) from None
    except Rejected as error:
        raise Problem(
            422,
            "Unprocessable Content",
            error.reason,
            quarantine_id=error.quarantine_id,
        ) from None


def twiml(response: TwiML) -> Response:
    """TwiML as Twilio wants it: XML with a declaration."""
    return Response(str(response), media_type="text/xml")


def _parse(body: bytes) -> Form:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise Problem(
            400, "Bad Request", f"the body is not a UTF-8 form of at most {MAX_FIELDS} fields"
        ) from None
    return ImmutableMultiDict(pairs)


def _forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail)


def webhook_openapi(summary: str, *fields: str) -> dict[str, Any]:
    """The route decorator's description of a webhook: a signed form naming `fields` (the
    ones it needs; Twilio sends more), TwiML or problem+json back."""
    problem = {"content": {PROBLEM_TYPE: {"schema": PROBLEM_SCHEMA}}}
    form = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in fields},
        "required": list(fields),
        "additionalProperties": {"type": "string"},
    }
    return {
        "summary": summary,
        "response_class": Response,
        "openapi_extra": {
            "requestBody": {"required": True, "content": {FORM: {"schema": form}}},
            "parameters": [
                {
                    "name": "X-Twilio-Signature",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Twilio's signature of the request; checked unless "
                    "verify_signatures is off (403 when missing or wrong).",
                }
            ],
        },
        "responses": {
            200: {"description": "TwiML", "content": {"text/xml": {"schema": {"type": "string"}}}},
            403: {"description": "Missing or wrong X-Twilio-Signature", **problem},
            413: {"description": "Body over the configured limit", **problem},
            415: {"description": "Body is not a form", **problem},
            422: {"description": "Not a valid webhook form; `errors` names the fields", **problem},
            503: {
                "description": "Not safe yet; Twilio retries",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
                **problem,
            },
        },
    }
