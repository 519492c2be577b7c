"""Helpers for the contact form tests: settings, fetching a form, posting it as a browser does."""

from __future__ import annotations

import re

import httpx

CONTACT_SETTINGS = """
[channels.contact]
max_body_bytes = 200000
max_file_bytes = 50000
max_files = 2
"""
FIELDS = {
    "name": "Ann Lee",
    "email": "Ann.Lee@Example.com",
    "phone": "+44 20 7946 0958",
    "subject": "Kettle stopped heating",
    "message": "Hello,\r\nmy kettle (order 1234) stopped heating.\r\nAnn",
}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
NO_FILE = ("files", ("", b"", "application/octet-stream"))
"""What a browser sends for a file input left empty."""


def token_of(html: str) -> str:
    """The CSRF token in a rendered form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def open_form(client: httpx.AsyncClient, query: str = "") -> str:
    """GET the form (the client keeps its cookie); return the form's token."""
    response = await client.get(f"/contact{query}")
    assert response.status_code == 200, response.text
    return token_of(response.text)


async def send(
    client: httpx.AsyncClient,
    token: str | None,
    fields: dict[str, str] = FIELDS,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    """POST the form as multipart/form-data, the way a browser submits it."""
    data = {"lang": "en", "website": "", **fields, **extra}
    if token is not None:
        data["csrf_token"] = token
    return await client.post("/contact", data=data, files=files or [NO_FILE], headers=headers)


def reference_of(html: str) -> str:
    """The reference on a confirmation page."""
    found = re.search(r'id="reference">([^<]+)<', html)
    assert found, html
    return found.group(1)


def field_error(html: str, name: str) -> str | None:
    """The error text shown next to one field, if any."""
    found = re.search(rf'<p class="error" id="f-{name}-error">(.*?)</p>', html, re.S)
    if not found:
        return None
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()
