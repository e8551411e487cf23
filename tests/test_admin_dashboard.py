"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from proxy.admin.dashboard import BAR, LINE
from tests import admin_seed
from tests.fixtures.admin import TOKEN, Admin

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="no chromium (apt-get install chromium)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium, closed after the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def _pixels(png: bytes, colour: str) -> int:
    """How many pixels of a screenshot are (nearly) ``colour``."""
    want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    raw = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(
        1 for i in range(0, len(raw), 3) if all(abs(raw[i + c] - want[c]) <= 12 for c in range(3))
    )


async def test_the_dashboard_renders_its_chart_and_searches(
    admin: Admin, browser: Any, sqlite_url: str
) -> None:
    """The page shows mode, totals, readiness and a drawn chart; the users table searches."""
    n = 600
    await admin_seed.seed(sqlite_url, n, base=time.time() - 20 * 86400, step=20 * 86400 / n)
    await admin.proxy.form_login("bob", "builder-22")
    await admin.flush()
    context = await browser.new_context(
        http_credentials={"username": "admin", "password": TOKEN},
        viewport={"width": 1000, "height": 1400},
    )
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = await page.goto(admin.url("/"))
    assert response is not None and response.status == 200
    assert await page.text_content("#mode") == "migrate"
    assert await page.text_content("#total") == str(n + 1)
    assert await page.text_content("#readiness") == "100.0%"
    assert await page.locator("#chart rect.bar").count() == 30

    png = await page.locator("#chart").screenshot()
    assert _pixels(png, BAR) > 2000, "the bars were not drawn"
    assert _pixels(png, LINE) > 300, "the cumulative line was not drawn"

    await page.fill("#q", "grace")
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    rows = await page.locator("#users tr").all_text_contents()
    assert len(rows) == 26 and all("grace" in row for row in rows[1:])
    async with page.expect_navigation():
        await page.click("#next")
    more = await page.locator("#users tr").all_text_contents()
    assert len(more) > 1 and not set(more[1:]) & set(rows[1:])
    origin = admin.url("/").rstrip("/")
    assert all(url.startswith(origin) for url in requested), requested  # no CDN, nothing else
    await context.close()


async def test_the_dashboard_refuses_a_browser_without_the_token(
    admin: Admin, browser: Any
) -> None:
    """A browser with a wrong Basic password is challenged and never gets the page."""
    context = await browser.new_context(http_credentials={"username": "a", "password": "nope"})
    page = await context.new_page()
    response = await page.goto(admin.url("/"))
    assert response is not None and response.status == 401
    assert "Basic" in (await response.header_value("www-authenticate") or "")
    assert await page.locator("#chart").count() == 0
    await context.close()
