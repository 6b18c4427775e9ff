"""Biobank and collection cards in /v1/search: references hold, lone biobanks are findable,
and every declared collection field (size, subjects, age range) reaches the API.

Two federations: the BBMRI-ERIC Directory EMX2 demo export imported by a real node
(node.importing) and harvested by the catalogue; and a NodeSimulator publishing records
whose references point at records it never published.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.harvest import Harvester
from federation.servers import live_server
from node.app import create_app as create_node_app
from node.importing.importer import run_import
from node.settings import NodeSettings
from tests.catalogue.conftest import make_settings
from tests.catalogue.simulator import NodeSimulator, exact_group
from tests.node.node_support import make_home
from tests.support import external_data

DEMO = "molgenis-emx2-directory/data/biobank-directory/demo"
LONE = "bbmri-eric:ID:NL_test"  # a biobank of the demo export with no collections
DE_BB = "bbmri-eric:ID:DE_biobank1"
COLL1 = "bbmri-eric:ID:DE_biobank1:collection:coll1"


def _serve(stack: ExitStack, db_url: str, tmp: Path, nodes: list[tuple[str, str, Any]]) -> str:
    """Enrol and harvest nodes given as (url, verifier key, descriptor or None), then serve
    the catalogue; returns its URL."""
    settings = make_settings(db_url, tmp / "cat-home")

    def harvest() -> list[Any]:
        ctx = build_context(settings)
        for url, vkey, descriptor in nodes:
            enrol(ctx.engine, ctx.key, url, vkey, descriptor)
        outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run()
        ctx.engine.dispose()
        return list(outcomes)

    # In a worker thread: Playwright's sync API may own this thread's event loop, and
    # enrolment and harvest run their own (asyncio.run).
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcomes = pool.submit(harvest).result()
    assert all(o.ok for o in outcomes), outcomes
    return str(stack.enter_context(live_server(create_app(settings))).url)


def get(client: httpx.Client, **params: Any) -> dict[str, Any]:
    resp = client.get("/v1/search", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# -- the Directory demo export, imported by a real node ------------------------------------


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    external = external_data()
    tmp = tmp_path_factory.mktemp("cards-directory")
    home, vkey = make_home(tmp, records=False)
    files = [external / DEMO / n for n in ("Biobanks.csv", "Collections.csv", "Persons.csv")]
    with ThreadPoolExecutor(max_workers=1) as pool:
        report = pool.submit(run_import, home, files, fmt="directory").result()
    assert report.problems == [] and report.published == {"biobank": 3, "collection": 3}
    with ExitStack() as stack:
        node = stack.enter_context(live_server(create_node_app(NodeSettings(home=home.path))))
        descriptor = httpx.get(f"{node.url}/.well-known/biobank-node").json()
        db_url = f"sqlite:///{tmp / 'catalogue.db'}"
        url = _serve(stack, db_url, tmp, [(node.url, vkey, descriptor)])
        yield stack.enter_context(httpx.Client(base_url=url, timeout=10))


def test_biobank_without_collections_is_findable(directory: httpx.Client) -> None:
    body = get(directory)
    ids = {b["id"]: b for b in body["biobanks"]["items"]}
    assert set(ids) == {DE_BB, "bbmri-eric:ID:NL_biobank2", LONE}
    lone = ids[LONE]
    assert lone["published"] is True and lone["collections"] == 0
    assert lone["name"] and lone["country"] == "NL"
    assert lone["samples"] == {"min": 0, "max": 0}
    assert ids["bbmri-eric:ID:NL_biobank2"]["collections"] == 2
    by_id = get(directory, biobank=LONE)
    assert [b["id"] for b in by_id["biobanks"]["items"]] == [LONE]
    assert by_id["collections"]["items"] == []
    nl = {b["id"] for b in get(directory, country="NL")["biobanks"]["items"]}
    assert nl == {"bbmri-eric:ID:NL_biobank2", LONE}
    assert LONE not in {b["id"] for b in get(directory, country="DE")["biobanks"]["items"]}


def test_lone_biobank_does_not_match_sample_filters(directory: httpx.Client) -> None:
    for params in (
        {"sample_type": "Serum"},
        {"age_min": 1},
        {"icd10": "C50"},
        {"collection": COLL1},
    ):
        ids = {b["id"] for b in get(directory, **params)["biobanks"]["items"]}
        assert LONE not in ids, params
    # with another biobank's id it is not listed either
    assert [b["id"] for b in get(directory, biobank=DE_BB)["biobanks"]["items"]] == [DE_BB]


def test_declared_collection_fields_reach_the_card(directory: httpx.Client) -> None:
    cols = {c["id"]: c for c in get(directory)["collections"]["items"]}
    one = cols[COLL1]
    assert one["declared_size"] == 1333 and one["subjects"] == 600
    assert one["age"] == {"min": 2, "max": 88, "unit": "years"}
    assert one["published"] is True and one["biobank_published"] is True
    assert one["name"] == "Collection1 of biobank1" and one["acronym"] == "coll1"
    assert one["count_source"] == "declared" and one["samples"] is None
    coll2 = cols["bbmri-eric:ID:NL_biobank2:collection:coll2"]
    assert (coll2["declared_size"], coll2["subjects"]) == (11000, 9000)
    assert coll2["age"] == {"min": 0, "max": 90, "unit": "years"}


def test_openapi_documents_the_new_fields(directory: httpx.Client) -> None:
    schemas = directory.get("/openapi.json").json()["components"]["schemas"]
    col = schemas["CollectionItem"]["properties"]
    assert {"subjects", "age", "declared_size", "published", "biobank_published"} <= set(col)
    assert {"published", "collections"} <= set(schemas["BiobankItem"]["properties"])


# -- references to records the node does not publish ---------------------------------------

GHOST_BB = "bbmri-eric:ID:DE_GHOST"  # named by records, never published
ORPHAN_COL = "bbmri-eric:ID:DE_GHOST:collection:orphan"
GHOST_COL = "bbmri-eric:ID:DE_SIM:collection:ghost"
SIM_BB = "bbmri-eric:ID:DE_SIM"
GONE_BB = "bbmri-eric:ID:DE_GONE"  # published, then withdrawn
GONE_COL = "bbmri-eric:ID:DE_GONE:collection:left"


def _dangling() -> NodeSimulator:
    """A node publishing: a biobank with one collection and one group; a collection whose
    biobank record it never publishes; groups of a collection it never publishes."""
    sim = NodeSimulator("dangling.example/biobank-node", country="DE", k=10)
    sim.populate(1, biobank=SIM_BB, collection="bbmri-eric:ID:DE_SIM:collection:main")
    sim.publish(
        "collection",
        {
            "id": ORPHAN_COL,
            "biobank": GHOST_BB,
            "name": "Orphan collection",
            "size": 40,
            "number_of_subjects": 12,
            "age": {"min": 6, "max": 18, "unit": "months"},
            "contact": {"email": "orphan@example.org"},
        },
    )
    sim.publish("biobank", {"id": GONE_BB, "name": "Gone", "contact": {"email": "g@example.org"}})
    sim.publish("collection", {"id": GONE_COL, "biobank": GONE_BB, "name": "Left behind"})
    sim.withdraw("biobank", GONE_BB)
    sim.publish(
        "sample-group",
        exact_group(900, biobank=SIM_BB, collection=GHOST_COL, samples=20, donors=10),
    )
    return sim


@pytest.fixture(scope="module")
def dangling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("cards-dangling")
    sim = _dangling()
    with ExitStack() as stack:
        sim.url = stack.enter_context(live_server(sim.app())).url
        db_url = f"sqlite:///{tmp / 'catalogue.db'}"
        url = _serve(stack, db_url, tmp, [(sim.url, sim.verifier_key, sim.descriptor())])
        yield stack.enter_context(httpx.Client(base_url=url, timeout=10))


def test_collection_of_unpublished_biobank_is_marked(dangling: httpx.Client) -> None:
    body = get(dangling)
    cols = {c["id"]: c for c in body["collections"]["items"]}
    orphan = cols[ORPHAN_COL]
    assert orphan["biobank"] == GHOST_BB and orphan["biobank_published"] is False
    assert orphan["published"] is True and orphan["name"] == "Orphan collection"
    assert orphan["age"] == {"min": 6, "max": 18, "unit": "months"}
    assert orphan["subjects"] == 12 and orphan["declared_size"] == 40
    bbs = {b["id"]: b for b in body["biobanks"]["items"]}
    assert bbs[GHOST_BB]["published"] is False and bbs[GHOST_BB]["name"] is None
    assert bbs[GHOST_BB]["collections"] == 1
    assert bbs[SIM_BB]["published"] is True and bbs[SIM_BB]["name"]


def test_withdrawn_biobank_marks_its_collection(dangling: httpx.Client) -> None:
    body = get(dangling)
    left = {c["id"]: c for c in body["collections"]["items"]}[GONE_COL]
    assert left["biobank_published"] is False and left["name"] == "Left behind"
    gone = {b["id"]: b for b in body["biobanks"]["items"]}[GONE_BB]
    assert gone["published"] is False and gone["name"] is None and gone["contact"] is None


def test_groups_of_unpublished_collection_are_marked(dangling: httpx.Client) -> None:
    cols = {c["id"]: c for c in get(dangling)["collections"]["items"]}
    ghost = cols[GHOST_COL]
    assert ghost["published"] is False and ghost["name"] is None
    assert ghost["biobank"] == SIM_BB and ghost["biobank_published"] is True
    assert ghost["samples"] == {"min": 20, "max": 20} and ghost["count_source"] == "groups"
    assert cols["bbmri-eric:ID:DE_SIM:collection:main"]["published"] is True


def test_age_filter_reads_the_declared_unit(dangling: httpx.Client) -> None:
    """6 to 18 months is 0.5 to 1.5 years: age_max=1 keeps it, age_min=2 drops it."""
    assert ORPHAN_COL in {c["id"] for c in get(dangling, age_max=1)["collections"]["items"]}
    assert ORPHAN_COL not in {c["id"] for c in get(dangling, age_min=2)["collections"]["items"]}


# -- the cards in a real browser -----------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium (skips when absent, fails when CI=true)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM}")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def _cards(chromium: Any, url: str, locale: str) -> dict[str, str]:
    """The text of every biobank and collection card the page shows for an empty search."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/")
        page.wait_for_function(
            "() => { const r = document.getElementById('results');"
            " return r && r.dataset.query === '' && r.getAttribute('aria-busy') === 'false'; }"
        )
        texts: dict[str, str] = page.locator(
            "article[data-collection], article[data-biobank]"
        ).evaluate_all(
            "cs => Object.fromEntries(cs.map(c =>"
            " [c.dataset.collection || c.dataset.biobank, c.innerText]))"
        )
        assert errors == [], errors
        return texts
    finally:
        context.close()


