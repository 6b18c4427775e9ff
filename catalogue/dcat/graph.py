"""The DCAT-AP 3 / HealthDCAT-AP graph of the catalogue: the catalogue, one catalogue and
publisher per node, one dataset per live collection, and the search and Beacon services.

Counts come from the same tally `/v1/search?collection=ID` runs, restricted to the
collection's node, so each dataset's figures are the search's (catalogue.dcat.counts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from rdflib import RDF, RDFS, BNode, Graph, Literal, URIRef
from sqlalchemy import Connection, func, select

from catalogue.context import Context
from catalogue.dcat.counts import count_triples
from catalogue.dcat.terms import (
    ACCESS_NON_PUBLIC,
    AVAILABILITY_STABLE,
    BBF,
    BEACON_SPEC,
    DCAT,
    DCATAP,
    DCTERMS,
    EHDS,
    FILE_TYPE_JSON,
    FOAF,
    HEALTH_CATEGORY_BIOBANK,
    HEALTHDCATAP,
    LANGUAGES,
    THEME_HEAL,
    THEME_SCHEME,
    VCARD,
    XSD,
    add_fixed_concepts,
    bind_prefixes,
    country,
)
from catalogue.models import combo_diagnoses, combos, nodes, records
from catalogue.search.filters import parse_filters
from catalogue.search.tally_arrays import tally
from protocol.codelists import CodeLists
from protocol.errors import ConfigError

__all__ = ["catalogue_graph"]

_AGE_UNIT_YEARS = {"years": 1.0, "months": 12.0, "weeks": 52.0, "days": 365.0}


@dataclass(frozen=True)
class _Node:
    id: int
    origin: str
    url: str
    name: str
    country: str | None
    tree_size: int
    verified_at: str | None
    descriptor: dict[str, Any]


def catalogue_graph(conn: Connection, ctx: Context, base: str) -> Graph:
    """The whole export for the catalogue served at `base` (no trailing slash)."""
    g = Graph()
    bind_prefixes(g)
    add_fixed_concepts(g)
    node_list = [
        _Node(
            r.id,
            r.origin,
            r.url,
            r.name or r.origin,
            r.country,
            r.tree_size,
            r.verified_at,
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
    labels = _labels()
    spans = _group_spans(conn)
    group_diagnoses = _group_diagnoses(conn)
    for (nid, kind, rid), rec in sorted(content.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        if kind != "collection":
            continue
        n = by_id[nid]
        node_cat, publisher = node_catalogues[nid]
        ds = URIRef(f"{_node_iri(base, n.origin)}#collection/{quote(rid, safe=':')}")
        g.add((cat, DCAT.dataset, ds))
        g.add((node_cat, DCAT.dataset, ds))
        g.add((search_svc, DCAT.servesDataset, ds))
        g.add((beacon_svc, DCAT.servesDataset, ds))
        biobank = content.get((nid, "biobank", rec.get("biobank", "")), {})
        _dataset(g, ds, rec, biobank, n, publisher, base, spans.get((nid, rid)))
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
        _keywords(g, ds, rec, types, diagnoses, labels)
        _distributions(g, ds, rid, base, search_svc, beacon_svc)
    return g


@dataclass(frozen=True)
class _Span:
    """What a collection's live sample groups cover: age bands (years) and periods."""

    age_min: int | None
    age_max: int | None
    year_from: int | None
    year_to: int | None


def _group_spans(conn: Connection) -> dict[tuple[int, str], _Span]:
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
    return {(r[0], r[1]): _Span(r[2], r[3], r[4], r[5]) for r in conn.execute(q)}


def _group_diagnoses(conn: Connection) -> dict[tuple[int, str], set[tuple[str, str]]]:
    """Per collection, the diagnoses its live groups state: ICD-10 categories (three
    characters) and ORPHA codes."""
    q = (
        select(
            combos.c.node_id,
            combos.c.collection,
            combo_diagnoses.c.system,
            combo_diagnoses.c.code,
            combo_diagnoses.c.code3,
        )
        .join(combo_diagnoses, combo_diagnoses.c.combo_id == combos.c.id)
        .where(combos.c.n_max > 0)
        .distinct()
    )
    out: dict[tuple[int, str], set[tuple[str, str]]] = {}
    for r in conn.execute(q):
        code = r.code3 if r.system == "ICD-10" and r.code3 else r.code
        out.setdefault((r.node_id, r.collection), set()).add((r.system, code))
    return out


