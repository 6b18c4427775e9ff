"""Issue 16 item 9: /docs renders Swagger UI from packaged assets under its CSP."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from catalogue.app import create_app
from catalogue.settings import Settings
from federation.servers import live_server


@pytest.mark.browser
def test_docs_render_under_their_csp_without_violations(browser_context: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        app = create_app(Settings(database_url=f"sqlite:///{home / 'c.db'}", home=home))
        with live_server(app) as server:
            page = browser_context.new_page()
            messages: list[str] = []
            page.on("console", lambda m: messages.append(m.text))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() > 20  # every operation listed
            assert not [m for m in messages if "Content Security Policy" in m]
            assert all(url.startswith(server.url) for url in requests), requests
