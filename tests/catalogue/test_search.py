"""Search over a two-node federation (one node Directory-style), through the real HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.harvest import Harvester
from federation.servers import live_server
from tests.catalogue.conftest import DB_PARAMS, database, make_settings
from tests.catalogue.simulator import NodeSimulator, bounded_group

A_BB, A_COL = "bbmri-eric:ID:DE_A", "bbmri-eric:ID:DE_A:collection:main"
B_BB, B_COL = "bbmri-eric:ID:CZ_B", "bbmri-eric:ID:CZ_B:collection:lung"
DIR_COL = "bbmri-eric:ID:CZ_B:collection:directory"


def _federation() -> list[NodeSimulator]:
    """Node A (k = 10): 30 Plasma samples in 3 exact groups, 12 Serum samples of 10 donors, and
    a WholeBlood group of fewer than k donors (published as bounds: [1, 9] samples); node B
    (k = 5): 20 samples in 4 exact groups, and a Directory-style collection."""
    a = NodeSimulator("de.example/biobank-node", country="DE", k=10)
    a.populate(3, biobank=A_BB, collection=A_COL)
    a.populate(
        1,
        start=100,
        biobank=A_BB,
        collection=A_COL,
        samples=12,
        donors=10,
        sample_type="Serum",
        sex="male",
        age={"min": 60, "max": 69},
        period={"from": 2010, "to": 2014},
        diagnoses=[{"system": "ICD-10", "code": "E11.9"}],
        use_conditions=["DUO:0000006"],
        dataset_types=["Proteomic"],
    )
    a.publish(
        "sample-group",
        bounded_group(
            200,
            biobank=A_BB,
            collection=A_COL,
            samples=5,
            k=10,
            sample_type="WholeBlood",
            age={"min": 20, "max": 29},
            period={"from": 2020, "to": 2024},
            diagnoses=[{"system": "ORPHA", "code": "ORPHA:558"}],
        ),
    )
    b = NodeSimulator("cz.example/biobank-node", country="CZ", k=5)
    b.populate(
        4,
        start=300,
        biobank=B_BB,
        collection=B_COL,
        age={"min": 50, "max": 59},
        diagnoses=[{"system": "ICD-10", "code": "C34.1"}],
    )
    b.publish(
        "collection",
        {
            "id": DIR_COL,
            "biobank": B_BB,
            "name": "Directory collection",
            "sample_types": ["Serum"],
            "sex": ["female", "male"],
            "age": {"min": 18, "max": 80, "unit": "years"},
            "diagnoses": [{"system": "ICD-10", "code": "C50"}],
            "use_conditions": ["DUO:0000042"],
            "size": 5000,
            "contact": {"email": "dir@example.org"},
        },
    )
    return [a, b]


@pytest.fixture(scope="module", params=DB_PARAMS)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A harvested catalogue over two simulated nodes, served on loopback."""
    tmp = tmp_path_factory.mktemp("search")
    sims = _federation()
    with ExitStack() as stack:
        url = stack.enter_context(database(request.param, tmp, request))
        for sim in sims:
            sim.url = stack.enter_context(live_server(sim.app())).url
        settings = make_settings(url, tmp / "home")
        ctx = build_context(settings)
        for sim in sims:
            enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
        assert all(o.ok for o in Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run())
        ctx.engine.dispose()
        cat = stack.enter_context(live_server(create_app(settings)))
        yield stack.enter_context(httpx.Client(base_url=cat.url))


def get(api: httpx.Client, **params: Any) -> dict[str, Any]:
    resp = api.get("/v1/search", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def codes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["code"]: i["count"] for i in items}


def iv(lo: int, hi: int | None = None) -> dict[str, int]:
    """A count as the API shows it: exact `lo`, or between `lo` and `hi`."""
    return {"min": lo, "max": lo if hi is None else hi}


WHOLE_BLOOD = iv(1, 9)  # the bounded group: {lt: 10} samples


def test_totals_counts_and_facets_without_filters(api: httpx.Client) -> None:
    body = get(api)
    assert body["total"] == iv(63, 71)  # 30 + 12 + [1, 9] + 20
    # the largest group's lower bound (10) .. the sum of upper bounds (30 + 10 + 9 + 20)
    assert body["donors"] == iv(10, 69)
    assert codes(body["counts"]["country"]) == {"DE": iv(43, 51), "CZ": iv(20)}
    assert codes(body["counts"]["biobank"]) == {A_BB: iv(43, 51), B_BB: iv(20)}
    facet = body["facets"]["sample_type"]
    assert codes(facet) == {"Plasma": iv(50), "Serum": iv(12), "WholeBlood": WHOLE_BLOOD}
    assert [i["code"] for i in facet] == ["Plasma", "Serum", "WholeBlood"]  # by max
    assert codes(body["facets"]["diagnosis_chapter"]) == {"II": iv(50), "IV": iv(12)}
    assert codes(body["facets"]["use_conditions"]) == {
        "DUO:0000042": iv(51, 59),
        "DUO:0000006": iv(12),
    }
    assert {n["origin"] for n in body["nodes"]} == {
        "de.example/biobank-node",
        "cz.example/biobank-node",
    }
    assert all(n["stale"] is False and n["alerts"] == 0 for n in body["nodes"])


