"""The researcher web page in a real headless Chromium: search, language, URLs, CSV, phone."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import Site

pytestmark = pytest.mark.browser

CSV_COLUMNS = [
    "id",
    "name",
    "biobank",
    "published",
    "biobank_published",
    "samples_min",
    "samples_max",
    "count_source",
    "declared_size",
    "subjects",
    "age_min",
    "age_max",
    "age_unit",
    "use_conditions",
    "dataset_types",
    "design",
    "contact_email",
    "node",
    "checkpoint_size",
    "verified_at",
    "description",
]


def id_part(code: str) -> str:
    """The page's idPart(): a safe id fragment for a code."""
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: f"_{ord(m.group(0)):x}", code)


def shown(count: dict[str, int] | int) -> str:
    """A count as the English page shows it: the number when exact, else a range."""
    if isinstance(count, int):
        return f"{count:,}"
    if count["min"] == count["max"]:
        return f"{count['max']:,}"
    return f"{count['min']:,}–{count['max']:,}"


EN_TITLE = "between {} and {}: some groups publish only a bound (fewer than k donors)"
ZH_TITLE = "介于 {} 与 {} 之间：部分样本组只公布上限（捐献者少于 k 人）"


def open_search(page: Any, site: Site, query: str = "") -> None:
    page.goto(f"{site.url}/{'?' + query if query else ''}")
    wait_results(page, query)


def wait_results(page: Any, query: str) -> None:
    """Wait until the results on screen are those of `query` (the page marks what it rendered)."""
    page.wait_for_function(
        "q => { const r = document.getElementById('results');"
        " return r && r.dataset.query === q && r.getAttribute('aria-busy') === 'false'; }",
        arg=query,
    )


def facet_code(site: Site, facet: str, params: Any = None) -> str:
    """The code of `facet` with the largest count."""
    rows = site.api("/v1/search", params)["facets"][facet]
    assert rows, f"the test data has no {facet} facet"
    return str(rows[0]["code"])


def test_search_from_landing_through_filters_to_a_card(
    page: Any, web_site: Site, output_dir: Path
) -> None:
    open_search(page, web_site)
    everything = web_site.api("/v1/search")
    assert page.locator("#total").inner_text() == f"{shown(everything['total'])} samples match"
    page.screenshot(path=str(output_dir / "web-landing.png"))

    stype = facet_code(web_site, "sample_type")
    page.locator(f"#f-sample_type-{id_part(stype)}").check()
    wait_results(page, urlencode({"sample_type": stype}))
    sex = facet_code(web_site, "sex", {"sample_type": stype})
    page.locator(f"#f-sex-{id_part(sex)}").check()
    query = urlencode([("sample_type", stype), ("sex", sex)])
    wait_results(page, query)

    assert page.url.endswith(f"/?{query}")
    expected = web_site.api("/v1/search", [("sample_type", stype), ("sex", sex)])
    assert expected["total"] != everything["total"] or len(everything["facets"]["sex"]) == 1
    assert page.locator("#total").inner_text() == f"{shown(expected['total'])} samples match"
    first = expected["collections"]["items"][0]
    card = page.locator(f"article[data-collection='{first['id']}']")
    card.wait_for()
    assert first["name"] in card.locator("h4").inner_text()
    provenance = card.locator(".provenance").inner_text()
    assert provenance.startswith(f"Source {first['provenance']['node']}")
    email = (first.get("contact") or {}).get("email")
    if email:
        assert card.locator(f"a[href='mailto:{email}']").count() == 1
    shown_cards = page.locator("#collection-cards article").count()
    assert shown_cards == len(expected["collections"]["items"])
    page.screenshot(path=str(output_dir / "web-results.png"))


def test_icd10_found_by_words_and_by_code(page: Any, web_site: Site) -> None:
    open_search(page, web_site)
    chapters = web_site.api("/v1/search")["facets"]["diagnosis_chapter"]
    assert chapters, "the test data has no diagnoses"
    chapter = str(chapters[0]["code"])
    words = next(
        c for c in web_site.api("/v1/codelists/icd10-chapter")["codes"] if c["code"] == chapter
    )["en"]
    page.locator("#f-icd10").fill(words.split()[0].lower())
    page.locator(f"#f-icd10-list button[data-value='{chapter}']").wait_for()
    page.locator(f"#f-icd10-list button[data-value='{chapter}']").click()
    wait_results(page, urlencode({"icd10": chapter}))
    assert page.locator(f"#f-chapter-{id_part(chapter)}").is_checked()
    expected = web_site.api("/v1/search", {"icd10": chapter})["total"]
    assert page.locator("#total").inner_text() == f"{shown(expected)} samples match"

    page.locator("#f-icd10").fill("c50")
    page.locator("#f-icd10").press("Enter")
    wait_results(page, urlencode([("icd10", chapter), ("icd10", "C50")]))
    assert page.locator("#rm-icd10-C50").get_attribute("aria-label") == "Remove filter: C50"


