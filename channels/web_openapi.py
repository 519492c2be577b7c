"""The JSON API's OpenAPI description: every status and header the route can answer.

The route reads its body itself (to answer 401, 413 and 415 before parsing), so the body,
the headers and the answers are declared here by hand; a schemathesis run over the running
daemon (tests/test_openapi_conformance.py) holds the description to the behaviour.
"""

from __future__ import annotations

import copy
from typing import Any

from channels.problems import PROBLEM_SCHEMA, PROBLEM_TYPE
from normalizer.web import WebMessage

MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
"""Visible ASCII, spaces inside: what an HTTP header carries without surprises."""
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key."}}

_INTEGER = {"schema": {"type": "integer", "minimum": 0}}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Requests allowed in a window.", "required": True}
    | _INTEGER,
    "RateLimit-Remaining": {"description": "Requests left in this window.", "required": True}
    | _INTEGER,
    "RateLimit-Reset": {"description": "Seconds until the window ends.", "required": True}
    | _INTEGER,
    "RateLimit-Policy": {
        "description": 'The limit and the window\'s length in seconds, e.g. "120;w=60".',
        "required": True,
        "schema": {"type": "string"},
    },
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True} | _INTEGER
}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_TYPE: {"schema": PROBLEM_SCHEMA}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def request_schema() -> dict[str, Any]:
    """The body's JSON Schema: the model's, with what its validators check spelt out as
    alternatives (a message from the web, or a logged contact with `via` and `agent_id`; a
    sender with an email address, or a phone number, or both), each a whole object, so that
    a generator can fill in one alternative and the result is valid."""
    schema = WebMessage.model_json_schema()
    defs = schema.pop("$defs")
    sender = defs["WebSender"]
    defs["WebSender"] = {
        "description": sender.pop("description", ""),
        "anyOf": [_requiring(sender, "email"), _requiring(sender, "phone")],
    }
    web = copy.deepcopy(schema)
    web["title"] = "A message from the web"
    web["properties"]["channel"] = {"const": "web", "default": "web"}
    web["properties"]["via"] = web["properties"]["agent_id"] = {"type": "null"}
    logged = _requiring(_requiring(schema, "via"), "agent_id")
    logged["title"] = "A contact an agent logged"
    logged["properties"]["channel"] = {"const": "logged"}
    logged["required"].append("channel")
    defs["Submission"] = {"anyOf": [web, logged]}
    return {"$ref": "#/$defs/Submission", "$defs": defs}


def _requiring(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of an object schema in which the nullable property `name` is required and not
    null."""
    required = copy.deepcopy(schema)
    field = required["properties"][name]
    [present] = [branch for branch in field.pop("anyOf") if branch.get("type") != "null"]
    field.update(present)
    field.pop("default", None)
    required["required"] = sorted({*required.get("required", []), name})
    return required


def submit_openapi(max_body_bytes: int) -> dict[str, Any]:
    """The keyword arguments of the submit route's decorator that describe it."""
    return {
        "summary": "Submit a customer message; answers once the message is safe.",
        "openapi_extra": {
            "security": [{"bearer": []}],
            "x-security-schemes": BEARER,
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_IDEMPOTENCY_KEY,
                        "pattern": IDEMPOTENCY_KEY_PATTERN,
                    },
                    "description": "Your id for this request: a repeat with the same key and "
                    "body gets the same answer (status and id) for at least 24 hours; the "
                    "same key with another body is refused with 422.",
                }
            ],
            "requestBody": {
                "required": True,
                "description": f"At most {max_body_bytes} bytes (`max_body_bytes`); a larger "
                "body is refused with 413 before it is read.",
                "content": {"application/json": {"schema": request_schema()}},
            },
        },
        "responses": {
            202: {
                "description": "The message is safe; `id` is its case-open id.",
                "headers": RATE_LIMIT_HEADERS
                | {
                    "Idempotent-Replayed": {
                        "description": '"true" when the key was used before: the first answer.',
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
            },
            401: _problem("Missing, unknown or revoked API key"),
            403: _problem("The key's scopes do not include the message's channel"),
            413: _problem(f"Body over the configured limit ({max_body_bytes} bytes)"),
            415: _problem("Body is not application/json"),
            422: _problem(
                "Invalid message (`errors` names each field), or an Idempotency-Key reused "
                "with a different body (`conflict`)"
            ),
            429: _problem(
                "Over the rate limit of the key or of the client address",
                RATE_LIMIT_HEADERS | RETRY_AFTER,
            ),
            503: _problem("The message could not be made safe; retry later", RETRY_AFTER),
        },
    }