def test_facet_ignores_its_own_filter(api: httpx.Client) -> None:
    body = get(api, sample_type="Plasma")
    assert body["total"] == iv(50) and body["donors"] == iv(10, 50)
    assert codes(body["facets"]["sample_type"]) == {
        "Plasma": iv(50),
        "Serum": iv(12),
        "WholeBlood": WHOLE_BLOOD,
    }
    assert codes(body["facets"]["sex"]) == {"female": iv(50)}
    assert body["query"]["sample_type"] == ["Plasma"]


def test_sample_type_parent_matches_children(api: httpx.Client) -> None:
    assert get(api, sample_type="Blood")["total"] == iv(63, 71)


@pytest.mark.parametrize(
    ("icd10", "total"),
    [("C50", 30), ("C50.9", 30), ("C00-C97", 50), ("II", 50), ("IV", 12), ("E11", 12), ("C51", 0)],
)
def test_icd10_prefix_block_and_chapter(api: httpx.Client, icd10: str, total: int) -> None:
    assert get(api, icd10=icd10)["total"] == iv(total)


def test_directory_style_collection_matches_on_its_attributes(api: httpx.Client) -> None:
    body = get(api, icd10="C50")
    cols = {c["id"]: c for c in body["collections"]["items"]}
    assert set(cols) == {A_COL, DIR_COL}
    assert cols[DIR_COL]["count_source"] == "declared"
    assert cols[DIR_COL]["declared_size"] == 5000 and cols[DIR_COL]["samples"] is None
    assert cols[A_COL]["count_source"] == "groups" and cols[A_COL]["samples"] == iv(30)
    assert cols[DIR_COL]["provenance"]["node"] == "cz.example/biobank-node"
    assert B_BB in {b["id"] for b in body["biobanks"]["items"]}
    assert DIR_COL not in {c["id"] for c in get(api, sample_type="Plasma")["collections"]["items"]}
    assert DIR_COL not in {c["id"] for c in get(api, age_min=90)["collections"]["items"]}


def test_age_and_period_overlap(api: httpx.Client) -> None:
    assert get(api, age_min=45, age_max=55)["total"] == iv(50)
    assert get(api, period_from=2020)["total"] == WHOLE_BLOOD
    assert get(api, period_to=2014)["total"] == iv(12)


def test_other_coded_filters(api: httpx.Client) -> None:
    assert get(api, orpha="ORPHA:558")["total"] == WHOLE_BLOOD
    assert get(api, duo="DUO:0000006")["total"] == iv(12)
    assert get(api, dataset_type="Proteomic")["total"] == iv(12)
    assert get(api, storage_temperature="-60to-85", sex="male")["total"] == iv(12)
    assert get(api, country="CZ")["total"] == iv(20)
    assert get(api, biobank=A_BB, collection=A_COL)["total"] == iv(43, 51)
    both = api.get("/v1/search", params=[("country", "CZ"), ("country", "DE")]).json()
    assert both["total"] == iv(63, 71)


def test_a_bounded_group_shows_as_its_interval_everywhere(api: httpx.Client) -> None:
    body = get(api, sex="female", age_min=20, age_max=29)
    assert body["total"] == WHOLE_BLOOD and body["donors"] == iv(1, 9)
    assert codes(body["counts"]["collection"]) == {A_COL: WHOLE_BLOOD}
    assert body["collections"]["items"][0]["samples"] == WHOLE_BLOOD
    assert body["biobanks"]["items"][0]["samples"] == WHOLE_BLOOD
    cz = get(api, country="CZ", page_size=5)
    assert cz["biobanks"]["items"][0]["samples"] == iv(20)


def test_pagination_and_provenance(api: httpx.Client) -> None:
    first = get(api, page_size=1)
    second = get(api, page_size=1, page=2)
    assert first["biobanks"]["total"] == 2 and len(first["biobanks"]["items"]) == 1
    ids = [first["biobanks"]["items"][0]["id"], second["biobanks"]["items"][0]["id"]]
    assert ids == [A_BB, B_BB]
    item = first["biobanks"]["items"][0]
    assert item["provenance"]["node"] == "de.example/biobank-node"
    assert item["provenance"]["checkpoint_size"] == 7  # biobank, collection, 5 groups
    assert item["provenance"]["verified_at"].endswith("Z")
    assert item["contact"] == {"email": "biobank@example.org"} and item["country"] == "DE"
    cols = get(api, page_size=2, collections_page=2)["collections"]
    assert cols["total"] == 3 and len(cols["items"]) == 1


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"sample_type": "Blut"}, "sample_type"),
        ({"age_min": "abc"}, "age_min"),
        ({"icd10": "XYZ"}, "icd10"),
        ({"orpha": "558"}, "orpha"),
        ({"country": "XX"}, "country"),
        ({"duo": "DUO:9999999"}, "duo"),
        ({"page_size": "1000"}, "page_size"),
        ({"frobnicate": "1"}, "frobnicate"),
        ({"age_min": "50", "age_max": "40"}, "age_max"),
    ],
)
def test_bad_filter_is_a_400_problem_naming_the_parameter(
    api: httpx.Client, query: dict[str, str], name: str
) -> None:
    resp = api.get("/v1/search", params=query)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 400 and name in [p["name"] for p in body["invalid_params"]]


def test_search_is_documented_in_openapi(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    op = spec["paths"]["/v1/search"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SearchResponse"
    )
    assert {"icd10", "sample_type", "collections_page"} <= {p["name"] for p in op["parameters"]}
    schemas = spec["components"]["schemas"]
    assert "CollectionItem" in schemas
    assert schemas["Count"]["required"] == ["min", "max"]
    assert schemas["SearchResponse"]["properties"]["donors"]["$ref"].endswith("/Count")