def test_language_switch_changes_labels_and_survives_reload(
    page: Any, web_site: Site, output_dir: Path
) -> None:
    open_search(page, web_site)
    assert page.locator("html").get_attribute("lang") == "en"
    stype = facet_code(web_site, "sample_type")
    labels = {c["code"]: c for c in web_site.api("/v1/codelists/sample-type")["codes"]}
    checkbox_label = page.locator(f"label[for='f-sample_type-{id_part(stype)}'] .opt-label")
    assert checkbox_label.inner_text().lower() == labels[stype]["en"].lower()

    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.locator(".site-nav").inner_text().split("\n")[0] == "查找样本"
    assert page.locator("#g-sample_type legend").inner_text() == "样本类型"
    assert checkbox_label.inner_text() == labels[stype]["zh"]
    assert page.locator("#total").inner_text().startswith("共 ")
    assert page.get_by_role("button", name="中文").get_attribute("aria-pressed") == "true"
    page.screenshot(path=str(output_dir / "web-chinese.png"))

    page.reload()
    wait_results(page, "")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#apply").inner_text() == "搜索"
    assert page.title() == "生物样本库联邦目录"
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.locator("#apply").inner_text() == "Search"


def test_shared_url_restores_the_search_and_back_forward_work(page: Any, web_site: Site) -> None:
    stype = facet_code(web_site, "sample_type")
    country = facet_code(web_site, "country", {"sample_type": stype})
    params = [("sample_type", stype), ("country", country), ("age_min", "18")]
    query = urlencode(params)
    open_search(page, web_site, query)
    assert page.locator(f"#f-sample_type-{id_part(stype)}").is_checked()
    assert page.locator(f"#f-country-{id_part(country)}").is_checked()
    assert page.locator("#f-age_min").input_value() == "18"
    expected = web_site.api("/v1/search", params)
    assert page.locator("#total").inner_text() == f"{shown(expected['total'])} samples match"
    ids = [c["id"] for c in expected["collections"]["items"]]
    on_page = page.locator("#collection-cards article").evaluate_all(
        "cards => cards.map(c => c.dataset.collection)"
    )
    assert on_page == ids

    page.locator(f"#f-country-{id_part(country)}").uncheck()
    narrower = urlencode([("sample_type", stype), ("age_min", "18")])
    wait_results(page, narrower)
    page.go_back()
    wait_results(page, query)
    assert page.locator(f"#f-country-{id_part(country)}").is_checked()
    page.go_forward()
    wait_results(page, narrower)
    assert not page.locator(f"#f-country-{id_part(country)}").is_checked()


def expected_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as JavaScript writes it
    if isinstance(value, list):
        value = "; ".join(value)
    text = str(value)
    return f"'{text}" if isinstance(value, str) and text and text[0] in "=+-@\t\r" else text


def test_csv_export_matches_the_api(page: Any, web_site: Site, output_dir: Path) -> None:
    open_search(page, web_site)
    with page.expect_download() as info:
        page.locator("#export-csv").click()
    download = info.value
    assert download.suggested_filename.startswith("collections-")
    assert download.suggested_filename.endswith(".csv")
    target = output_dir / "web-collections.csv"
    download.save_as(str(target))
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM, so spreadsheets read UTF-8 (Chinese names)
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == CSV_COLUMNS
    items = web_site.api("/v1/search")["collections"]["items"]
    assert len(rows) == len(items) + 1
    for row, item in zip(rows[1:], items, strict=True):
        prov = item["provenance"]
        want = [
            item["id"],
            item["name"],
            item["biobank"],
            item["published"],
            item["biobank_published"],
            (item["samples"] or {}).get("min"),
            (item["samples"] or {}).get("max"),
            item["count_source"],
            item["declared_size"],
            item["subjects"],
            (item["age"] or {}).get("min"),
            (item["age"] or {}).get("max"),
            (item["age"] or {}).get("unit"),
            item["use_conditions"],
            item["dataset_types"],
            item["design"],
            (item.get("contact") or {}).get("email"),
            prov["node"],
            prov["checkpoint_size"],
            prov["verified_at"],
            item["description"],
        ]
        assert row == [expected_cell(v) for v in want], f"CSV row for {item['id']}"


