"""The website contact form: `GET /contact` shows it, `POST /contact` opens a case.

The answer to a post, in order of the checks: 403 when it comes from another site or without
a valid form token, 413 when it is too large, 422 with the form again (errors next to their
fields, what was typed kept) when a field is wrong, 429 when the address or client sent too
many, 503 with the form again when the message could not be made safe, else the
confirmation with the case-open id as the reference. A filled honeypot field gets the same
confirmation, opens nothing, and is logged.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, Response
from starlette.types import Message
from ulid import ULID

from channels.base import Emit, NotSafe, Rejected
from channels.contact.form import Posted, check, posted
from channels.contact.guard import CSRF_COOKIE, CrossSite, CsrfGuard, RateLimits
from channels.contact.pages import Pages
from channels.contact.texts import TEXTS, size_text
from channels.http import read_body
from channels.problems import Problem
from channels.settings import ContactFormSettings
from normalizer.contact import ContactSubmission
from normalizer.envelope import Envelope

log = structlog.get_logger("channels.contact")

# Room for a few more files than allowed, so that too many get a friendly error, not a 400.
EXTRA_PARTS = 20


def contact_router(settings: ContactFormSettings, emit: Emit) -> APIRouter:
    """The form's routes, bound to their settings and the pipeline's `emit`."""
    secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else None
    guard = CsrfGuard(
        secret or secrets.token_urlsafe(32), settings.form_max_age_s, settings.allowed_origins
    )
    limits = RateLimits(
        settings.rate_limit_per_email, settings.rate_limit_per_ip, settings.rate_window_s
    )
    pages = Pages(settings)
    router = APIRouter(include_in_schema=False)

    @router.get("/contact", response_class=HTMLResponse)
    async def show_form(request: Request) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or guard.new_cookie_value()
        response = pages.form(request, pages.language(request), guard.issue(cookie))
        _set_cookie(response, request, cookie)
        return response

    @router.post("/contact", response_class=HTMLResponse)
    async def submit_form(request: Request) -> Response:
        language = pages.language(request)
        try:
            guard.check_origin(
                request.headers.get("origin"),
                request.headers.get("sec-fetch-site"),
                request.headers.get("host"),
            )
        except CrossSite as error:
            return _forbidden(request, language, error)
        try:
            body = await read_body(request, settings.max_body_bytes)
        except Problem:
            return pages.refused(
                request, language, 413, "too_large", limit=size_text(settings.max_body_bytes)
            )
        form = await _parse(request, body, settings.max_files + EXTRA_PARTS)
        if form is None:
            return pages.refused(request, language, 400, "bad_form")
        language = pages.language(request, form.language)
        cookie = request.cookies.get(CSRF_COOKIE)
        try:
            form_id = guard.check(form.token, cookie)
        except CrossSite as error:
            return _forbidden(request, language, error)
        if form.honeypot:
            log.warning("contact form honeypot filled", client=_client(request), form=form_id)
            return pages.thanks(request, language, str(ULID()))

        submission, errors = check(form, settings, TEXTS[language], language)
        ticket = guard.issue(cookie or "", form_id)
        if submission is None:
            return pages.form(request, language, ticket, form=form, errors=errors, status=422)
        wait_s = await limits.allow(submission.email, _client(request))
        if wait_s is not None:
            log.warning("contact form rate limited", client=_client(request), retry_after=wait_s)
            minutes = max(1, round(wait_s / 60))
            headers = {"Retry-After": str(wait_s)}
            return pages.refused(request, language, 429, "too_many", headers, minutes=minutes)

        envelope = Envelope(
            channel="web",
            adapter="contact-form",
            touchpoint=settings.touchpoint,
            received_at=datetime.now(UTC),
            payload=submission,
            source_id=_source_id(form_id, submission),
        )
        try:
            case_id = await emit(envelope)
        except NotSafe:
            notice = TEXTS[language]["unavailable"]
            headers = {"Retry-After": "30"}
            return pages.form(
                request, language, ticket, form=form, notice=notice, status=503, headers=headers
            )
        except Rejected as rejected:
            log.warning(
                "contact form rejected", reason=rejected.reason, kept=rejected.quarantine_id
            )
            return pages.refused(request, language, 422, "bad_form")
        return pages.thanks(request, language, case_id)

    def _forbidden(request: Request, language: str, error: CrossSite) -> Response:
        log.warning("contact form refused", reason=str(error), client=_client(request))
        return pages.refused(request, language, 403, "forbidden")

    return router


async def _parse(request: Request, body: bytes, max_files: int) -> Posted | None:
    """Parse the multipart (or urlencoded) body already read within the size limit."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    replayed = StarletteRequest(request.scope, replay)
    try:
        async with replayed.form(max_files=max_files, max_fields=50) as data:
            return await posted(data)
    except (HTTPException, MultiPartException):
        return None


def _source_id(form_id: str, submission: ContactSubmission) -> str:
    """The form's id and a digest of what was sent: pressing Send twice (or reloading the
    confirmation) repeats the id, so the dispatcher drops the copy; a different message sent
    from the same form (after going back) gets its own."""
    digest = hashlib.sha256(submission.model_dump_json(exclude={"language"}).encode())
    return f"contact:{form_id}:{digest.hexdigest()[:32]}"


def _set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        value,
        path=request.url.path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
