"""What every browser test needs: the ledger served over HTTP, and a page of Debian's headless
Chromium that may ask nothing of any other host (the console makes no outside requests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.harness import Ledger, isolated_settings, running_ledger
from tests.integration.served import http_server

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture
async def served(
    kafka_bootstrap: str, mongodb_uri: str, api_token: str
) -> AsyncIterator[tuple[Ledger, str]]:
    """The ledger with `api_token` required, and the base URL of its HTTP API."""
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, api_tokens=api_token)
    async with running_ledger(settings) as ledger, http_server(ledger.service) as url:
        yield ledger, url


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    # Imported here: a test module checks first that Chromium is there (and skips or fails).
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        blocked: list[str] = []
        page = await context.new_page()
        page.on(
            "request",
            lambda r: None if r.url.startswith("http://127.0.0.1") else blocked.append(r.url),
        )
        yield page
        assert not blocked, f"the console requested something elsewhere: {blocked}"
        await browser.close()
