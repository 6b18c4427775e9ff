"""One collection as a `dcat:Dataset`: its HealthDCAT-AP properties, keywords, contact,
ages, period, provenance and its two distributions (counts: catalogue.dcat.counts)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rdflib import RDF, RDFS, BNode, Graph, Literal, URIRef

from catalogue.dcat.terms import (
    ACCESS_NON_PUBLIC,
    AVAILABILITY_STABLE,
    BBF,
    DCAT,
    DCATAP,
    DCTERMS,
    EHDS,
    FILE_TYPE_JSON,
    FOAF,
    HEALTH_CATEGORY_BIOBANK,
    HEALTHDCATAP,
    THEME_HEAL,
    VCARD,
    XSD,
    country,
)
from protocol.codelists import CodeLists
from protocol.errors import ConfigError

__all__ = [
    "GroupSpan",
    "NodeInfo",
    "add_dataset",
    "add_distributions",
    "add_keywords",
    "labels",
    "node_iri",
]

_AGE_UNIT_YEARS = {"years": 1.0, "months": 12.0, "weeks": 52.0, "days": 365.0}


@dataclass(frozen=True)
class NodeInfo:
    id: int
    origin: str
    url: str
    name: str
    country: str | None
    tree_size: int
    verified_at: str | None
    enrolled_at: str
    descriptor: dict[str, Any]


@dataclass(frozen=True)
class GroupSpan:
    """What a collection's live sample groups cover: age bands (years) and periods."""

    age_min: int | None
    age_max: int | None
    year_from: int | None
    year_to: int | None


def node_iri(base: str, origin: str) -> str:
    return f"{base}/v1/nodes/{quote(origin, safe='/')}"


def add_dataset(
    g: Graph,
    ds: URIRef,
    rec: dict[str, Any],
    biobank: dict[str, Any],
    n: NodeInfo,
    publisher: URIRef,
    base: str,
    span: GroupSpan | None,
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
            f"{node_iri(base, n.origin)}#biobank/{quote(str(biobank['id']), safe=':')}"
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
    mirror = f"{node_iri(base, n.origin)}/log/checkpoint"
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
def labels() -> dict[str, dict[str, str]]:
    lists = CodeLists.default()
    out: dict[str, dict[str, str]] = {}
    for name in ("sample-type", "orpha", "icd10-chapter"):
        try:
            out[name] = {c.code: c.en for c in lists.get(name).entries}
        except ConfigError:
            out[name] = {}
    return out


def add_keywords(
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


def add_distributions(
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
