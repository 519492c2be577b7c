"""The contact form in a real browser: Debian's headless Chromium driven by Playwright.

The screenshot of the form is kept at test-artifacts/contact-form.png (git-ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel
from playwright.async_api import Browser, Page

from ingest.blobstore import BlobStore
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS
from tests.conftest import bodies, collect
from tests.contact import CONTACT_SETTINGS, PDF
from tests.daemon import DaemonBase
from tests.local import LocalDaemon

EXAMPLE_KB = Path(__file__).resolve().parent.parent / "kb"

pytestmark = BROWSER_TEST_MARKS


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="en-GB")
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def form_daemon(make_daemon: Callable[..., LocalDaemon]) -> DaemonBase:
    running = make_daemon(extra=CONTACT_SETTINGS).start()
    await running.wait_ready()
    return running


async def test_a_person_fills_in_the_form_and_the_case_arrives(
    form_daemon: DaemonBase, page: Page, amqp: AbstractChannel, capsys: pytest.CaptureFixture[str]
) -> None:
    await page.goto(f"{form_daemon.url}/contact")
    await page.get_by_label("Name").fill("Ann Lee")
    await page.get_by_label("Email address").fill("ann.lee@example.com")
    await page.get_by_label("Phone number (optional)").fill("+44 20 7946 0958")
    await page.get_by_label("Subject").fill("Kettle stopped heating")
    await page.get_by_label("Message").fill("My kettle (order 1234) stopped heating.")
    await page.get_by_label("Attachments (optional)").set_input_files(
        [{"name": "receipt.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "contact-form.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    with capsys.disabled():
        print(f"\ncontact form screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000

    async with page.expect_navigation():
        await page.get_by_role("button", name="Send message").click()
    assert await page.get_by_role("heading", level=1).inner_text() == (
        "Thank you, we have your message"
    )
    reference = (await page.locator("#reference").inner_text()).strip()

    [case] = bodies(await collect(amqp, form_daemon.names.default, expected=1))
    assert case["id"] == reference
    assert (case["channel"], case["adapter"]) == ("web", "contact-form")
    assert case["sender"]["address"] == "ann.lee@example.com"
    assert case["sender"]["alternates"] == [{"kind": "phone", "address": "+442079460958"}]
    assert case["text"] == "My kettle (order 1234) stopped heating."
    [attachment] = case["attachments"]
    assert (attachment["name"], attachment["media_type"]) == ("receipt.pdf", "application/pdf")
    assert BlobStore(form_daemon.workdir / "var" / "blobs").get(attachment["ref"]) == PDF


async def test_a_validation_error_shows_next_to_its_field_with_the_input_kept(
    form_daemon: DaemonBase, page: Page, amqp: AbstractChannel
) -> None:
    await page.goto(f"{form_daemon.url}/contact?lang=da")
    await page.get_by_label("Navn").fill("Ann Lee")
    await page.get_by_label("E-mailadresse").fill("ann.lee@")
    await page.get_by_label("Emne").fill("Elkedel")
    await page.get_by_label("Besked").fill("Den virker ikke.")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send besked").click()

    email = page.get_by_label("E-mailadresse")
    assert await email.get_attribute("aria-invalid") == "true"
    described_by = (await email.get_attribute("aria-describedby") or "").split()
    error = page.locator("#f-email-error")
    assert "f-email-error" in described_by
    shown = " ".join((await error.text_content() or "").split())
    assert shown == "Fejl: Skriv en e-mailadresse som navn@eksempel.dk."
    assert await error.is_visible()
    # The error sits in the same field group as its input.
    assert await page.locator(".field.invalid").filter(has=email).count() == 1
    assert await page.locator(".field.invalid").count() == 1
    assert await email.input_value() == "ann.lee@"
    assert await page.get_by_label("Navn").input_value() == "Ann Lee"
    assert await page.get_by_label("Besked").input_value() == "Den virker ikke."
    assert await page.locator(".summary a").inner_text() == (
        "E-mailadresse: Skriv en e-mailadresse som navn@eksempel.dk."
    )

    await email.fill("ann.lee@example.com")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send besked").click()
    reference = (await page.locator("#reference").inner_text()).strip()
    [case] = bodies(await collect(amqp, form_daemon.names.default, expected=1))
    assert (case["id"], case["language"]) == (reference, "da")


@pytest.fixture
async def kb_daemon(make_daemon: Callable[..., LocalDaemon]) -> DaemonBase:
    extra = CONTACT_SETTINGS + f'\n[kb]\npath = "{EXAMPLE_KB}"\n'
    running = make_daemon(extra=extra).start()
    await running.wait_ready()
    return running


async def fill_in(page: Page, url: str, subject: str, message: str) -> None:
    await page.goto(f"{url}/contact")
    await page.get_by_label("Name").fill("Ann Lee")
    await page.get_by_label("Email address").fill("ann.lee@example.com")
    await page.get_by_label("Subject").fill(subject)
    await page.get_by_label("Message").fill(message)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send message").click()


async def test_self_service_offers_articles_and_yes_opens_no_case(
    kb_daemon: DaemonBase, page: Page, amqp: AbstractChannel, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill_in(page, kb_daemon.url, "Forgot my password", "I cannot log in, forgot password")
    heading = page.get_by_role("heading", level=1)
    assert await heading.inner_text() == "Does one of these answer your question?"
    first = page.locator("li.article").first
    assert await first.get_by_role("link").inner_text() == "Reset your password"
    assert await first.get_by_role("link").get_attribute("href") == (
        "https://help.example.com/articles/reset-password"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    offered = ARTIFACTS / "contact-self-service.png"
    await page.screenshot(path=str(offered), full_page=True)
    await first.get_by_label("If it helped, tell us in one line how (optional)").fill(
        "The reset link worked"
    )
    async with page.expect_navigation():
        await first.get_by_role("button", name="Yes, that solved it").click()
    assert await heading.inner_text() == "Glad that helped"
    solved = ARTIFACTS / "contact-self-service-solved.png"
    await page.screenshot(path=str(solved), full_page=True)
    with capsys.disabled():
        print(f"\nself-service screenshots: {offered}, {solved}")
    assert offered.stat().st_size > 10_000 and solved.stat().st_size > 5_000
    await kb_daemon.settled(2, "kb-events")  # shown, then accepted
    assert await collect(amqp, kb_daemon.names.default, 0) == []


async def test_self_service_no_sends_the_message_as_written(
    kb_daemon: DaemonBase, page: Page, amqp: AbstractChannel
) -> None:
    await fill_in(page, kb_daemon.url, "Refund", "I was charged twice for my order.")
    assert await page.locator("li.article").count() >= 1
    async with page.expect_navigation():
        await page.get_by_role("button", name="No, send my message").click()
    assert await page.get_by_role("heading", level=1).inner_text() == (
        "Thank you, we have your message"
    )
    reference = (await page.locator("#reference").inner_text()).strip()
    [case] = bodies(await collect(amqp, kb_daemon.names.default, expected=1))
    assert (case["id"], case["subject"]) == (reference, "Refund")
    assert case["text"] == "I was charged twice for my order."
    assert case["kb"]["suggestions"][0]["id"] == "refunds"