def test_an_inexact_count_shows_its_range_and_what_it_means(page: Any, web_site: Site) -> None:
    """A count some bounded group adds to shows as "a–b" with a tooltip, in EN and ZH."""
    facets = web_site.api("/v1/search")["facets"]
    name, row = next(
        (name, r)
        for name in ("country", "sex", "sample_type")
        for r in facets[name]
        if r["count"]["min"] < r["count"]["max"]
    )
    open_search(page, web_site)
    count = page.locator(f"label[for='f-{name}-{id_part(str(row['code']))}'] .opt-count")
    low, high = row["count"]["min"], row["count"]["max"]
    assert count.inner_text() == shown(row["count"])
    assert count.get_attribute("title") == EN_TITLE.format(f"{low:,}", f"{high:,}")
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert count.get_attribute("title") == ZH_TITLE.format(f"{low:,}", f"{high:,}")
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")


def test_table_view_lists_the_same_collections(page: Any, web_site: Site) -> None:
    open_search(page, web_site)
    page.locator("#view-table").click()
    rows = page.locator("#collections-table tbody tr")
    items = web_site.api("/v1/search")["collections"]["items"]
    assert rows.count() == len(items)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.collection)") == [i["id"] for i in items]
    assert page.locator("#view-table").get_attribute("aria-pressed") == "true"


