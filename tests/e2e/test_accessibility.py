"""axe-core (vendored: tests/e2e/assets/axe-core) on every page of the web app, in English and
Chinese: no WCAG 2.0/2.1 A or AA violation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Site
from tests.e2e.test_web import id_part, open_search, wait_results

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "assets" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture()
def browser_context(chromium_browser: Any) -> Iterator[Any]:
    """As conftest's, but letting the test inject axe-core past the page's CSP (script-src
    'self'); the page itself runs under the same policy as ever."""
    context = chromium_browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", bypass_csp=True
    )
    try:
        yield context
    finally:
        context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result: list[dict[str, Any]] = page.evaluate(
        """async tags => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))
            .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.map(n => n.target.join(' '))}))""",
        WCAG_21_AA,
    )
    return result


def in_both_languages(page: Any, ready: Callable[[], None]) -> dict[str, list[dict[str, Any]]]:
    """The violations in English, then after switching to Chinese (and back)."""
    ready()
    found = {"en": axe_violations(page)}
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    ready()
    found["zh"] = axe_violations(page)
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    return found


def no_violations(found: dict[str, list[dict[str, Any]]]) -> None:
    assert found == {"en": [], "zh": []}, json.dumps(found, ensure_ascii=False, indent=1)


def test_axe_finds_what_it_should(page: Any, web_site: Site) -> None:
    """The check is live: a control with aria-expanded but no role that supports it fails."""
    open_search(page, web_site)
    page.evaluate("document.getElementById('f-icd10').setAttribute('aria-expanded', 'false')")
    assert "aria-allowed-attr" in {v["id"] for v in axe_violations(page)}


def test_search_page_with_filters_suggestions_and_basket(page: Any, web_site: Site) -> None:
    open_search(page, web_site)
    item = web_site.api("/v1/search")["collections"]["items"][0]
    page.locator(f"#basket-{id_part(item['provenance']['node'])}-{id_part(item['id'])}").click()
    page.locator(f"#basket li[data-basket='{item['id']}']").wait_for()
    chapter = str(web_site.api("/v1/search")["facets"]["diagnosis_chapter"][0]["code"])
    words = next(
        c for c in web_site.api("/v1/codelists/icd10-chapter")["codes"] if c["code"] == chapter
    )["en"]
    page.locator("#f-icd10").fill(words.split()[0].lower())
    page.locator("#f-icd10-list button").first.wait_for()
    no_violations(in_both_languages(page, lambda: wait_results(page, "")))


def test_search_page_table_view_and_no_results(page: Any, web_site: Site) -> None:
    open_search(page, web_site)
    page.locator("#view-table").click()
    no_violations(in_both_languages(page, lambda: wait_results(page, "")))
    open_search(page, web_site, "age_min=150")
    page.locator(".notice").wait_for()
    no_violations(in_both_languages(page, lambda: wait_results(page, "age_min=150")))


def test_bad_filter_page(page: Any, web_site: Site) -> None:
    page.goto(f"{web_site.url}/?age_min=abc")
    no_violations(in_both_languages(page, lambda: page.get_by_role("alert").wait_for()))


def test_node_list_and_node_pages(page: Any, web_site: Site) -> None:
    page.goto(f"{web_site.url}/nodes")
    no_violations(in_both_languages(page, lambda: page.locator("#nodes-table").wait_for()))
    origin = web_site.api("/v1/nodes")["nodes"][0]["origin"]
    page.goto(f"{web_site.url}/nodes/{origin}")
    no_violations(in_both_languages(page, lambda: page.locator("#node-origin").wait_for()))
    page.goto(f"{web_site.url}/nodes/nobody.example/biobank-node")
    no_violations(in_both_languages(page, lambda: page.get_by_role("alert").wait_for()))


def test_verification_page(page: Any, web_site: Site) -> None:
    page.goto(f"{web_site.url}/verification")
    no_violations(in_both_languages(page, lambda: page.locator("section.panel").first.wait_for()))
