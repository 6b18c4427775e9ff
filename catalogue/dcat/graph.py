"""The DCAT-AP 3 / HealthDCAT-AP graph of the catalogue: the catalogue, one catalogue and
publisher per node, one dataset per live collection, and the search and Beacon services.

Counts come from the same tally `/v1/search?collection=ID` runs, restricted to the
collection's node, so each dataset's figures are the search's (catalogue.dcat.counts).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from rdflib import RDF, Graph, Literal, URIRef
from sqlalchemy import Connection, func, select

from catalogue.context import Context
from catalogue.dcat.counts import count_triples
from catalogue.dcat.dataset import (
    GroupSpan,
    NodeInfo,
    add_dataset,
    add_distributions,
    add_keywords,
    labels,
    node_iri,
)
from catalogue.dcat.terms import (
    ACCESS_NON_PUBLIC,
    BBF,
    BEACON_SPEC,
    DCAT,
    DCATAP,
    DCTERMS,
    EHDS,
    FOAF,
    LANGUAGES,
    THEME_HEAL,
    THEME_SCHEME,
    XSD,
    add_fixed_concepts,
    bind_prefixes,
    country,
)
from catalogue.models import combos, nodes, records
from catalogue.search.filters import parse_filters
from catalogue.search.tally_arrays import tally

__all__ = ["catalogue_graph"]


def catalogue_graph(conn: Connection, ctx: Context, base: str) -> Graph:
    """The whole export for the catalogue served at `base` (no trailing slash)."""
    g = Graph()
    bind_prefixes(g)
    add_fixed_concepts(g)
    node_list = [
        NodeInfo(
            r.id,
            r.origin,
            r.url,
            r.name or r.origin,
            r.country,
            r.tree_size,
            r.verified_at,
            r.enrolled_at,
            orjson.loads(r.descriptor),
        )
        for r in conn.execute(select(nodes).where(nodes.c.state != "retired").order_by(nodes.c.id))
    ]
    by_id = {n.id: n for n in node_list}
    content = _records(conn, list(by_id))

    cat = URIRef(f"{base}/v1/dcat#catalogue")
    operator = URIRef(f"{base}/v1/dcat#operator")
    g.add((operator, RDF.type, FOAF.Agent))
    g.add((operator, FOAF.name, Literal(f"Biobank catalogue {ctx.settings.origin}")))
    g.add((cat, RDF.type, DCAT.Catalog))
    g.add((cat, DCTERMS.title, Literal("Federated biobank catalogue", lang="en")))
    g.add(
        (
            cat,
            DCTERMS.description,
            Literal(
                "Collections of the biobank nodes this catalogue harvests and verifies "
                "(signed, append-only logs); counts are interval sums over published "
                "sample groups.",
                lang="en",
            ),
        )
    )
    g.add((cat, DCTERMS.publisher, operator))
    g.add((cat, DCAT.themeTaxonomy, THEME_SCHEME))
    home = URIRef(f"{base}/")
    g.add((home, RDF.type, FOAF.Document))
    g.add((cat, FOAF.homepage, home))
    for lang in LANGUAGES.values():
        g.add((cat, DCTERMS.language, lang))
    for n in node_list:
        place = country(g, n.country)
        if place is not None:
            g.add((cat, DCTERMS.spatial, place))
    if node_list:  # in this catalogue since the first node's enrolment
        first = min(n.enrolled_at for n in node_list)
        g.add((cat, DCTERMS.issued, Literal(first, datatype=XSD.dateTime)))
    times = [n.verified_at for n in node_list if n.verified_at]
    if times:
        g.add((cat, DCTERMS.modified, Literal(max(times), datatype=XSD.dateTime)))

    search_svc, beacon_svc = _services(g, base, operator)
    g.add((cat, DCAT.service, search_svc))
    g.add((cat, DCAT.service, beacon_svc))

    node_catalogues: dict[int, tuple[URIRef, URIRef]] = {}
    for n in node_list:
        node_catalogues[n.id] = _node_catalogue(g, base, cat, n)

    cube = ctx.cube.arrays(conn)
    names = labels()
    spans = _group_spans(conn)
    group_diagnoses = _group_diagnoses(conn)
    for (nid, kind, rid), rec in sorted(content.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        if kind != "collection":
            continue
        n = by_id[nid]
        node_cat, publisher = node_catalogues[nid]
        ds = URIRef(f"{node_iri(base, n.origin)}#collection/{quote(rid, safe=':')}")
        g.add((cat, DCAT.dataset, ds))
        g.add((node_cat, DCAT.dataset, ds))
        g.add((search_svc, DCAT.servesDataset, ds))
        g.add((beacon_svc, DCAT.servesDataset, ds))
        biobank = content.get((nid, "biobank", rec.get("biobank", "")), {})
        add_dataset(g, ds, rec, biobank, n, publisher, base, spans.get((nid, rid)))
        if (nid, rid) in cube.with_groups:
            f = parse_filters({"collection": [rid]}, ctx.vocab)
            t = tally(cube, f, ctx.vocab, {nid})
            low = sum(a for a, _b in t.total.values())
            high = sum(b for _a, b in t.total.values())
            count_triples(g, ds, "numberOfRecords", low, high)
            count_triples(g, ds, "numberOfUniqueIndividuals", *t.donors)
            g.add((ds, BBF.countSource, Literal("groups")))
            types = {code for (code, _nid) in t.facets["sample_type"] if code is not None}
            diagnoses = group_diagnoses.get((nid, rid), set())
        else:
            if isinstance(rec.get("size"), int):
                size = rec["size"]
                count_triples(g, ds, "numberOfRecords", size, size)
            g.add((ds, BBF.countSource, Literal("declared")))
            types = set()
            diagnoses = set()
        add_keywords(g, ds, rec, types, diagnoses, names)
        add_distributions(g, ds, rid, base, search_svc, beacon_svc)
    return g


def _group_spans(conn: Connection) -> dict[tuple[int, str], GroupSpan]:
    q = (
        select(
            combos.c.node_id,
            combos.c.collection,
            func.min(combos.c.age_min),
            func.max(combos.c.age_max),
            func.min(combos.c.year_from),
            func.max(combos.c.year_to),
        )
        .where(combos.c.n_max > 0)
        .group_by(combos.c.node_id, combos.c.collection)
    )
    return {(r[0], r[1]): GroupSpan(r[2], r[3], r[4], r[5]) for r in conn.execute(q)}


def _group_diagnoses(conn: Connection) -> dict[tuple[int, str], set[tuple[str, str]]]:
    """Per collection, the diagnoses its live groups state: ICD-10 categories (three
    characters) and ORPHA codes."""
    q = (
        select(combos.c.node_id, combos.c.collection, combos.c.diagnoses)
        .where(combos.c.n_max > 0, combos.c.diagnoses.is_not(None))
        .distinct()
    )
    out: dict[tuple[int, str], set[tuple[str, str]]] = {}
    for node_id, collection, diagnoses in conn.execute(q):
        found = out.setdefault((node_id, collection), set())
        for system, code, code3, _chapter in orjson.loads(diagnoses):
            found.add((system, code3 if system == "ICD-10" and code3 else code))
    return out


def _records(conn: Connection, node_ids: list[int]) -> dict[tuple[int, str, str], dict[str, Any]]:
    q = select(records.c.node_id, records.c.kind, records.c.record_id, records.c.content).where(
        records.c.node_id.in_(node_ids)
    )
    return {(r.node_id, r.kind, r.record_id): orjson.loads(r.content) for r in conn.execute(q)}


def _services(g: Graph, base: str, operator: URIRef) -> tuple[URIRef, URIRef]:
    search = URIRef(f"{base}/v1/dcat#search-service")
    beacon = URIRef(f"{base}/v1/dcat#beacon-service")
    openapi = URIRef(f"{base}/openapi.json")
    g.add((openapi, RDF.type, FOAF.Document))
    for svc, title, endpoint, description, words in (
        (
            search,
            "Biobank catalogue search",
            f"{base}/v1/search",
            "Faceted search over the verified sample groups; every count is an interval.",
            ("biobank", "samples", "search"),
        ),
        (
            beacon,
            "Biobank catalogue Beacon v2",
            f"{base}/beacon/v2",
            "GA4GH Beacon v2 (boolean and count granularity) over the same sample groups.",
            ("biobank", "samples", "Beacon v2"),
        ),
    ):
        g.add((svc, RDF.type, DCAT.DataService))
        g.add((svc, DCTERMS.title, Literal(title, lang="en")))
        g.add((svc, DCTERMS.description, Literal(description, lang="en")))
        g.add((svc, DCAT.endpointURL, URIRef(endpoint)))
        g.add((svc, DCTERMS.publisher, operator))
        g.add((svc, DCAT.theme, THEME_HEAL))
        g.add((svc, DCTERMS.accessRights, ACCESS_NON_PUBLIC))
        g.add((svc, DCATAP.applicableLegislation, EHDS))
        for word in words:
            g.add((svc, DCAT.keyword, Literal(word, lang="en")))
    g.add((search, DCAT.endpointDescription, openapi))
    g.add((beacon, DCTERMS.conformsTo, BEACON_SPEC))
    beacon_map = URIRef(f"{base}/beacon/v2/map")
    g.add((beacon, DCAT.endpointDescription, beacon_map))
    return search, beacon


def _node_catalogue(g: Graph, base: str, cat: URIRef, n: NodeInfo) -> tuple[URIRef, URIRef]:
    """A node as a publisher (foaf:Agent) and as a catalogue of its own."""
    iri = node_iri(base, n.origin)
    publisher = URIRef(f"{iri}#publisher")
    node_cat = URIRef(f"{iri}#catalogue")
    organisation = str(n.descriptor.get("organisation") or n.name)
    g.add((publisher, RDF.type, FOAF.Agent))
    g.add((publisher, RDF.type, FOAF.Organization))
    g.add((publisher, FOAF.name, Literal(organisation)))
    if n.url:
        page = URIRef(n.url)
        g.add((page, RDF.type, FOAF.Document))
        g.add((publisher, FOAF.homepage, page))
    g.add((node_cat, RDF.type, DCAT.Catalog))
    g.add((node_cat, DCTERMS.title, Literal(n.name)))
    g.add(
        (
            node_cat,
            DCTERMS.description,
            Literal(f"Collections published in the signed log of node {n.origin}.", lang="en"),
        )
    )
    g.add((node_cat, DCTERMS.publisher, publisher))
    g.add((node_cat, DCAT.themeTaxonomy, THEME_SCHEME))
    g.add((node_cat, DCTERMS.language, LANGUAGES["ENG"]))
    if n.url:
        g.add((node_cat, FOAF.homepage, URIRef(n.url)))
    place = country(g, n.country)
    if place is not None:
        g.add((node_cat, DCTERMS.spatial, place))
    g.add((node_cat, DCTERMS.issued, Literal(n.enrolled_at, datatype=XSD.dateTime)))
    if n.verified_at:
        g.add((node_cat, DCTERMS.modified, Literal(n.verified_at, datatype=XSD.dateTime)))
    g.add((node_cat, DCTERMS.isPartOf, cat))
    g.add((cat, DCAT.catalog, node_cat))
    g.add((cat, DCTERMS.hasPart, node_cat))
    return node_cat, publisher