def _records(conn: Connection, node_ids: list[int]) -> dict[tuple[int, str, str], dict[str, Any]]:
    q = select(records.c.node_id, records.c.kind, records.c.record_id, records.c.content).where(
        records.c.node_id.in_(node_ids)
    )
    return {(r.node_id, r.kind, r.record_id): orjson.loads(r.content) for r in conn.execute(q)}


def _node_iri(base: str, origin: str) -> str:
    return f"{base}/v1/nodes/{quote(origin, safe='/')}"


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


def _node_catalogue(g: Graph, base: str, cat: URIRef, n: _Node) -> tuple[URIRef, URIRef]:
    """A node as a publisher (foaf:Agent) and as a catalogue of its own."""
    iri = _node_iri(base, n.origin)
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
    if n.verified_at:
        g.add((node_cat, DCTERMS.modified, Literal(n.verified_at, datatype=XSD.dateTime)))
    g.add((node_cat, DCTERMS.isPartOf, cat))
    g.add((cat, DCAT.catalog, node_cat))
    g.add((cat, DCTERMS.hasPart, node_cat))
    return node_cat, publisher


def _dataset(
    g: Graph,
    ds: URIRef,
    rec: dict[str, Any],
    biobank: dict[str, Any],
    n: _Node,
    publisher: URIRef,
    base: str,
    span: _Span | None,
) -> None:
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, DCTERMS.title, Literal(str(rec.get("name") or rec["id"]))))
    description = rec.get("description") or (
        f"Collection {rec.get('name') or rec['id']} of {biobank.get('name') or rec.get('biobank')}"
    )
    g.add((ds, DCTERMS.description, Literal(str(description))))
    g.add((ds, DCTERMS.identifier, Literal(rec["id"])))
    g.add((ds, DCTERMS.publisher, publisher))
    g.add((ds, DCTERMS.accessRights, ACCESS_NON_PUBLIC))
    g.add((ds, DCATAP.applicableLegislation, EHDS))
    g.add((ds, DCAT.theme, THEME_HEAL))
    g.add((ds, HEALTHDCATAP.healthCategory, HEALTH_CATEGORY_BIOBANK))
    g.add((ds, HEALTHDCATAP.hasStructuredData, Literal(True)))
    place = country(g, biobank.get("country") or n.country)
    if place is not None:
        g.add((ds, DCTERMS.spatial, place))
    if biobank:
        creator = URIRef(
            f"{_node_iri(base, n.origin)}#biobank/{quote(str(biobank['id']), safe=':')}"
        )
        g.add((creator, RDF.type, FOAF.Agent))
        g.add((creator, FOAF.name, Literal(str(biobank.get("name") or biobank["id"]))))
        g.add((ds, DCTERMS.creator, creator))
    if rec.get("url"):
        page = URIRef(str(rec["url"]))
        g.add((page, RDF.type, FOAF.Document))
        g.add((ds, DCAT.landingPage, page))
    contact = rec.get("contact") or biobank.get("contact") or n.descriptor.get("contact")
    if isinstance(contact, dict) and contact.get("email"):
        kind = BNode()
        g.add((ds, DCAT.contactPoint, kind))
        g.add((kind, RDF.type, VCARD.Organization))
        g.add((kind, RDF.type, VCARD.Kind))
        name = contact.get("name") or contact.get("role") or biobank.get("name") or n.name
        g.add((kind, VCARD.fn, Literal(str(name))))
        g.add((kind, VCARD.hasEmail, URIRef(f"mailto:{contact['email']}")))
    ages = _typical_ages(rec.get("age"))
    if ages is None and span is not None and (span.age_min, span.age_max) != (None, None):
        ages = (span.age_min, span.age_max)
    if span is not None and span.year_from is not None and span.year_to is not None:
        period = BNode()
        g.add((ds, DCTERMS.temporal, period))
        g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        g.add((period, DCAT.startDate, Literal(str(span.year_from), datatype=XSD.gYear)))
        g.add((period, DCAT.endDate, Literal(str(span.year_to), datatype=XSD.gYear)))
    if ages is not None:
        low, high = ages
        if low is not None:
            g.add((ds, HEALTHDCATAP.minTypicalAge, Literal(low, datatype=XSD.nonNegativeInteger)))
        if high is not None:
            g.add((ds, HEALTHDCATAP.maxTypicalAge, Literal(high, datatype=XSD.nonNegativeInteger)))
    prov = BNode()
    g.add((ds, DCTERMS.provenance, prov))
    g.add((prov, RDF.type, DCTERMS.ProvenanceStatement))
    log = f"{n.url.rstrip('/')}/v1/log/checkpoint" if n.url else None
    mirror = f"{_node_iri(base, n.origin)}/log/checkpoint"
    text = (
        f"Published by node {n.origin} in its signed, append-only log"
        + (f" ({log})" if log else "")
        + f"; verified by this catalogue at checkpoint size {n.tree_size}"
        + (f" on {n.verified_at}" if n.verified_at else "")
        + f"; the catalogue's mirror of the log: {mirror}."
    )
    g.add((prov, RDFS.label, Literal(text, lang="en")))
    if log:
        g.add((prov, BBF.log, URIRef(log)))
    g.add((prov, BBF.mirror, URIRef(mirror)))
    g.add((prov, BBF.checkpointSize, Literal(n.tree_size, datatype=XSD.nonNegativeInteger)))
    if n.verified_at:
        g.add((prov, BBF.verifiedAt, Literal(n.verified_at, datatype=XSD.dateTime)))


