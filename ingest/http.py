"""The daemon's HTTP application: health, readiness, problem+json errors, channel routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from channels.problems import PROBLEM_TYPE, Problem
from ingest.metrics import Metrics

ReadinessCheck = Callable[[], str | None]
"""Returns None when ready, else a short reason why not."""
Report = Callable[[], dict[str, object]]
METRICS_TYPE = "text/plain"


def create_app(
    checks: dict[str, ReadinessCheck],
    version: str,
    metrics: Metrics,
    reports: dict[str, Report] | None = None,
    advisories: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The bare application; channels add their routers to it. `reports` add sections to
    /healthz (the rules in force, or why a reload was refused). `advisories` are shown on
    /readyz like checks, but a failing one leaves it 200 ("degraded"): a mailbox whose token
    was revoked must not take the node's web API out of the load balancer."""
    app = FastAPI(
        title="omnichannel ingest",
        version=version,
        description="Every customer touchpoint becomes one clean case-open message.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(Problem, _problem_response)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]

    @app.get("/healthz", tags=["operations"], summary="The process is alive.")
    async def healthz() -> dict[str, object]:
        return {"status": "alive", **{name: report() for name, report in (reports or {}).items()}}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The broker is connected and the store open.",
        responses={
            200: {
                "description": 'Ready ("ready"), or ready with a lasting problem that needs an '
                'admin ("degraded": an OAuth2 mailbox or relay to authorize again); `checks` '
                "says each one's state."
            },
            503: {"description": "Not ready; `checks` says what is failing."},
        },
    )
    async def readyz() -> JSONResponse:
        failing = _failing(checks)
        if failing:
            return JSONResponse({"status": "not ready", "checks": failing}, status_code=503)
        degraded = _failing(advisories or {})
        shown = {name: "ok" for name in [*checks, *(advisories or {})]} | degraded
        return JSONResponse({"status": "degraded" if degraded else "ready", "checks": shown})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics of this process.",
        response_class=Response,
        responses={
            200: {
                "description": "The Prometheus text format.",
                "content": {METRICS_TYPE: {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    app.openapi = lambda: _openapi_with_hoisted_defs(app)  # type: ignore[method-assign]
    return app


def _failing(checks: dict[str, ReadinessCheck]) -> dict[str, str]:
    """The checks that fail now, each with why."""
    return {name: why for name, check in checks.items() if (why := check()) is not None}


def problem_json(problem: Problem) -> JSONResponse:
    """Render a Problem as an application/problem+json response."""
    return JSONResponse(
        problem.body(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_TYPE
    )


async def _problem_response(_: Request, problem: Problem) -> JSONResponse:
    return problem_json(problem)


async def _http_exception(_: Request, error: HTTPException) -> JSONResponse:
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(error.status_code, "HTTP Error")
    return problem_json(
        Problem(error.status_code, title, str(error.detail), headers=dict(error.headers or {}))
    )


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(p) for p in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    return problem_json(Problem(422, "Unprocessable Content", "invalid request", errors=errors))


def _openapi_with_hoisted_defs(app: FastAPI) -> dict[str, Any]:
    """Generate the OpenAPI document once, moving inline model `$defs` into components.

    Routes that read their body themselves (to answer 401/413/415 before parsing) declare
    the body schema by hand; pydantic puts nested models under `$defs`, which OpenAPI wants
    under `components/schemas`. Their `x-security-schemes` go to `components` likewise.
    """
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                components.update(schema.pop("$defs", {}))
            # An operation names its security scheme; the document declares it once.
            if schemes := operation.pop("x-security-schemes", None):
                document["components"].setdefault("securitySchemes", {}).update(schemes)
    app.openapi_schema = _rewrite_refs(document)
    return app.openapi_schema


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", "#/components/schemas/")
                if key == "$ref" and isinstance(value, str)
                else _rewrite_refs(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node