def test_phone_width_render(chromium_browser: Any, web_site: Site, output_dir: Path) -> None:
    context = chromium_browser.new_context(
        viewport={"width": 375, "height": 812},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        open_search(page, web_site)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.locator("details.filters-panel").get_attribute("open") is None
        page.screenshot(path=str(output_dir / "web-phone.png"), full_page=False)
        page.locator(".filters-summary").click()
        assert page.locator("#apply").is_visible()
        card = page.locator("#collection-cards article").first
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.screenshot(path=str(output_dir / "web-phone-filters.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()


def test_node_page_from_a_result(page: Any, web_site: Site, output_dir: Path) -> None:
    open_search(page, web_site)
    origin = web_site.api("/v1/search")["collections"]["items"][0]["provenance"]["node"]
    page.locator(f".nodes-strip a[data-origin='{origin}']").click()
    page.locator("#node-origin").wait_for()
    assert page.locator("#node-origin").inner_text() == origin
    status = web_site.api(f"/v1/nodes/{origin}")
    assert page.locator("#node-tree-size").inner_text() == shown(status["tree_size"])
    assert page.url.endswith(f"/nodes/{origin}")
    page.screenshot(path=str(output_dir / "web-node.png"), full_page=True)

    page.reload()
    page.locator("#node-origin").wait_for()
    assert page.locator("#node-origin").inner_text() == origin
    page.go_back()
    wait_results(page, "")
    page.get_by_role("link", name="Partner nodes").click()
    page.locator("#nodes-table").wait_for()
    listed = page.locator("#nodes-table tbody tr").count()
    assert listed == len(web_site.api("/v1/nodes")["nodes"])


def result_nodes(site: Site, params: list[tuple[str, str]]) -> set[str]:
    """The origins of every collection in the result (all pages): the contributing nodes."""
    origins: set[str] = set()
    page_no = 1
    while True:
        body = site.api(
            "/v1/search", [*params, ("page_size", "100"), ("collections_page", str(page_no))]
        )
        origins |= {c["provenance"]["node"] for c in body["collections"]["items"]}
        if page_no * 100 >= body["collections"]["total"]:
            return origins
        page_no += 1


def partners_on_page(page: Any) -> dict[str, str]:
    return dict(
        page.locator(".nodes-strip a").evaluate_all(
            "links => links.map(a => [a.getAttribute('title'), a.textContent])"
        )
    )


def test_partners_are_the_contributing_nodes_by_name(page: Any, web_site: Site) -> None:
    names = {n["origin"]: n["name"] for n in web_site.api("/v1/nodes")["nodes"]}
    assert all(names.values()) and set(names.values()) != set(names)
    open_search(page, web_site)
    assert partners_on_page(page) == {o: names[o] for o in result_nodes(web_site, [])}
    country = facet_code(web_site, "country")
    params = [("country", country)]
    wanted = result_nodes(web_site, params)
    assert 0 < len(wanted) < len(names)  # one country's partners, not all of them
    open_search(page, web_site, urlencode(params))
    assert partners_on_page(page) == {o: names[o] for o in wanted}
    assert page.locator(".nodes-strip h3").inner_text() == "Partners in these results"
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.locator(".nodes-strip h3").inner_text() == "结果涉及的合作方"
    assert partners_on_page(page) == {o: names[o] for o in wanted}
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")


def chart_rows(page: Any, key: str) -> list[str]:
    return list(
        page.locator(f"figure[data-chart='{key}'] g.bar title").evaluate_all(
            "ts => ts.map(t => t.textContent.split(' (')[0])"
        )
    )


def test_charts_show_the_matched_samples_and_the_filter_list_the_rest(
    page: Any, web_site: Site
) -> None:
    facets = web_site.api("/v1/search")["facets"]["sample_type"]
    assert len(facets) >= 2, "the test data has one sample type only"
    labels = {c["code"]: c["en"] for c in web_site.api("/v1/codelists/sample-type")["codes"]}
    chosen = str(facets[0]["code"])
    query = urlencode({"sample_type": chosen})
    open_search(page, web_site, query)
    answer = web_site.api("/v1/search", {"sample_type": chosen})
    # the chart: the chosen type alone, with the matched samples (= the total)
    assert chart_rows(page, "sample_type") == [f"{labels[chosen]}: {shown(answer['total'])}"]
    countries = [f"{r['code']}: {shown(r['count'])}" for r in answer["counts"]["country"]]
    assert len(chart_rows(page, "country")) == len(countries)
    # the filter list keeps the other types' counts
    other = next(r for r in answer["facets"]["sample_type"] if r["code"] != chosen)
    count = page.locator(f"label[for='f-sample_type-{id_part(str(other['code']))}'] .opt-count")
    assert count.inner_text() == shown(other["count"])
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    zh = {c["code"]: c["zh"] for c in web_site.api("/v1/codelists/sample-type")["codes"]}
    assert chart_rows(page, "sample_type") == [f"{zh[chosen]}: {shown(answer['total'])}"]
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")


def test_unknown_node_says_so(page: Any, web_site: Site) -> None:
    page.goto(f"{web_site.url}/nodes/nobody.example/biobank-node")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "nobody.example/biobank-node" in alert.inner_text()


def test_verification_page_in_both_languages(page: Any, web_site: Site, output_dir: Path) -> None:
    open_search(page, web_site)
    page.get_by_role("link", name="How verification works").click()
    page.wait_for_url("**/verification")
    assert page.locator("h1").inner_text() == "How verification works"
    assert page.locator("section.panel").count() == 5
    page.screenshot(path=str(output_dir / "web-verification.png"), full_page=True)
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.querySelector('h1').textContent === '验证原理'")
    page.screenshot(path=str(output_dir / "web-verification-zh.png"), full_page=True)


def test_every_control_is_labelled_and_keyboard_reachable(page: Any, web_site: Site) -> None:
    open_search(page, web_site)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map(el => el.id || el.outerHTML)""")
    assert unlabelled == []
    nameless = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter(b => !(b.textContent.trim() || b.getAttribute('aria-label')))
        .map(b => b.outerHTML)""")
    assert nameless == []
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    stype = facet_code(web_site, "sample_type")
    checkbox = page.locator(f"#f-sample_type-{id_part(stype)}")
    checkbox.focus()
    page.keyboard.press("Space")
    wait_results(page, urlencode({"sample_type": stype}))
    # re-rendering keeps the keyboard user where they were
    assert page.evaluate("document.activeElement.id") == f"f-sample_type-{id_part(stype)}"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_bad_filter_value_shows_the_api_reason(page: Any, web_site: Site) -> None:
    page.goto(f"{web_site.url}/?age_min=abc")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "age_min" in alert.inner_text()


def test_runs_against_the_real_catalogue(web_site: Site) -> None:
    origins = {n["origin"] for n in web_site.api("/v1/nodes")["nodes"]}
    assert len(origins) == 3


def test_only_this_biobank_filters_by_the_node_that_publishes_it(page: Any, web_site: Site) -> None:
    """A biobank id belongs to its node: the card's button asks for that node's biobank."""
    open_search(page, web_site)
    first = web_site.api("/v1/search")["biobanks"]["items"][0]
    assert first["origin"] == first["provenance"]["node"]
    card = page.locator(f"article[data-biobank='{first['id']}']").first
    card.locator("button.secondary").click()
    query = urlencode([("biobank", first["id"]), ("node", first["origin"])])
    wait_results(page, query)
    assert page.url.endswith(f"/?{query}")
    expected = web_site.api("/v1/search", [("biobank", first["id"]), ("node", first["origin"])])
    assert page.locator("#total").inner_text() == f"{shown(expected['total'])} samples match"
    assert page.locator(f"#rm-node-{id_part(first['origin'])}").count() == 1  # a removable chip