def _typical_ages(age: Any) -> tuple[int | None, int | None] | None:
    """The collection's declared age range in whole years (widened, never narrowed)."""
    if not isinstance(age, dict):
        return None
    scale = _AGE_UNIT_YEARS.get(str(age.get("unit", "years")), 1.0)
    low = age.get("min")
    high = age.get("max")
    if low is None and high is None:
        return None
    return (
        None if low is None else math.floor(low / scale),
        None if high is None else math.ceil(high / scale),
    )


@functools.lru_cache(maxsize=1)
def _labels() -> dict[str, dict[str, str]]:
    lists = CodeLists.default()
    out: dict[str, dict[str, str]] = {}
    for name in ("sample-type", "orpha", "icd10-chapter"):
        try:
            out[name] = {c.code: c.en for c in lists.get(name).entries}
        except ConfigError:
            out[name] = {}
    return out


def _keywords(
    g: Graph,
    ds: URIRef,
    rec: dict[str, Any],
    group_types: Iterable[str],
    group_diagnoses: Iterable[tuple[str, str]],
    labels: dict[str, dict[str, str]],
) -> None:
    """Keywords from the collection's sample types and diagnoses, declared and in its
    groups (ICD-10 codes, ORPHA codes with their names)."""
    words: set[str] = set()
    for code in set(rec.get("sample_types") or []) | set(group_types):
        words.add(labels["sample-type"].get(code, code))
    declared = [(d.get("system"), d.get("code")) for d in rec.get("diagnoses") or []]
    for system, code in {*declared, *group_diagnoses}:
        if system == "ORPHA":
            name = labels["orpha"].get(code)
            words.add(f"{code} {name}" if name else str(code))
        elif system == "ICD-10":
            words.add(f"ICD-10 {code}")
    for word in sorted(words):
        g.add((ds, DCAT.keyword, Literal(word, lang="en")))


def _distributions(
    g: Graph, ds: URIRef, rid: str, base: str, search: URIRef, beacon: URIRef
) -> None:
    for suffix, service, access, title in (
        (
            "search",
            search,
            f"{base}/v1/search?collection={quote(rid, safe='')}",
            "Counts through the catalogue search",
        ),
        ("beacon", beacon, f"{base}/beacon/v2", "Counts through the catalogue's Beacon v2"),
    ):
        dist = URIRef(f"{ds}/{suffix}")
        g.add((ds, DCAT.distribution, dist))
        g.add((dist, RDF.type, DCAT.Distribution))
        g.add((dist, DCTERMS.title, Literal(title, lang="en")))
        g.add(
            (
                dist,
                DCTERMS.description,
                Literal(
                    "Aggregate counts only (interval sums over published sample groups); "
                    "samples and data are requested from the biobank.",
                    lang="en",
                ),
            )
        )
        g.add((dist, DCAT.accessURL, URIRef(access)))
        g.add((dist, DCAT.accessService, service))
        g.add((dist, DCTERMS.format, FILE_TYPE_JSON))
        g.add((dist, DCATAP.availability, AVAILABILITY_STABLE))
        g.add((dist, DCATAP.applicableLegislation, EHDS))
