"""Namespaces and the fixed concepts the export refers to, each typed and labelled so that
the DCAT-AP shapes' class checks hold without loading the EU vocabularies."""

from __future__ import annotations

from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, SKOS, XSD

__all__ = [
    "ACCESS_NON_PUBLIC",
    "BBF",
    "DCAT",
    "DCATAP",
    "DCTERMS",
    "EHDS",
    "ELI",
    "FOAF",
    "HEALTH_CATEGORY_BIOBANK",
    "HEALTHDCATAP",
    "LANGUAGES",
    "SKOS",
    "THEME_HEAL",
    "VCARD",
    "XSD",
    "AVAILABILITY_STABLE",
    "add_fixed_concepts",
    "bind_prefixes",
    "country",
]

DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTHDCATAP = Namespace("http://healthdataportal.eu/ns/health#")
ELI = Namespace("http://data.europa.eu/eli/ontology#")
# this project's own terms: count intervals and provenance details (docs/dcat.md)
BBF = Namespace("https://w3id.org/biobank-federation/ns#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")

_AUTHORITY = "http://publications.europa.eu/resource/authority/"
THEME_SCHEME = URIRef(_AUTHORITY + "data-theme")
THEME_HEAL = URIRef(_AUTHORITY + "data-theme/HEAL")
ACCESS_SCHEME = URIRef(_AUTHORITY + "access-right")
ACCESS_NON_PUBLIC = URIRef(_AUTHORITY + "access-right/NON_PUBLIC")
LANGUAGE_SCHEME = URIRef(_AUTHORITY + "language")
LANGUAGES = {
    "ENG": URIRef(_AUTHORITY + "language/ENG"),
    "ZHO": URIRef(_AUTHORITY + "language/ZHO"),
}
FILE_TYPE_JSON = URIRef(_AUTHORITY + "file-type/JSON")
AVAILABILITY_STABLE = URIRef(_AUTHORITY + "planned-availability/STABLE")
# ISO 3166-1 alpha-2 (the country code list) -> alpha-3, as the EU country authority names
# them; "EU" (a Directory code, not a country) has no entry
_ALPHA3 = {
    "AT": "AUT",
    "BE": "BEL",
    "BG": "BGR",
    "HR": "HRV",
    "CY": "CYP",
    "CZ": "CZE",
    "DK": "DNK",
    "EE": "EST",
    "FI": "FIN",
    "FR": "FRA",
    "DE": "DEU",
    "GR": "GRC",
    "HU": "HUN",
    "IE": "IRL",
    "IT": "ITA",
    "LV": "LVA",
    "LT": "LTU",
    "LU": "LUX",
    "MT": "MLT",
    "NL": "NLD",
    "PL": "POL",
    "PT": "PRT",
    "RO": "ROU",
    "SK": "SVK",
    "SI": "SVN",
    "ES": "ESP",
    "SE": "SWE",
    "IS": "ISL",
    "LI": "LIE",
    "NO": "NOR",
    "GB": "GBR",
    "CH": "CHE",
    "CN": "CHN",
    "TR": "TUR",
    "IL": "ISR",
    "QA": "QAT",
    "UG": "UGA",
    "US": "USA",
    "CA": "CAN",
    "AU": "AUS",
    "NZ": "NZL",
    "VN": "VNM",
    "RU": "RUS",
    "UA": "UKR",
    "MD": "MDA",
    "GE": "GEO",
    "AM": "ARM",
    "RS": "SRB",
    "ME": "MNE",
    "MK": "MKD",
    "AL": "ALB",
    "BA": "BIH",
    "JP": "JPN",
    "KR": "KOR",
    "SG": "SGP",
    "IN": "IND",
    "BR": "BRA",
    "AR": "ARG",
    "MX": "MEX",
    "ZA": "ZAF",
    "NG": "NGA",
    "KE": "KEN",
    "EG": "EGY",
    "SA": "SAU",
    "AE": "ARE",
}
# Regulation (EU) 2025/327, the European Health Data Space
EHDS = URIRef("http://data.europa.eu/eli/reg/2025/327/oj")
# HealthDCAT-AP names health categories without a vocabulary pinned here: this concept is
# the project's own until one is (docs/dcat.md)
HEALTH_CATEGORY_BIOBANK = BBF["health-category-biobank"]
BEACON_SPEC = URIRef("https://github.com/ga4gh-beacon/beacon-v2")


def country(g: Graph, code: str | None) -> URIRef | None:
    """The EU country authority's IRI for an ISO alpha-2 code, typed dct:Location."""
    alpha3 = _ALPHA3.get(code or "")
    if alpha3 is None:
        return None
    iri = URIRef(f"{_AUTHORITY}country/{alpha3}")
    g.add((iri, RDF.type, DCTERMS.Location))
    return iri


def bind_prefixes(g: Graph) -> None:
    for prefix, ns in (
        ("dcat", DCAT),
        ("dct", DCTERMS),
        ("foaf", FOAF),
        ("skos", SKOS),
        ("vcard", VCARD),
        ("xsd", XSD),
        ("dcatap", DCATAP),
        ("healthdcatap", HEALTHDCATAP),
        ("eli", ELI),
        ("bbf", BBF),
    ):
        g.bind(prefix, ns, replace=True)


def add_fixed_concepts(g: Graph) -> None:
    """The concepts every dataset shares, with the types and labels the shapes require."""
    g.add((THEME_SCHEME, RDF.type, SKOS.ConceptScheme))
    g.add((THEME_SCHEME, DCTERMS.title, Literal("Data theme", lang="en")))
    g.add((THEME_HEAL, RDF.type, SKOS.Concept))
    g.add((THEME_HEAL, SKOS.prefLabel, Literal("Health", lang="en")))
    g.add((THEME_HEAL, SKOS.inScheme, THEME_SCHEME))
    g.add((ACCESS_NON_PUBLIC, RDF.type, DCTERMS.RightsStatement))
    g.add((ACCESS_NON_PUBLIC, RDF.type, SKOS.Concept))
    g.add((ACCESS_NON_PUBLIC, SKOS.prefLabel, Literal("Non-public", lang="en")))
    g.add((ACCESS_NON_PUBLIC, SKOS.inScheme, ACCESS_SCHEME))
    g.add((EHDS, RDF.type, ELI.LegalResource))
    g.add((HEALTH_CATEGORY_BIOBANK, RDF.type, SKOS.Concept))
    g.add(
        (
            HEALTH_CATEGORY_BIOBANK,
            SKOS.prefLabel,
            Literal("Data from biobanks and associated databases", lang="en"),
        )
    )
    for code, iri in LANGUAGES.items():
        g.add((iri, RDF.type, DCTERMS.LinguisticSystem))
        g.add((iri, SKOS.inScheme, LANGUAGE_SCHEME))
        g.add((iri, DCTERMS.identifier, Literal(code)))
    g.add((FILE_TYPE_JSON, RDF.type, DCTERMS.MediaTypeOrExtent))
    g.add((AVAILABILITY_STABLE, RDF.type, SKOS.Concept))
    g.add((AVAILABILITY_STABLE, SKOS.prefLabel, Literal("Stable", lang="en")))
    g.add((BEACON_SPEC, RDF.type, DCTERMS.Standard))
