"""The request basket and the Negotiator hand-off, in a real Chromium against a real catalogue
and a local Negotiator stand-in that enforces the Negotiator's rules for a new request."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from catalogue.api.negotiator import human_readable
from catalogue.app import create_app
from catalogue.errors import FilterError
from catalogue.search.codes import Vocabulary
from federation import build_federation
from federation.servers import live_server
from tests.e2e.conftest import Site
from tests.e2e.test_web import id_part, open_search, wait_results

pytestmark = pytest.mark.browser


@dataclass
class FakeNegotiator:
    """POST /api/v3/requests as the Negotiator answers it: 400 unless `url` and
    `humanReadable` are present, `resources` is non-empty and every resource has `id` and
    `name`; a resource it does not know (when `known` is set) is refused like the real one
    refuses collections missing from its directory; else 201 with `redirectUrl`."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    known: set[str] | None = None

    def violations(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body must be a JSON object"]
        out = [f"{k} is required" for k in ("url", "humanReadable") if not body.get(k)]
        resources = body.get("resources")
        if not isinstance(resources, list) or not resources:
            out.append("resources must not be empty")
            return out
        for i, res in enumerate(resources):
            if not isinstance(res, dict) or not res.get("id") or not res.get("name"):
                out.append(f"resources[{i}] needs id and name")
            elif self.known is not None and res["id"] not in self.known:
                out.append(f"resource {res['id']} is not known to this Negotiator")
        return out

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/v3/requests")
        async def create(request: Request) -> JSONResponse:
            try:
                body = await request.json()
            except ValueError:
                body = None
            problems = self.violations(body)
            if problems:
                return JSONResponse(
                    {"title": "Bad Request", "status": 400, "detail": "; ".join(problems)},
                    status_code=400,
                )
            self.received.append(body)
            rid = f"req-{len(self.received)}"
            return JSONResponse(
                {"id": rid, "redirectUrl": f"{self.url}/requests/{rid}"}, status_code=201
            )

        @app.get("/requests/{rid}")
        def show(rid: str) -> HTMLResponse:
            return HTMLResponse(
                f"<!doctype html><html lang='en'><title>Negotiator</title><h1>{rid}</h1></html>"
            )

        return app


@dataclass
class Sites:
    plain: Site  # no Negotiator configured
    negotiating: Site  # CATALOGUE_NEGOTIATOR_URL set to the fake
    negotiator: FakeNegotiator


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """Two catalogue servers over one harvested federation (DE, IT, CN; 600 samples each):
    one without a Negotiator and one handing requests to the fake."""
    workdir = tmp_path_factory.mktemp("basket-federation")
    fake = FakeNegotiator()
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:

        def start() -> Sites:
            federation = stack.enter_context(
                build_federation(
                    workdir, ("DE", "IT", "CN"), samples=600, seed=11, serve_catalogue=False
                )
            )
            served = stack.enter_context(live_server(fake.app()))
            fake.url = served.url
            plain = stack.enter_context(live_server(federation.catalogue.app))
            settings = federation.catalogue.settings.model_copy(update={"negotiator_url": fake.url})
            negotiating = stack.enter_context(live_server(create_app(settings)))
            return Sites(Site(plain.url), Site(negotiating.url), fake)

        yield pool.submit(start).result()


@pytest.fixture(autouse=True)
def fresh_negotiator(sites: Sites) -> None:
    sites.negotiator.received.clear()
    sites.negotiator.known = None


def two_collections(site: Site, params: Any = None) -> list[dict[str, Any]]:
    """Two collections of the first result page with a contact, from two nodes if possible."""
    items = [c for c in site.api("/v1/search", params)["collections"]["items"] if c["contact"]]
    assert len(items) >= 2, "the test data has fewer than two collections with a contact"
    first = items[0]
    other = next((c for c in items if c["provenance"]["node"] != first["provenance"]["node"]), None)
    return [first, other or items[1]]


def add(page: Any, item: dict[str, Any]) -> None:
    button = page.locator(f"#basket-{id_part(item['provenance']['node'])}-{id_part(item['id'])}")
    button.click()
    page.locator(f"#basket li[data-basket='{item['id']}']").wait_for()
    assert button.get_attribute("aria-pressed") == "true"


def node_names(site: Site) -> dict[str, str]:
    return {n["origin"]: n["name"] for n in site.api("/v1/nodes")["nodes"]}


def test_fake_negotiator_enforces_the_rules(sites: Sites) -> None:
    target = f"{sites.negotiator.url}/api/v3/requests"
    good = {"url": "http://x/", "humanReadable": "all", "resources": [{"id": "a", "name": "A"}]}
    assert httpx.post(target, json=good).status_code == 201
    for bad in (
        {**good, "url": ""},
        {k: v for k, v in good.items() if k != "humanReadable"},
        {**good, "resources": []},
        {**good, "resources": [{"id": "a"}]},
        {**good, "resources": [{"name": "A"}]},
    ):
        answer = httpx.post(target, json=bad)
        assert answer.status_code == 400, bad
        assert answer.json()["detail"]


def test_basket_survives_navigation_and_names_node_and_biobank(
    page: Any, sites: Sites, output_dir: Path
) -> None:
    site = sites.plain
    chosen = two_collections(site)
    open_search(page, site)
    assert page.locator("#basket-title").inner_text() == "Request basket (0)"
    for item in chosen:
        add(page, item)
    # navigate away within the page, then reload: the basket is still there
    page.get_by_role("link", name="Partner nodes").click()
    page.locator("#nodes-table").wait_for()
    page.get_by_role("link", name="Find samples").click()
    wait_results(page, "")
    page.reload()
    wait_results(page, "")
    assert page.locator("#basket-title").inner_text() == "Request basket (2)"
    names = node_names(site)
    biobanks = {
        b["id"]: b["name"] for b in site.api("/v1/search", {"page_size": 100})["biobanks"]["items"]
    }
    for item in chosen:
        row = page.locator(f"#basket li[data-basket='{item['id']}']")
        assert row.locator(".basket-name").inner_text() == item["name"]
        node = row.locator(".basket-node")
        assert node.inner_text() == names[item["provenance"]["node"]]
        assert node.get_attribute("title") == item["provenance"]["node"]
        assert biobanks[item["biobank"]] in row.locator(".basket-where").inner_text()
    page.locator("#basket").screenshot(path=str(output_dir / "web-basket.png"))
    # removing from the basket releases the card's button
    first = chosen[0]
    page.get_by_role("button", name=f"Remove: {first['name']}", exact=True).click()
    page.wait_for_function("document.getElementById('basket-title').textContent.endsWith('(1)')")
    card_button = page.locator(
        f"#basket-{id_part(first['provenance']['node'])}-{id_part(first['id'])}"
    )
    assert card_button.get_attribute("aria-pressed") == "false"
    page.locator("#basket-clear").click()
    page.wait_for_function("document.getElementById('basket-title').textContent.endsWith('(0)')")


def test_the_table_view_adds_to_the_same_basket(page: Any, sites: Sites) -> None:
    site = sites.plain
    item = two_collections(site)[1]
    open_search(page, site)
    page.locator("#view-table").click()
    row = page.locator(f"#collections-table tr[data-collection='{item['id']}']")
    button = row.get_by_role("button", name="Add to request")
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    page.locator(f"#basket li[data-basket='{item['id']}']").wait_for()
    assert button.get_attribute("aria-pressed") == "true"
    page.locator("#view-cards").click()
    card = page.locator(f"#basket-{id_part(item['provenance']['node'])}-{id_part(item['id'])}")
    assert card.get_attribute("aria-pressed") == "true"


def test_request_access_hands_the_basket_to_the_negotiator(page: Any, sites: Sites) -> None:
    site = sites.negotiating
    stype = str(site.api("/v1/search")["facets"]["sample_type"][0]["code"])
    query = urlencode({"sample_type": stype})
    chosen = two_collections(site, {"sample_type": stype})
    open_search(page, site, query)
    for item in chosen:
        add(page, item)
    page.locator("#request-access").click()
    page.wait_for_url(f"{sites.negotiator.url}/requests/req-1")
    assert page.locator("h1").inner_text() == "req-1"
    [sent] = sites.negotiator.received
    assert sent["url"] == f"{site.url}/?{query}"
    label = next(
        c["en"] for c in site.api("/v1/codelists/sample-type")["codes"] if c["code"] == stype
    )
    assert sent["humanReadable"].startswith("Samples with sample type: ")
    assert label in sent["humanReadable"]
    assert [r["id"] for r in sent["resources"]] == [c["id"] for c in chosen]
    for res, item in zip(sent["resources"], chosen, strict=True):
        assert res["name"] == item["name"]
        assert res["description"] == (item["description"] or "")
        assert res["contactEmail"] == item["contact"]["email"]
        parts = urlsplit(res["uri"])
        assert f"{parts.scheme}://{parts.netloc}" == site.url
        assert parse_qs(parts.query) == {"collection": [item["id"]]}


def test_a_refused_request_shows_the_reason_in_english_and_chinese(page: Any, sites: Sites) -> None:
    site = sites.negotiating
    chosen = two_collections(site)
    sites.negotiator.known = {chosen[0]["id"]}  # the second is not in its directory
    open_search(page, site)
    for item in chosen:
        add(page, item)
    page.locator("#request-access").click()
    alert = page.locator("#basket-error")
    alert.wait_for()
    text = alert.inner_text()
    assert text.startswith("The access request was not accepted: 400: ")
    assert f"resource {chosen[1]['id']} is not known to this Negotiator" in text
    assert sites.negotiator.received == []
    assert urlsplit(page.url).netloc == urlsplit(site.url).netloc  # the browser stayed
    page.get_by_role("button", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert alert.inner_text().startswith("使用申请未被接受：400: ")
    assert chosen[1]["id"] in alert.inner_text()
    page.get_by_role("button", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")


def test_without_a_negotiator_the_basket_offers_mail_and_csv(
    page: Any, sites: Sites, output_dir: Path
) -> None:
    site = sites.plain
    chosen = two_collections(site)
    open_search(page, site)
    for item in chosen:
        add(page, item)
    assert page.locator("#request-access").count() == 0
    href = page.locator("#basket-mail").get_attribute("href")
    assert href is not None and href.startswith("mailto:")
    recipients, _, rest = href[len("mailto:") :].partition("?")
    emails = list(dict.fromkeys(c["contact"]["email"] for c in chosen))
    assert recipients.split(",") == emails
    fields = parse_qs(rest)
    assert fields["subject"] == ["Request for access to biobank samples"]
    body = unquote(fields["body"][0])
    for item in chosen:
        assert f"{item['name']} ({item['id']})" in body
    with page.expect_download() as info:
        page.locator("#basket-csv").click()
    target = output_dir / "basket-contacts.csv"
    info.value.save_as(str(target))
    rows = list(csv.reader(io.StringIO(target.read_bytes().decode("utf-8-sig"), newline="")))
    names = node_names(site)
    assert rows[0] == [
        "collection_id", "collection", "biobank_id", "biobank", "node", "node_name",
        "contact_email",
    ]  # fmt: skip
    assert [(r[0], r[4], r[5], r[6]) for r in rows[1:]] == [
        (c["id"], c["provenance"]["node"], names[c["provenance"]["node"]], c["contact"]["email"])
        for c in chosen
    ]


def test_the_hand_off_endpoint_refuses_what_it_cannot_send(sites: Sites) -> None:
    assert httpx.get(f"{sites.plain.url}/v1/negotiator").json() == {"configured": False}
    assert httpx.get(f"{sites.negotiating.url}/v1/negotiator").json() == {"configured": True}
    item = sites.plain.api("/v1/search")["collections"]["items"][0]
    basket = {"query": "", "collections": [{"id": item["id"], "node": item["provenance"]["node"]}]}
    assert httpx.post(f"{sites.plain.url}/v1/negotiator/requests", json=basket).status_code == 404
    unknown = {"query": "", "collections": [{"id": "nope", "node": item["provenance"]["node"]}]}
    answer = httpx.post(f"{sites.negotiating.url}/v1/negotiator/requests", json=unknown)
    assert answer.status_code == 404 and "nope" in answer.json()["detail"]
    bad = {**basket, "query": "sex=not-a-sex"}
    assert (
        httpx.post(f"{sites.negotiating.url}/v1/negotiator/requests", json=bad).status_code == 400
    )
    empty = {"query": "", "collections": []}
    assert (
        httpx.post(f"{sites.negotiating.url}/v1/negotiator/requests", json=empty).status_code == 400
    )
    assert sites.negotiator.received == []
    answer = httpx.post(f"{sites.negotiating.url}/v1/negotiator/requests", json=basket)
    assert answer.status_code == 201
    assert answer.json()["redirectUrl"] == f"{sites.negotiator.url}/requests/req-1"


def test_human_readable_says_every_filter_in_words() -> None:
    vocab = Vocabulary.default()
    text = human_readable(
        [
            ("sample_type", "Plasma"),
            ("sex", "female"),
            ("country", "DE"),
            ("country", "IT"),
            ("icd10", "II"),
            ("icd10", "C50"),
            ("age_min", "18"),
            ("period_to", "2020"),
        ],
        vocab,
    )
    assert text == (
        "Samples with sample type: Plasma; donor sex: Female (female); "
        "country: Germany (DE) or Italy (IT); diagnosis (ICD-10): Neoplasms (II) or C50; "
        "donor age from 18 years; collected up to 2020."
    )
    assert human_readable([], vocab) == "All samples in the catalogue (no filters)."
    with pytest.raises(FilterError):
        human_readable([("sex", "not-a-sex")], vocab)


def test_the_negotiator_setting_takes_only_a_web_url() -> None:
    from pydantic import ValidationError

    from catalogue.settings import Settings

    assert Settings(negotiator_url="").negotiator_url is None
    assert Settings(negotiator_url="https://n.example/").negotiator_url == "https://n.example"
    with pytest.raises(ValidationError, match="CATALOGUE_NEGOTIATOR_URL"):
        Settings(negotiator_url="ftp://n.example")
