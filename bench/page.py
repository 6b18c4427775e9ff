"""First-page render time of the researcher web page in headless Chromium.

Measures, for a fresh browser context each round (no cache), the time from navigation to
the first result page being rendered: `#results` no longer busy and `#total` shown.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ("/", "/?sample_type=Plasma&sex=female", "/?icd10=C50&country=DE")


def measure_page(base_url: str, rounds: int = 5) -> dict[str, Any]:
    """Median and worst first-page render of a few landing URLs, in milliseconds."""
    if not CHROMIUM.exists():
        return {"error": f"Chromium not installed at {CHROMIUM}"}
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for _ in range(rounds):
                for path in PAGES:
                    context = browser.new_context()
                    page = context.new_page()
                    start = time.perf_counter()
                    page.goto(base_url + path)
                    page.wait_for_selector("#results[aria-busy='false'] #total", timeout=30_000)
                    times.append((time.perf_counter() - start) * 1000)
                    context.close()
        finally:
            browser.close()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
        "n": len(times),
    }