def test_cards_show_markers_and_declared_fields(chromium: Any, dangling: httpx.Client) -> None:
    en = _cards(chromium, str(dangling.base_url).rstrip("/"), "en-GB")
    assert GHOST_COL in en[GHOST_COL] and "collection not published" in en[GHOST_COL]
    assert "Orphan collection" in en[ORPHAN_COL] and "biobank not published" in en[ORPHAN_COL]
    assert "6–18 months" in en[ORPHAN_COL] and "Donors (declared)\n12" in en[ORPHAN_COL]
    assert GHOST_BB in en[GHOST_BB] and "biobank not published" in en[GHOST_BB]
    assert all("null" not in text and "undefined" not in text for text in en.values()), en
    zh = _cards(chromium, str(dangling.base_url).rstrip("/"), "zh-CN")
    assert "样本集未发布" in zh[GHOST_COL] and "生物样本库未发布" in zh[ORPHAN_COL]
    assert "6–18 月龄" in zh[ORPHAN_COL]


def test_lone_biobank_card(chromium: Any, directory: httpx.Client) -> None:
    en = _cards(chromium, str(directory.base_url).rstrip("/"), "en-GB")
    assert "No collections published yet" in en[LONE]
    assert "2–88 years" in en[COLL1] and "Donors (declared)\n600" in en[COLL1]
