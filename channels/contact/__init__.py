"""The website contact form: `GET /contact` shows it, `POST /contact` opens a case.

The answer to a post, in order of the checks: 403 when it comes from another site or without
a valid form token, 413 when it is too large, 422 with the form again (errors next to their
fields, what was typed kept) when a field is wrong, 429 when the address or client sent too
many, 503 with the form again when the message could not be made safe, else the
confirmation with the case-open id as the reference. A filled honeypot field gets the same
confirmation, opens nothing, and is logged.

With a knowledge base (`self_service`), a first post without attachments whose subject and
message match public articles is answered with those articles instead ("Does one of these
answer your question?"): "Yes, that solved it" records a deflected contact and opens
nothing; "No, send my message" posts the same fields again, sent as above.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Message
from ulid import ULID

import normalizer.mail  # noqa: F401  (loaded with the channel: normalize_contact imports it late)
from channels.base import Built, Emit, NotSafe, Rejected, Wiring
from channels.contact.form import Posted, check, posted
from channels.contact.guard import CSRF_COOKIE, CrossSite, CsrfGuard, FormTicket, RateLimits
from channels.contact.pages import Pages
from channels.contact.texts import TEXTS, size_text
from channels.http import read_body
from channels.problems import Problem
from channels.self_service import Offered, SelfService, one_line
from channels.settings import ContactFormSettings
from normalizer.contact import ContactSubmission
from normalizer.envelope import Envelope
from normalizer.kb_event import KbEvent

log = structlog.get_logger("channels.contact")

# Room for a few more files than allowed, so that too many get a friendly error, not a 400.
EXTRA_PARTS = 20
RETRY_AFTER_S = 30


def build(settings: ContactFormSettings, wiring: Wiring) -> Built:
    """The form, on the daemon's HTTP server, with self-service when there is a knowledge base."""
    return Built(router=contact_router(settings, wiring.emit, wiring.self_service))


def contact_router(
    settings: ContactFormSettings, emit: Emit, self_service: SelfService | None = None
) -> APIRouter:
    """The form's routes, bound to their settings, the pipeline's `emit` and, when there is
    a knowledge base, its self-service lookups."""
    form = ContactForm(settings, emit, self_service)
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/contact", form.show, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/contact", form.submit, methods=["POST"], response_class=HTMLResponse)
    return router


@dataclass(frozen=True, slots=True)
class Received:
    """A post that passed the cross-site and size checks, with its form's id and language."""

    form: Posted
    form_id: str
    ticket: FormTicket
    language: str


