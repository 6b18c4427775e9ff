"""Browser fixtures for the web page tests: headless Chromium (Playwright) and a catalogue.

`web_site` is a real catalogue (catalogue.app.create_app) with real nodes harvested on
loopback, built by `federation.build_federation`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation import build_federation

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    """The catalogue under test: its base URL."""

    url: str

    def api(self, path: str, params: Any = None) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """One headless Chromium for the session (skips when absent, fails when CI=true)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM}")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def browser_context(chromium_browser: Any) -> Iterator[Any]:
    """A fresh context (empty localStorage) at desktop size, English."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture()
def page(browser_context: Any) -> Iterator[Any]:
    """A page that fails the test on any uncaught script error."""
    pg = browser_context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def web_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real catalogue serving three real nodes' harvested logs (DE, IT, CN; 600 samples
    each). A federation that cannot be built fails the tests that use it."""
    workdir = tmp_path_factory.mktemp("web-federation")
    # Built in a worker thread: Playwright's sync API may already own this thread's event loop,
    # and enrolment runs its own (asyncio.run); the servers live until the module ends.
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:
        federation = pool.submit(
            stack.enter_context,
            build_federation(workdir, ("DE", "IT", "CN"), samples=600, seed=11),
        ).result()
        yield Site(url=federation.url)
