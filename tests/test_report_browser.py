"""The report in a real browser: Debian's headless Chromium (Playwright) opens the HTML file
from disk, fetches nothing else, and shows every section with its charts.

The screenshot is kept at test-artifacts/voice-of-the-customer.png (git-ignored).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from dispatcher.database import create_engine, upgrade
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS
from tests.daemon import run_ingest
from tests.report_traffic import generate

SECTIONS = [
    "Contacts",
    "Cases",
    "Recurring problems",
    "Repeat contacts",
    "Responses against targets",
    "Closed too early",
    "Escalations",
    "Incidents",
    "Self-service",
]

pytestmark = BROWSER_TEST_MARKS


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/store.db"
    engine = create_engine(url)
    try:
        upgrade(engine)
        generate().write(engine)
    finally:
        engine.dispose()
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "{url}"\n')
    out = tmp_path / "voice of the customer.html"  # a name a person would give it
    args = ("--since", "2026-03-01", "--until", "2026-03-31", "--tz", "Europe/Copenhagen")
    done = run_ingest(settings, "report", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    return out


async def test_the_report_opens_from_disk_with_every_section_and_chart(
    browser: Browser, report_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = await context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(report_file.as_uri())
        await page.wait_for_load_state("load")

        assert requested == [report_file.as_uri()]  # nothing fetched besides the file
        assert (await page.title()).startswith("Voice of the customer: 2026-03-01 to 2026-03-31")
        headings = await page.get_by_role("heading", level=2).all_inner_texts()
        assert headings == SECTIONS
        charts = page.locator("figure svg")
        assert await charts.count() >= 12
        for index in range(await charts.count()):
            box = await charts.nth(index).bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100, index
        # A table a person reads: the total row of contacts by channel, and a recurring problem.
        total = page.locator('table[data-table="contacts_by_channel"] tr.total td').first
        assert await total.inner_text() == "total"
        problems = page.locator('table[data-table="recurring_problems"] tbody tr')
        assert await problems.count() >= 5
        await page.get_by_role("link", name="Recurring problems").click()
        assert page.url.endswith("#problems")

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "voice-of-the-customer.png"
        await page.goto(report_file.as_uri())
        await page.screenshot(path=str(screenshot), full_page=True)
        with capsys.disabled():
            print(f"\nreport screenshot: {screenshot}")
        assert screenshot.stat().st_size > 100_000
    finally:
        await context.close()
