"""Researchers see it (issue 19 item 2): the page tells when results changed since they loaded.

Real headless Chromium, a real node pushing its checkpoint to a real catalogue: after an
import, a notice (English, then Chinese) with a refresh button appears on a page whose
results changed; a page whose results did not change shows none; nothing reloads by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.catalogue.push_support import Site, total, wait_for

NOTICE = "#fresh .fresh-notice"


@pytest.fixture
def pushing_site(tmp_path: Path) -> Iterator[tuple[Site, str, ThreadPoolExecutor]]:
    """A node that notifies a catalogue polled by its page every 0.2 s (built in a worker
    thread: Playwright owns this thread's event loop)."""
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:

        def build() -> tuple[Site, str]:
            site = Site(tmp_path, f"sqlite:///{tmp_path / 'cat.db'}", stack, web_poll=0.2)
            _app, cat = site.catalogue(schedule=True)  # one harvest at start, then hourly
            wait_for(lambda: total(cat.url) == 30, 30)
            site.add_target(cat.url)
            return site, cat.url

        site, url = pool.submit(build).result()
        yield site, url, pool


def _results(page: Any, url: str, query: str) -> None:
    page.goto(f"{url}/{query}")
    page.wait_for_function(
        "() => { const r = document.getElementById('results');"
        " return r && r.getAttribute('aria-busy') === 'false'"
        " && document.getElementById('total'); }"
    )


def test_page_tells_of_changed_results_and_refreshes_only_when_asked(
    page: Any,
    browser_context: Any,
    pushing_site: tuple[Site, str, ThreadPoolExecutor],
    output_dir: Path,
) -> None:
    site, url, pool = pushing_site
    _results(page, url, "?icd10=C50")
    assert page.locator("#total").inner_text() == "30 samples match"
    # the test node holds no male donor's plasma: neither these results nor their facets
    # (each counting the other filter) change
    unaffected = browser_context.new_page()
    _results(unaffected, url, "?sex=male&sample_type=Plasma")
    unaffected_total = unaffected.locator("#total").inner_text()
    page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads
    assert page.locator(NOTICE).count() == 0

    pool.submit(site.imported, 10).result()  # 10 new donors, pushed to the catalogue

    page.locator(NOTICE).wait_for(timeout=15_000)
    notice = page.locator(NOTICE).inner_text()
    assert "these results have changed since you loaded them" in notice
    assert page.locator("#total").inner_text() == "30 samples match"  # not replaced by itself
    assert page.evaluate("window.loadedOnce") is True
    page.screenshot(path=str(output_dir / "web-fresh-notice.png"))

    page.locator("[data-lang='zh']").click()
    assert "自您加载以来，这些结果已发生变化" in page.locator(NOTICE).inner_text()
    page.locator(f"{NOTICE} button").click()
    page.wait_for_function(
        "() => document.getElementById('total')?.innerText.includes('40')", timeout=10_000
    )
    assert page.locator(NOTICE).count() == 0
    assert page.evaluate("window.loadedOnce") is True  # refreshed in place, not reloaded

    page.wait_for_timeout(1000)  # several polls: the version moved, these results did not
    assert unaffected.locator(NOTICE).count() == 0
    assert unaffected.locator("#total").inner_text() == unaffected_total
    unaffected.close()
