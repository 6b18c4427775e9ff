"""/v1/dcat: DCAT-AP 3 / HealthDCAT-AP export of a real demo federation, validated with
pySHACL against the shipped DCAT-AP 3.0.1 shapes, both serialisations one graph, and every
count equal to /v1/search's for that collection (docs/dcat.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyshacl import validate
from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, DCTERMS, SH

from catalogue.app import create_app
from catalogue.dcat import choose, count_triples
from federation import Federation, build_federation, live_server
from tests.catalogue.conftest import ADMIN_TOKEN, make_settings
from tests.catalogue.simulator import NodeSimulator
from tests.support import external_data

HEALTH = Namespace("http://healthdataportal.eu/ns/health#")
DCATAP = Namespace("http://data.europa.eu/r5r/")
BBF = Namespace("https://w3id.org/biobank-federation/ns#")
HEAL = URIRef("http://publications.europa.eu/resource/authority/data-theme/HEAL")
EHDS = URIRef("http://data.europa.eu/eli/reg/2025/327/oj")
RELEASE = Path("semic-dcat-ap-3.0.1/releases/3.0.1")


# 300 samples a node: most groups generalised, several collections only declared;
# 2000: every collection counted from groups, many of them with ages and periods
SIZES = (300, 2000)


@pytest.fixture(scope="module", params=SIZES, ids=[f"{n}-samples" for n in SIZES])
def sized(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Federation]]:
    work = tmp_path_factory.mktemp("dcat")
    with build_federation(work, ("DE", "CN"), samples=request.param, seed=3) as built:
        yield request.param, built


@pytest.fixture(scope="module")
def fed(sized: tuple[int, Federation]) -> Federation:
    return sized[1]


@pytest.fixture(scope="module")
def bodies(fed: Federation) -> dict[str, httpx.Response]:
    return {
        media: httpx.get(f"{fed.url}/v1/dcat", headers={"Accept": media}, timeout=60)
        for media in ("text/turtle", "application/ld+json")
    }


@pytest.fixture(scope="module")
def graph(bodies: dict[str, httpx.Response]) -> Graph:
    return Graph().parse(data=bodies["text/turtle"].text, format="turtle")


def _shapes(*names: str) -> Graph:
    root = external_data() / RELEASE
    g = Graph()
    for name in names:
        g.parse(root / name, format="turtle")
    # The shipped dcat-ap-SHACL.ttl names two property shapes of dcat:DataServiceShape that
    # it never defines (no sh:path); pySHACL refuses such a shapes graph, so those two
    # dangling references are dropped, and only they.
    dangling = [(s, o) for s, o in g.subject_objects(SH.property) if g.value(o, SH.path) is None]
    assert len(dangling) <= 2
    for s, o in dangling:
        g.remove((s, SH.property, o))
    return g


MANDATORY = ("shacl/dcat-ap-SHACL.ttl", "html/shacl/shapes.ttl", "html/shacl/range.ttl")


def _results(data: Graph, shapes: Graph) -> list[dict[str, Any]]:
    _conforms, report, _text = validate(data, shacl_graph=shapes, allow_warnings=True)
    assert isinstance(report, Graph)
    return [
        {
            "severity": str(report.value(r, SH.resultSeverity)).rsplit("#", 1)[-1],
            "focus": str(report.value(r, SH.focusNode)),
            "path": str(report.value(r, SH.resultPath)),
            "message": str(report.value(r, SH.resultMessage)),
        }
        for r in report.subjects(RDF.type, SH.ValidationResult)
    ]


def test_mandatory_shapes_hold(graph: Graph) -> None:
    violations = [r for r in _results(graph, _shapes(*MANDATORY)) if r["severity"] == "Violation"]
    assert violations == []


def test_the_shapes_catch_a_dataset_without_a_title(graph: Graph) -> None:
    broken = Graph() + graph
    ds = next(broken.subjects(RDF.type, DCAT.Dataset))
    broken.remove((ds, DCTERMS.title, None))
    violations = [r for r in _results(broken, _shapes(*MANDATORY)) if r["severity"] == "Violation"]
    assert any(r["focus"] == str(ds) and r["path"] == str(DCTERMS.title) for r in violations)


def test_recommended_shapes_give_warnings_only(graph: Graph) -> None:
    results = _results(graph, _shapes("html/shacl/shapes_recommended.ttl"))
    assert {r["severity"] for r in results} <= {"Warning"}
    summary: dict[tuple[str, str], int] = {}
    for r in results:
        kinds = sorted(
            str(k).rsplit("/", 1)[-1] for k in graph.objects(URIRef(r["focus"]), RDF.type)
        )
        key = (",".join(kinds), r["path"].rsplit("/", 1)[-1])
        summary[key] = summary.get(key, 0) + 1
    print("\nDCAT-AP 3.0.1 recommended-shape warnings (count, focus class, missing property):")
    for (kinds, path), n in sorted(summary.items()):
        print(f"  {n:4d}  {kinds}  {path}")


# rdflib's own JSON-LD parser uses its deprecated ConjunctiveGraph internally
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_both_serialisations_are_one_graph(bodies: dict[str, httpx.Response]) -> None:
    turtle = bodies["text/turtle"]
    jsonld = bodies["application/ld+json"]
    assert turtle.status_code == jsonld.status_code == 200
    assert turtle.headers["content-type"].startswith("text/turtle")
    assert jsonld.headers["content-type"].startswith("application/ld+json")
    a = Graph().parse(data=turtle.text, format="turtle")
    b = Graph().parse(data=jsonld.text, format="json-ld")
    assert len(a) > 100
    assert isomorphic(a, b)


def test_content_negotiation(fed: Federation) -> None:
    def get(accept: str | None, **params: str) -> httpx.Response:
        headers = {} if accept is None else {"Accept": accept}
        return httpx.get(f"{fed.url}/v1/dcat", headers=headers, params=params, timeout=60)

    assert get(None).headers["content-type"].startswith("text/turtle")
    preferred = get("text/turtle;q=0.5, application/ld+json")
    assert preferred.headers["content-type"].startswith("application/ld+json")
    assert (
        get("text/html", format="jsonld").headers["content-type"].startswith("application/ld+json")
    )
    refused = get("text/html")
    assert refused.status_code == 406
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert get(None, format="xml").status_code == 406


def test_choose_reads_q_values_and_wildcards() -> None:
    assert choose("application/ld+json;q=0.1, text/turtle;q=0.9") == "text/turtle"
    assert choose("application/*") == "application/ld+json"
    assert choose("*/*") == "text/turtle"
    assert choose("text/turtle;q=0") is None
    assert choose("image/png") is None


def test_count_rule_publishes_a_figure_only_when_exact() -> None:
    g = Graph()
    exact, inexact = URIRef("urn:x:exact"), URIRef("urn:x:inexact")
    count_triples(g, exact, "numberOfRecords", 40, 40)
    count_triples(g, inexact, "numberOfRecords", 12, 40)
    assert g.value(exact, HEALTH.numberOfRecords) == Literal(40, datatype=_NNI)
    assert g.value(inexact, HEALTH.numberOfRecords) is None
    assert g.value(inexact, BBF.numberOfRecordsMin).toPython() == 12
    assert g.value(inexact, BBF.numberOfRecordsMax).toPython() == 40
    with pytest.raises(ValueError):
        count_triples(g, inexact, "numberOfRecords", 5, 4)


_NNI = URIRef("http://www.w3.org/2001/XMLSchema#nonNegativeInteger")


def _int(g: Graph, s: URIRef, p: URIRef) -> int | None:
    v = g.value(s, p)
    return None if v is None else int(v.toPython())


def test_counts_equal_the_search_per_collection(
    sized: tuple[int, Federation], graph: Graph
) -> None:
    size, fed = sized
    datasets = list(graph.subjects(RDF.type, DCAT.Dataset))
    seen = {"groups": 0, "declared": 0}
    for ds in datasets:
        assert isinstance(ds, URIRef)
        cid = str(graph.value(ds, DCTERMS.identifier))
        body = httpx.get(f"{fed.url}/v1/search", params={"collection": cid}, timeout=60).json()
        [card] = [c for c in body["collections"]["items"] if c["id"] == cid]
        source = str(graph.value(ds, BBF.countSource))
        assert source == card["count_source"]
        seen[source] += 1
        records = _int(graph, ds, HEALTH.numberOfRecords)
        if source == "groups":
            total, donors = body["total"], body["donors"]
            assert card["samples"] == total
            assert _int(graph, ds, BBF.numberOfRecordsMin) == total["min"]
            assert _int(graph, ds, BBF.numberOfRecordsMax) == total["max"]
            assert records == (total["min"] if total["min"] == total["max"] else None)
            individuals = _int(graph, ds, HEALTH.numberOfUniqueIndividuals)
            assert _int(graph, ds, BBF.numberOfUniqueIndividualsMin) == donors["min"]
            assert _int(graph, ds, BBF.numberOfUniqueIndividualsMax) == donors["max"]
            assert individuals == (donors["min"] if donors["min"] == donors["max"] else None)
        else:
            assert records == card["declared_size"]
            assert _int(graph, ds, HEALTH.numberOfUniqueIndividuals) is None
    assert seen["groups"] > 0
    assert seen["declared"] > 0 or size != 300
    everything = httpx.get(f"{fed.url}/v1/search", params={"page_size": 100}, timeout=60).json()
    assert len(datasets) == everything["collections"]["total"]


def test_each_dataset_carries_the_healthdcat_public_properties(
    fed: Federation, graph: Graph
) -> None:
    nodes = {n["origin"]: n for n in httpx.get(f"{fed.url}/v1/nodes", timeout=30).json()["nodes"]}
    search_svc = [s for s in graph.subjects(RDF.type, DCAT.DataService)]
    endpoints = {str(graph.value(s, DCAT.endpointURL)): s for s in search_svc}
    assert set(endpoints) == {f"{fed.url}/v1/search", f"{fed.url}/beacon/v2"}
    catalogue = next(graph.subjects(RDF.type, DCAT.Catalog))
    for ds in graph.subjects(RDF.type, DCAT.Dataset):
        assert graph.value(ds, DCTERMS.accessRights) is not None
        assert (ds, DCATAP.applicableLegislation, EHDS) in graph
        assert (ds, DCAT.theme, HEAL) in graph
        assert graph.value(ds, HEALTH.healthCategory) is not None
        assert graph.value(ds, HEALTH.hasStructuredData).toPython() is True
        services = {
            graph.value(d, DCAT.accessService) for d in graph.objects(ds, DCAT.distribution)
        }
        assert services == set(endpoints.values())
        contact = graph.value(ds, DCAT.contactPoint)
        assert str(graph.value(contact, URIRef("http://www.w3.org/2006/vcard/ns#hasEmail")))
        assert any(isinstance(k, Literal) for k in graph.objects(ds, DCAT.keyword))
        prov = graph.value(ds, DCTERMS.provenance)
        publisher = graph.value(ds, DCTERMS.publisher)
        node_cat = next(graph.subjects(DCTERMS.publisher, publisher))
        assert (node_cat, DCAT.dataset, ds) in graph
        assert (catalogue, DCAT.catalog, node_cat) in graph or node_cat == catalogue
        origin = next(o for o in nodes if str(ds).split("#")[0].endswith(o))
        assert _int(graph, prov, BBF.checkpointSize) == nodes[origin]["tree_size"]
        assert str(graph.value(prov, BBF.log)) == f"{nodes[origin]['url']}/v1/log/checkpoint"
    assert graph.value(catalogue, DCTERMS.title) is not None


def test_keywords_ages_and_period_come_from_the_collection_and_its_groups(
    sized: tuple[int, Federation], graph: Graph
) -> None:
    size, fed = sized
    body = httpx.get(f"{fed.url}/v1/search", params={"page_size": 100}, timeout=60).json()
    with_groups = [c for c in body["collections"]["items"] if c["count_source"] == "groups"]
    assert with_groups
    dated_seen: list[str] = []
    for card in with_groups:
        ds = next(graph.subjects(DCTERMS.identifier, Literal(card["id"])))
        one = httpx.get(f"{fed.url}/v1/search", params={"collection": card["id"]}, timeout=60)
        types = {f["code"] for f in one.json()["facets"]["sample_type"]}
        words = {str(k) for k in graph.objects(ds, DCAT.keyword)}
        labels = {c["code"]: c["en"] for c in _codes("sample-type")}
        assert {labels[t] for t in types} <= words
        period = graph.value(ds, DCTERMS.temporal)
        dated = _search(fed, collection=card["id"], period_from="1000", period_to="2999")
        # a period is stated exactly when some group of the collection states one
        assert (period is not None) == (dated["total"]["max"] > 0)
        if period is not None:
            dated_seen.append(card["id"])
            start = int(str(graph.value(period, DCAT.startDate)))
            end = int(str(graph.value(period, DCAT.endDate)))
            assert start <= end
            before = _search(fed, collection=card["id"], period_to=str(start - 1))
            after = _search(fed, collection=card["id"], period_from=str(end + 1))
            assert before["total"]["max"] == after["total"]["max"] == 0
        low = _int(graph, ds, HEALTH.minTypicalAge)
        high = _int(graph, ds, HEALTH.maxTypicalAge)
        assert low is not None and high is not None and low <= high
    assert dated_seen or size == 300


def _search(fed: Federation, **params: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{fed.url}/v1/search", params=params, timeout=60).json()
    return body


def _codes(name: str) -> list[dict[str, Any]]:
    from protocol.codelists import CodeLists

    return [{"code": c.code, "en": c.en} for c in CodeLists.default().get(name).entries]


def test_exact_and_bounded_collections_on_each_database(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    """A collection of one exact group publishes its figures; one of bounded groups only
    its interval ends; both equal the search (SQLite and PostgreSQL)."""
    sim = NodeSimulator()
    exact = "bbmri-eric:ID:DE_SIM:collection:exact"
    bounded = "bbmri-eric:ID:DE_SIM:collection:bounded"
    sim.populate(1, collection=exact)  # one group of k samples of k donors
    sim.publish("collection", {"id": bounded, "biobank": "bbmri-eric:ID:DE_SIM", "name": "B"})
    sim.populate(2, collection=bounded, start=1, samples={"lt": 20}, donors={"lt": sim.k})
    serve(sim)
    app = create_app(make_settings(db_url, tmp_path / "home"))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        enrolled = client.post(
            "/v1/admin/nodes", json={"url": sim.url, "key": sim.verifier_key}, headers=auth
        )
        assert enrolled.status_code == 201, enrolled.text
        assert client.post("/v1/admin/harvest", headers=auth).status_code == 200
        g = Graph().parse(data=client.get("/v1/dcat").text, format="turtle")
        figures = {}
        for cid in (exact, bounded):
            ds = next(g.subjects(DCTERMS.identifier, Literal(cid)))
            found = client.get("/v1/search", params={"collection": cid}).json()
            assert _int(g, ds, BBF.numberOfRecordsMin) == found["total"]["min"]
            assert _int(g, ds, BBF.numberOfRecordsMax) == found["total"]["max"]
            assert _int(g, ds, BBF.numberOfUniqueIndividualsMin) == found["donors"]["min"]
            assert _int(g, ds, BBF.numberOfUniqueIndividualsMax) == found["donors"]["max"]
            figures[cid] = (
                _int(g, ds, HEALTH.numberOfRecords),
                _int(g, ds, HEALTH.numberOfUniqueIndividuals),
            )
    assert figures[exact] == (sim.k, sim.k)
    assert figures[bounded] == (None, None)
