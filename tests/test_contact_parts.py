"""The contact form's pure parts: normalising, replaying, choosing a language, form tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.contact.guard import CrossSite, CsrfGuard, RateLimits
from channels.contact.texts import TEXTS, choose_language, size_text
from normalizer.contact import ContactFile, ContactSubmission
from normalizer.envelope import PAYLOAD_KINDS, Envelope, kind_of, normalize
from tests.contact import PDF

CASE_ID = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"
SUBMISSION = ContactSubmission(
    name=" Ann\u0007 Lee ",
    email="Ann.Lee@Example.com",
    phone="+442079460958",
    subject="Kettle\n stopped",
    message="Hello\r\n\r\n\r\n\r\nthere",
    language="da",
    files=[
        ContactFile(filename="C:\\Users\\ann\\receipt.pdf", media_type="application/pdf", data=PDF),
        ContactFile(filename="copy.pdf", media_type="application/pdf", data=PDF),
    ],
)


def envelope(payload: ContactSubmission = SUBMISSION) -> Envelope:
    return Envelope(
        channel="web",
        adapter="contact-form",
        touchpoint="support-site",
        received_at=datetime(2026, 11, 23, tzinfo=UTC),
        payload=payload,
        source_id="contact:form-1:abc",
    )


def test_a_submission_becomes_a_case_open_with_one_blob_per_distinct_file() -> None:
    normalized = normalize(envelope(), CASE_ID)
    case = normalized.case
    assert (case.channel, case.adapter, case.source_id) == (
        "web",
        "contact-form",
        "contact:form-1:abc",
    )
    assert [(t.kind, t.address) for t in case.touchpoints] == [("form", "support-site")]
    assert (case.sender.kind, case.sender.address, case.sender.name) == (
        "email",
        "ann.lee@example.com",
        "Ann Lee",
    )
    assert [(i.kind, i.address) for i in case.sender.alternates] == [("phone", "+442079460958")]
    assert (case.subject, case.text, case.language) == ("Kettle stopped", "Hello\n\nthere", "da")
    assert [a.name for a in case.attachments] == ["receipt.pdf", "copy.pdf"]
    assert len({a.ref for a in case.attachments}) == 1
    assert [blob.data for blob in normalized.blobs] == [PDF]


def test_a_kept_submission_replays_to_the_same_case() -> None:
    kind = kind_of(SUBMISSION)
    assert kind is PAYLOAD_KINDS["contact"]
    read_back = kind.decode(kind.encode(SUBMISSION), ("support-site",))
    assert read_back == SUBMISSION
    assert normalize(envelope(read_back), CASE_ID) == normalize(envelope(), CASE_ID)


@pytest.mark.parametrize(
    ("asked", "header", "expected"),
    [
        ("da", "de", "da"),
        ("DA", None, "da"),
        ("fr", "de-CH, en;q=0.5", "de"),
        (None, "fr, en-GB;q=0.8, da;q=0.9", "da"),
        (None, "da;q=0, en;q=0.1", "en"),
        (None, "*", "en"),
        (None, "de;q=banana, da;q=0.2", "da"),
        (None, "", "en"),
    ],
)
def test_the_language_is_asked_for_or_negotiated(
    asked: str | None, header: str | None, expected: str
) -> None:
    assert choose_language(asked, header, ["en", "da", "de"], "en") == expected


def test_every_language_has_every_text() -> None:
    for code, texts in TEXTS.items():
        assert texts.keys() == TEXTS["en"].keys(), code
        assert all(value.strip() for value in texts.values()), code


def test_sizes_read_as_people_write_them() -> None:
    assert [size_text(n) for n in (512, 50_000, 1_572_864, 10_485_760)] == [
        "512 bytes",
        "48 KB",
        "1.5 MB",
        "10 MB",
    ]


def test_form_tokens_are_tied_to_their_cookie_and_expire() -> None:
    guard = CsrfGuard("secret", max_age_s=60, allowed_origins=[])
    ticket = guard.issue("cookie-a")
    assert guard.check(ticket.token, "cookie-a") == ticket.form_id
    assert guard.issue("cookie-a", ticket.form_id).form_id == ticket.form_id
    for token, cookie in [(ticket.token, "cookie-b"), (ticket.token, None), (None, "cookie-a")]:
        with pytest.raises(CrossSite):
            guard.check(token, cookie)
    with pytest.raises(CrossSite, match="bad or expired"):
        CsrfGuard("other secret", 60, []).check(ticket.token, "cookie-a")
    expired = CsrfGuard("secret", max_age_s=-1, allowed_origins=[])
    with pytest.raises(CrossSite, match="bad or expired"):
        expired.check(ticket.token, "cookie-a")


@pytest.mark.parametrize(
    ("origin", "fetch_site", "allowed"),
    [
        (None, None, True),
        ("http://form.example:8080", "same-origin", True),
        ("https://www.example.com", "same-site", True),
        (None, "none", True),
        ("https://evil.example", None, False),
        ("null", None, False),
        (None, "cross-site", False),
        (None, "same-site", False),
        ("http://form.example:8080", "cross-site", False),
    ],
)
def test_origins(origin: str | None, fetch_site: str | None, allowed: bool) -> None:
    guard = CsrfGuard("secret", 60, ["https://www.example.com"])
    if allowed:
        guard.check_origin(origin, fetch_site, "form.example:8080")
    else:
        with pytest.raises(CrossSite):
            guard.check_origin(origin, fetch_site, "form.example:8080")


async def test_rate_limits_count_per_address_and_per_client() -> None:
    limits = RateLimits(per_email=1, per_ip=2, window_s=60)
    assert await limits.allow("ann@example.com", "10.0.0.1") is None
    wait_s = await limits.allow("ANN@example.com ", "10.0.0.2")
    assert wait_s is not None and 0 < wait_s <= 60
    assert await limits.allow("bob@example.com", "10.0.0.1") is None
    assert await limits.allow("eve@example.com", "10.0.0.1") is not None
    assert await limits.allow("eve@example.com", "10.0.0.3") is None