class ContactForm:
    """Shows the form and turns each post into a case-open or a page saying what to do."""

    def __init__(
        self, settings: ContactFormSettings, emit: Emit, self_service: SelfService | None = None
    ) -> None:
        secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else None
        self._settings = settings
        self._emit = emit
        self._self_service = self_service
        self._guard = CsrfGuard(
            secret or secrets.token_urlsafe(32), settings.form_max_age_s, settings.allowed_origins
        )
        self._limits = RateLimits(
            settings.rate_limit_per_email, settings.rate_limit_per_ip, settings.rate_window_s
        )
        self._pages = Pages(settings)

    async def show(self, request: Request) -> Response:
        """`GET /contact`: an empty form, with the cookie its token is tied to."""
        cookie = request.cookies.get(CSRF_COOKIE) or self._guard.new_cookie_value()
        ticket = self._guard.issue(cookie)
        response = self._pages.form(request, self._pages.language(request), ticket)
        _set_cookie(response, request, cookie)
        return response

    async def submit(self, request: Request) -> Response:
        """`POST /contact`: the checks in the order the module docstring lists them."""
        received = await self._receive(request)
        if isinstance(received, Response):
            return received
        form, language, pages = received.form, received.language, self._pages
        if form.honeypot:
            log.warning("contact form honeypot filled", client=_client(request))
            return pages.thanks(request, language, str(ULID()))
        if form.step == "solved":
            return await self._solved(request, received)
        submission, errors = check(form, self._settings, TEXTS[language], language)
        if submission is None:
            return pages.form(
                request, language, received.ticket, form=form, errors=errors, status=422
            )
        if form.step != "send" and not form.files:
            offered = await self._offer(submission)
            if offered:
                return pages.suggestions(request, language, received.ticket, form, offered)
        wait_s = await self._limits.allow(submission.email, _client(request))
        if wait_s is not None:
            log.warning("contact form rate limited", client=_client(request), retry_after=wait_s)
            minutes = max(1, round(wait_s / 60))
            headers = {"Retry-After": str(wait_s)}
            return pages.refused(request, language, 429, "too_many", headers, minutes=minutes)
        return await self._open_case(request, received, submission)

    async def _receive(self, request: Request) -> Received | Response:
        """Read and parse a post that comes from our own form; a refusal page otherwise."""
        language = self._pages.language(request)
        headers = request.headers
        try:
            self._guard.check_origin(
                headers.get("origin"), headers.get("sec-fetch-site"), headers.get("host")
            )
        except CrossSite as error:
            return self._forbidden(request, language, error)
        limit = self._settings.max_body_bytes
        try:
            body = await read_body(request, limit)
        except Problem:
            return self._pages.refused(request, language, 413, "too_large", limit=size_text(limit))
        form = await _parse(request, body, self._settings.max_files + EXTRA_PARTS)
        if form is None:
            return self._pages.refused(request, language, 400, "bad_form")
        language = self._pages.language(request, form.language)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        try:
            form_id = self._guard.check(form.token, cookie)
        except CrossSite as error:
            return self._forbidden(request, language, error)
        return Received(form, form_id, self._guard.issue(cookie, form_id), language)

    async def _open_case(
        self, request: Request, received: Received, submission: ContactSubmission
    ) -> Response:
        envelope = Envelope(
            channel="web",
            adapter="contact-form",
            touchpoint=self._settings.touchpoint,
            received_at=datetime.now(UTC),
            payload=submission,
            source_id=_source_id(received.form_id, submission),
        )
        language = received.language
        try:
            case_id = await self._emit(envelope)
        except NotSafe:
            return self._pages.form(
                request,
                language,
                received.ticket,
                form=received.form,
                notice=TEXTS[language]["unavailable"],
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        except Rejected as rejected:
            log.warning(
                "contact form rejected", reason=rejected.reason, kept=rejected.quarantine_id
            )
            return self._pages.refused(request, language, 422, "bad_form")
        return self._pages.thanks(request, language, case_id)

    async def _offer(self, submission: ContactSubmission) -> Sequence[Offered]:
        """The articles to offer first (recorded as shown), or none."""
        service = self._self_service
        if service is None:
            return ()
        offered = await asyncio.to_thread(
            service.suggest, submission.subject, submission.message, submission.language
        )
        if offered:
            await self._record(
                "shown", [article.id for article in offered], submission.language, None
            )
        return offered

    async def _solved(self, request: Request, received: Received) -> Response:
        """ "Yes, that solved it": a deflected contact, recorded with the one-line answer."""
        service = self._self_service
        language = received.language
        article = service.article(received.form.article) if service else None
        if article is None:
            return self._pages.refused(request, language, 422, "bad_form")
        answer = one_line(received.form.answer)
        await self._record("accepted", [article.id], language, answer)
        log.info("contact deflected", article=article.id, language=language)
        return self._pages.solved(request, language, article)

    async def _record(
        self, event: str, articles: list[str], language: str, answer: str | None
    ) -> None:
        """Counted by the dispatcher; losing a count never stops the customer."""
        assert self._self_service is not None
        try:
            await self._self_service.record(
                KbEvent(
                    id=str(ULID()),
                    event=event,  # type: ignore[arg-type]
                    at=datetime.now(UTC),
                    articles=articles,
                    language=language,
                    touchpoint=self._settings.touchpoint,
                    answer=answer,
                )
            )
        except NotSafe as error:
            log.warning("kb event not recorded", event=event, error=str(error))

    def _forbidden(self, request: Request, language: str, error: CrossSite) -> Response:
        log.warning("contact form refused", reason=str(error), client=_client(request))
        return self._pages.refused(request, language, 403, "forbidden")


async def _parse(request: Request, body: bytes, max_files: int) -> Posted | None:
    """Parse the multipart (or urlencoded) body already read within the size limit."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    replayed = Request(request.scope, replay)
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
