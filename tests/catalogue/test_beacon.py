"""Beacon v2 at /beacon/v2 against real servers: every request and response is validated
against the shipped Beacon v2 framework schemas, and every count equals /v1/search's for the
same filters (bounds included)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from catalogue.app import create_app
from catalogue.beacon import translate
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.harvest import Harvester
from catalogue.search import Vocabulary
from federation import build_federation
from federation.servers import live_server
from tests.catalogue.conftest import make_settings
from tests.catalogue.simulator import NodeSimulator, bounded_group
from tests.support import external_data

BASE = "/beacon/v2"


class Schemas:
    """The Beacon v2 framework schemas (shipped under the external data), by file name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        resources = []
        for path in root.rglob("*.json"):
            contents = json.loads(path.read_text(encoding="utf-8"))
            resources.append(
                (path.as_uri(), Resource.from_contents(contents, default_specification=DRAFT202012))
            )
        self.registry: Registry[Any] = Registry().with_resources(resources)

    def check(self, relative: str, document: Any) -> None:
        """Fail with every error when `document` is not valid against `relative`'s schema."""
        uri = (self.root / relative).as_uri()
        validator = Draft202012Validator(
            {"$ref": uri},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == [], f"{relative}: {errors}"


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas(external_data() / "ga4gh-beacon-v2-framework" / "framework" / "json")


def request_body(filters: list[dict[str, Any]], granularity: str = "count") -> dict[str, Any]:
    return {
        "meta": {"apiVersion": "v2.0.0"},
        "query": {"filters": filters, "requestedGranularity": granularity},
    }


def post(
    client: httpx.Client, schemas: Schemas, entry: str, body: dict[str, Any], status: int = 200
) -> dict[str, Any]:
    """POST a Beacon request (validated first) and validate the answer by its granularity."""
    schemas.check("requests/beaconRequestBody.json", body)
    resp = client.post(f"{BASE}/{entry}", json=body)
    assert resp.status_code == status, resp.text
    out: dict[str, Any] = resp.json()
    if status != 200:
        schemas.check("responses/beaconErrorResponse.json", out)
    elif body["query"].get("requestedGranularity") == "count":
        schemas.check("responses/beaconCountResponse.json", out)
    else:
        schemas.check("responses/beaconBooleanResponse.json", out)
    return out


def search(client: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
    resp = client.get("/v1/search", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def beacon_interval(out: dict[str, Any]) -> dict[str, int]:
    """The interval a count response stands for: exact n, or the bound with info.count."""
    summary = out["responseSummary"]
    if summary["countPrecision"] == "exact":
        assert "countAdjustedTo" not in summary
        return {"min": summary["numTotalResults"], "max": summary["numTotalResults"]}
    assert summary["countPrecision"] == "imprecise"
    count: dict[str, int] = out["info"]["count"]
    assert summary["countAdjustedTo"] == [count["max"]]
    assert summary["numTotalResults"] == count["max"] and count["min"] < count["max"]
    return count


# -- a simulated federation: exact and bounded groups with known codes ----------------------

BB, COL = "bbmri-eric:ID:DE_A", "bbmri-eric:ID:DE_A:collection:main"


@pytest.fixture(scope="module")
def sim_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Three exact groups of 10 Plasma samples with C50.9 (female, 40-49) and one bounded
    WholeBlood group with ORPHA:558 (published as < 10 donors) on one simulated node."""
    tmp = tmp_path_factory.mktemp("beacon-sim")
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=10)
    sim.populate(3, biobank=BB, collection=COL)
    sim.publish(
        "sample-group",
        bounded_group(
            200,
            biobank=BB,
            collection=COL,
            samples=5,
            k=10,
            sample_type="WholeBlood",
            age={"min": 20, "max": 29},
            diagnoses=[{"system": "ORPHA", "code": "ORPHA:558"}],
        ),
    )
    with ExitStack() as stack:
        sim.url = stack.enter_context(live_server(sim.app())).url
        settings = make_settings(f"sqlite:///{tmp / 'c.db'}", tmp / "home")
        ctx = build_context(settings)
        enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
        assert all(o.ok for o in Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run())
        ctx.engine.dispose()
        cat = stack.enter_context(live_server(create_app(settings)))
        yield stack.enter_context(httpx.Client(base_url=cat.url))


def test_icd10_c50_finds_c50_9_groups(sim_api: httpx.Client, schemas: Schemas) -> None:
    out = post(sim_api, schemas, "biosamples", request_body([{"id": "ICD10:C50"}]))
    assert out["responseSummary"] == {
        "exists": True,
        "numTotalResults": 30,
        "countPrecision": "exact",
    }
    assert out["meta"]["returnedGranularity"] == "count"
    assert out["meta"]["receivedRequestSummary"]["filters"] == ["ICD10:C50"]
    none = post(sim_api, schemas, "biosamples", request_body([{"id": "ICD10:C51"}]))
    assert none["responseSummary"]["exists"] is False
    assert none["responseSummary"]["numTotalResults"] == 0


def test_bounded_group_gives_the_bound_and_never_less(
    sim_api: httpx.Client, schemas: Schemas
) -> None:
    want = search(sim_api, {"orpha": "ORPHA:558"})
    assert want["total"] == {"min": 1, "max": 9}
    for fid in ("ORPHA:558", "Orphanet:558"):
        out = post(sim_api, schemas, "biosamples", request_body([{"id": fid}]))
        assert out["responseSummary"]["numTotalResults"] == 9
        assert beacon_interval(out) == want["total"]
        assert out["responseSummary"]["exists"] is True
    donors = post(sim_api, schemas, "individuals", request_body([{"id": "ORPHA:558"}]))
    assert beacon_interval(donors) == want["donors"]
    boolean = post(sim_api, schemas, "biosamples", request_body([{"id": "ORPHA:558"}], "boolean"))
    assert boolean["responseSummary"] == {"exists": True}
    assert "count" not in boolean["info"]


@pytest.mark.parametrize(
    ("filters", "total"),
    [
        ([{"id": "age", "operator": ">=", "value": "P40Y"}], 30),
        ([{"id": "age", "operator": "<", "value": "P30Y"}], None),  # the bounded group only
        ([{"id": "age", "operator": "=", "value": "P45Y6M"}], 30),
        ([{"id": "NCIT:C25150", "operator": ">", "value": "P49Y"}], 0),
        ([{"id": "NCIT:C16576"}, {"id": "sample_type:Plasma"}], 30),
        ([{"id": "NCIT:C20197"}], 0),
        ([{"id": "sample_type:Blood"}, {"id": "storage_temperature:-60to-85"}], None),
        ([{"id": f"biobank:{BB}"}, {"id": f"collection:{COL}"}, {"id": "country:DE"}], None),
    ],
)
def test_filters_count_as_the_search_does(
    sim_api: httpx.Client, schemas: Schemas, filters: list[dict[str, Any]], total: int | None
) -> None:
    t = translate(filters, Vocabulary.default())
    assert t.ok, (t.unknown, t.problems)
    want = search(sim_api, t.params)
    out = post(sim_api, schemas, "biosamples", request_body(filters))
    assert beacon_interval(out) == want["total"]
    if total is not None:
        assert want["total"] == {"min": total, "max": total}
    got = sim_api.get(
        f"{BASE}/biosamples",
        params={
            "filters": [
                f["id"] + f["operator"] + f["value"] if "operator" in f else f["id"]
                for f in filters
            ],
            "requestedGranularity": "count",
        },
    )
    assert got.status_code == 200, got.text
    schemas.check("responses/beaconCountResponse.json", got.json())
    assert beacon_interval(got.json()) == want["total"]


def test_record_granularity_is_refused_naming_what_is_granted(
    sim_api: httpx.Client, schemas: Schemas
) -> None:
    out = post(sim_api, schemas, "individuals", request_body([], "record"), status=403)
    assert out["error"]["errorCode"] == 403
    assert "'boolean' and 'count'" in out["error"]["errorMessage"]
    assert "results" not in out and "responseSummary" not in out
    got = sim_api.get(f"{BASE}/biosamples", params={"requestedGranularity": "record"})
    assert got.status_code == 403
    schemas.check("responses/beaconErrorResponse.json", got.json())


def test_unknown_and_unanswerable_filters_are_reported(
    sim_api: httpx.Client, schemas: Schemas
) -> None:
    out = post(
        sim_api,
        schemas,
        "biosamples",
        request_body([{"id": "HP:0000118"}, {"id": "ICD10:C50"}, {"id": "tissue:liver"}]),
        status=400,
    )
    assert out["info"]["unknownFilters"] == ["HP:0000118", "tissue:liver"]
    assert "HP:0000118" in out["error"]["errorMessage"]
    bad = [
        [{"id": "sample_type:Plasma"}, {"id": "sample_type:Serum"}],  # AND of one parameter
        [{"id": "sample_type:NoSuchType"}],
        [{"id": "age", "operator": "!", "value": "P40Y"}],
        [{"id": "age", "operator": ">", "value": "forty"}],
        [
            {"id": "age", "operator": ">", "value": "P60Y"},
            {"id": "age", "operator": "<", "value": "P20Y"},
        ],
        [{"id": "ICD10:C50", "includeDescendantTerms": False}],
        [{"id": "NCIT:C16576", "operator": "=", "value": "x"}],
    ]
    for filters in bad:
        out = post(sim_api, schemas, "biosamples", request_body(filters), status=400)
        assert out["info"]["invalidFilters"], filters


def test_framework_endpoints_are_valid(sim_api: httpx.Client, schemas: Schemas) -> None:
    for path, schema in [
        ("", "responses/beaconInfoResponse.json"),
        ("/info", "responses/beaconInfoResponse.json"),
        ("/configuration", "responses/beaconConfigurationResponse.json"),
        ("/map", "responses/beaconMapResponse.json"),
        ("/entry_types", "responses/beaconEntryTypesResponse.json"),
        ("/filtering_terms", "responses/beaconFilteringTermsResponse.json"),
        ("/service-info", "responses/ga4gh-service-info-1-0-0-schema.json"),
    ]:
        resp = sim_api.get(BASE + path)
        assert resp.status_code == 200, (path, resp.text)
        schemas.check(schema, resp.json())
    conf = sim_api.get(f"{BASE}/configuration").json()["response"]
    assert set(conf["entryTypes"]) == {"biosample", "individual"}
    assert conf["securityAttributes"]["defaultGranularity"] == "count"
    endpoint_sets = sim_api.get(f"{BASE}/map").json()["response"]["endpointSets"]
    assert endpoint_sets["individual"][
        "rootUrl"
    ] == f"{sim_api.base_url}{BASE}/individuals".replace("//beacon", "/beacon")


def test_every_listed_filtering_term_is_accepted(sim_api: httpx.Client) -> None:
    terms = sim_api.get(f"{BASE}/filtering_terms").json()["response"]["filteringTerms"]
    ids = {t["id"] for t in terms}
    for expected in (
        "ICD10:II",
        "ORPHA:558",
        "DUO:0000042",
        "NCIT:C16576",
        "NCIT:C20197",
        "age",
        "sample_type:Plasma",
        "storage_temperature:LN",
        "dataset_type:Genomic",
        "country:DE",
        f"biobank:{BB}",
        f"collection:{COL}",
    ):
        assert expected in ids
    assert all(t.get("label") for t in terms)
    vocab = Vocabulary.default()
    for term in terms:
        item = (
            {"id": term["id"], "operator": ">=", "value": "P18Y"}
            if term["type"] == "alphanumeric"
            else {"id": term["id"]}
        )
        t = translate([item], vocab)
        assert t.ok, (term, t.unknown, t.problems)


# -- the demo federation: Beacon equals /v1/search, and an aggregator over two catalogues ---


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two real demo catalogues: DE, IT and CN nodes (600 samples each), and an IE node."""
    work = tmp_path_factory.mktemp("beacon-demo")
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(
            build_federation(work / "a", ("DE", "IT", "CN"), samples=600, seed=11)
        )
        second = stack.enter_context(build_federation(work / "b", ("IE",), samples=400, seed=5))
        yield [first.url, second.url]


DEMO_QUERIES: list[list[dict[str, Any]]] = [
    [],
    [{"id": "ICD10:C50"}],
    [{"id": "ICD10:II"}],
    [{"id": "ICD10:C00-C97"}, {"id": "NCIT:C16576"}],
    [{"id": "NCIT:C20197"}, {"id": "age", "operator": ">=", "value": "P40Y"}],
    [{"id": "age", "operator": "<=", "value": "P30Y"}],
    [{"id": "sample_type:Blood"}],
    [{"id": "storage_temperature:LN"}, {"id": "country:IT"}],
    [{"id": "DUO:0000042"}, {"id": "dataset_type:Genomic"}],
    [{"id": "dataset_type:WholeSlideImage"}, {"id": "sample_type:Urine"}],
]


def test_every_demo_count_equals_the_search(demo: list[str], schemas: Schemas) -> None:
    vocab = Vocabulary.default()
    inexact = exact = 0
    with httpx.Client(base_url=demo[0], timeout=30) as client:
        for filters in DEMO_QUERIES:
            t = translate(filters, vocab)
            assert t.ok
            want = search(client, t.params)
            for entry, key in (("biosamples", "total"), ("individuals", "donors")):
                out = post(client, schemas, entry, request_body(filters))
                assert beacon_interval(out) == want[key], (filters, entry)
                if want[key]["min"] == want[key]["max"]:
                    exact += 1
                else:
                    inexact += 1
                boolean = post(client, schemas, entry, request_body(filters, "boolean"))
                assert boolean["responseSummary"]["exists"] is (want[key]["max"] > 0)
    assert inexact > 0 and exact > 0  # both rules were exercised


def test_an_aggregator_sums_two_catalogues(demo: list[str], schemas: Schemas) -> None:
    """A Beacon Network aggregator: read each Beacon's /map, fan the query out, sum counts."""
    filters = [{"id": "NCIT:C16576"}, {"id": "age", "operator": ">=", "value": "P40Y"}]
    body = request_body(filters)
    schemas.check("requests/beaconRequestBody.json", body)
    total = 0
    want = 0
    ids = set()
    for url in demo:
        with httpx.Client(timeout=30) as client:
            info = client.get(f"{url}{BASE}/info").json()
            schemas.check("responses/beaconInfoResponse.json", info)
            beacon_map = client.get(f"{url}{BASE}/map").json()
            schemas.check("responses/beaconMapResponse.json", beacon_map)
            root = beacon_map["response"]["endpointSets"]["biosample"]["rootUrl"]
            resp = client.post(root, json=body)
            assert resp.status_code == 200
            out = resp.json()
            schemas.check("responses/beaconCountResponse.json", out)
            ids.add(out["meta"]["beaconId"])
            total += out["responseSummary"]["numTotalResults"]
            want += client.get(f"{url}/v1/search", params={"sex": "female", "age_min": 40}).json()[
                "total"
            ]["max"]
    assert len(ids) == 1  # both demo catalogues share the demo origin
    assert total == want and total > 0


def test_malformed_bodies_get_a_beacon_error_and_get_defaults_to_boolean(
    sim_api: httpx.Client, schemas: Schemas
) -> None:
    for content in (b"not json", b"[]", b'{"query": {"filters": "ICD10:C50"}}'):
        resp = sim_api.post(
            f"{BASE}/biosamples", content=content, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == 400, content
        schemas.check("responses/beaconErrorResponse.json", resp.json())
    resp = sim_api.post(f"{BASE}/biosamples", json={"query": {"filters": [7]}})
    assert resp.status_code == 400
    assert resp.json()["info"]["invalidFilters"] == ["a filter without an id: 7"]
    got = sim_api.get(f"{BASE}/individuals", params={"filters": "ICD10:C50"})
    assert got.status_code == 200
    schemas.check("responses/beaconBooleanResponse.json", got.json())
    assert got.json()["responseSummary"] == {"exists": True}
    assert got.json()["meta"]["returnedGranularity"] == "boolean"
