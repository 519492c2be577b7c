"""The contact form's HTML pages, rendered with Jinja2 from the templates beside this file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from channels.contact.form import Posted, kept_values, type_names
from channels.contact.guard import FormTicket
from channels.contact.texts import TEXTS, choose_language, size_text
from channels.self_service import Offered
from channels.settings import ContactFormSettings

# Every page: no external anything, no framing, no caching of a page that holds a token.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Pages:
    """Renders the form, the confirmation and the refusals in the chosen language."""

    def __init__(self, settings: ContactFormSettings) -> None:
        self._settings = settings
        self._env = Environment(
            loader=PackageLoader("channels.contact"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._languages = [(code, TEXTS[code]["language_name"]) for code in settings.languages]

    def language(self, request: Request, asked: str | None = None) -> str:
        """The language to answer in: asked for (form field or ?lang=), browser's, default."""
        return choose_language(
            asked or request.query_params.get("lang"),
            request.headers.get("accept-language"),
            self._settings.languages,
            self._settings.default_language,
        )

    def form(
        self,
        request: Request,
        language: str,
        ticket: FormTicket,
        *,
        form: Posted | None = None,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The form, empty or as the person filled it, with errors next to their fields."""
        settings = self._settings
        texts = TEXTS[language]
        files_hint = texts["files_hint"].format(
            count=settings.max_files,
            size=size_text(settings.max_file_bytes),
            types=type_names(settings.file_types),
        )
        return self._render(
            "form.html",
            request,
            language,
            status,
            headers,
            ticket=ticket,
            values=kept_values(form),
            errors=dict(errors or {}),
            notice=notice,
            files_hint=files_hint,
            files_again=bool(form and form.files),
            accept=",".join(settings.file_types),
            max_files=settings.max_files,
            max_message_chars=settings.max_message_chars,
        )

    def suggestions(
        self,
        request: Request,
        language: str,
        ticket: FormTicket,
        form: Posted,
        offered: Sequence[Offered],
    ) -> HTMLResponse:
        """The self-service step: the articles, each with "Yes, that solved it", and the
        message kept in hidden fields for "No, send my message"."""
        return self._render(
            "suggestions.html",
            request,
            language,
            200,
            None,
            ticket=ticket,
            offered=offered,
            values=kept_values(form),
        )

    def solved(self, request: Request, language: str, article: Offered) -> HTMLResponse:
        """After "Yes, that solved it": nothing was sent."""
        return self._render(
            "solved.html", request, language, 200, None, title=article.title, url=article.url
        )

    def thanks(self, request: Request, language: str, reference: str) -> HTMLResponse:
        """The confirmation, with the reference the person can quote."""
        return self._render("thanks.html", request, language, 200, None, reference=reference)

    def refused(
        self,
        request: Request,
        language: str,
        status: int,
        reason: str,
        headers: Mapping[str, str] | None = None,
        **values: object,
    ) -> HTMLResponse:
        """A page saying why the form was not taken (`reason`: forbidden, too_many, ...)."""
        texts = TEXTS[language]
        return self._render(
            "refused.html",
            request,
            language,
            status,
            headers,
            title=texts[f"{reason}_title"],
            body=texts[f"{reason}_body"].format(**values),
        )

    def _render(
        self,
        template: str,
        request: Request,
        language: str,
        status: int,
        headers: Mapping[str, str] | None,
        **context: object,
    ) -> HTMLResponse:
        html = self._env.get_template(template).render(
            lang=language,
            t=TEXTS[language],
            languages=self._languages,
            action=request.url.path,
            **context,
        )
        return HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )
