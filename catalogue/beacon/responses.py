"""The Beacon v2 framework documents this Beacon answers with (docs/beacon.md).

Counts come from the search's intervals {"min", "max"}: an exact interval gives
``numTotalResults = n`` and ``countPrecision: "exact"``; an inexact one gives the upper bound
(``numTotalResults = max``, ``countAdjustedTo: [max]``, ``countPrecision: "imprecise"``,
as the Beacon reference implementation marks a count raised to its threshold)
and the interval itself in ``info.count``. ``exists`` is true when a matching group exists
(max > 0), which the logs already show publicly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "API_VERSION",
    "ENTRY_TYPES",
    "Granted",
    "beacon_id",
    "configuration",
    "count_response",
    "entry_types",
    "error_response",
    "filtering_terms_response",
    "info_response",
    "map_response",
    "service_info",
]

API_VERSION = "v2.0.0"
SERVICE_VERSION = "1.0.0"
Granted = Literal["boolean", "count"]
GRANTED: tuple[Granted, ...] = ("boolean", "count")


@dataclass(frozen=True)
class EntryType:
    id: str  # the Beacon entry type
    path: str  # the endpoint under the base path
    name: str
    term: tuple[str, str]  # its ontology term
    schema: str  # the default model schema
    counts: Literal["total", "donors"]  # which /v1/search interval it counts


ENTRY_TYPES: tuple[EntryType, ...] = (
    EntryType(
        "biosample",
        "biosamples",
        "Biosample",
        ("NCIT:C70699", "Biospecimen"),
        "beacon-biosample-v2.0.0",
        "total",
    ),
    EntryType(
        "individual",
        "individuals",
        "Individual",
        ("NCIT:C25190", "Person"),
        "beacon-individual-v2.0.0",
        "donors",
    ),
)
BY_PATH = {e.path: e for e in ENTRY_TYPES}
_MODEL_URL = (
    "https://github.com/ga4gh-beacon/beacon-v2/tree/main/models/json/beacon-v2-default-model"
)


def beacon_id(origin: str) -> str:
    """The Beacon id: the catalogue origin's host reversed, then its path (org.example.x/...)."""
    host, _, path = origin.partition("/")
    rev = ".".join(reversed(host.split(".")))
    return rev + ("." + path.replace("/", ".") if path else "")


def _schemas(entry: EntryType) -> list[dict[str, str]]:
    return [{"entityType": entry.id, "schema": entry.schema}]


def _informational_meta(origin: str) -> dict[str, Any]:
    return {"beaconId": beacon_id(origin), "apiVersion": API_VERSION, "returnedSchemas": []}


def _meta(
    origin: str,
    entry: EntryType,
    requested: str,
    returned: Granted,
    filter_ids: list[str],
    test_mode: bool,
) -> dict[str, Any]:
    return {
        "beaconId": beacon_id(origin),
        "apiVersion": API_VERSION,
        "returnedSchemas": _schemas(entry),
        "returnedGranularity": returned,
        "receivedRequestSummary": {
            "apiVersion": API_VERSION,
            "requestedSchemas": _schemas(entry),
            "filters": filter_ids,
            "pagination": {"skip": 0, "limit": 0},
            "requestedGranularity": requested,
            "testMode": test_mode,
        },
        "testMode": test_mode,
    }


def count_response(
    origin: str,
    entry: EntryType,
    requested: str,
    returned: Granted,
    filter_ids: list[str],
    span: dict[str, int],
    search_url: str,
    test_mode: bool = False,
) -> dict[str, Any]:
    """The boolean or count response for the search interval `span` ({"min", "max"})."""
    summary: dict[str, Any] = {"exists": span["max"] > 0}
    info: dict[str, Any] = {"search": search_url}
    if returned == "count":
        exact = span["min"] == span["max"]
        summary["numTotalResults"] = span["max"]
        summary["countPrecision"] = "exact" if exact else "imprecise"
        if not exact:
            summary["countAdjustedTo"] = [span["max"]]
        info["count"] = {"min": span["min"], "max": span["max"]}
    return {
        "meta": _meta(origin, entry, requested, returned, filter_ids, test_mode),
        "responseSummary": summary,
        "info": info,
    }


def error_response(
    origin: str,
    entry: EntryType | None,
    requested: str,
    filter_ids: list[str],
    code: int,
    message: str,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Beacon error response (beaconErrorResponse.json)."""
    meta = _meta(origin, entry or ENTRY_TYPES[0], requested, "boolean", filter_ids, False)
    if entry is None:
        meta["returnedSchemas"] = []
    out: dict[str, Any] = {
        "meta": meta,
        "error": {"errorCode": code, "errorMessage": message},
    }
    if info:
        out["info"] = info
    return out


def _organization(origin: str, organisation: str | None, contact: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": beacon_id(origin), "name": organisation or origin}
    if contact:
        out["contactUrl"] = contact_url(contact)
    return out


def info_response(
    origin: str, base_url: str, organisation: str | None, contact: str | None
) -> dict[str, Any]:
    return {
        "meta": _informational_meta(origin),
        "response": {
            "id": beacon_id(origin),
            "name": f"Biobank catalogue {origin}",
            "apiVersion": API_VERSION,
            "environment": "prod",
            "organization": _organization(origin, organisation, contact),
            "description": "Sample and donor counts of a federated biobank metadata catalogue; "
            "counts are those of its /v1/search (intervals, see info.count).",
            "version": "v" + SERVICE_VERSION,
            "welcomeUrl": base_url,
            "info": {"grantedGranularities": list(GRANTED)},
        },
    }


def service_info(
    origin: str,
    base_url: str,
    organisation: str | None,
    contact: str | None,
    *,
    artifact: str,
    name: str,
    description: str,
    version: str,
) -> dict[str, Any]:
    """A GA4GH service-info 1.0.0 document."""
    out: dict[str, Any] = {
        "id": beacon_id(origin),
        "name": name,
        "type": {"group": "org.ga4gh", "artifact": artifact, "version": version},
        "description": description,
        "organization": {"name": organisation or origin, "url": base_url},
        "version": SERVICE_VERSION,
        "environment": "prod",
        "documentationUrl": base_url.rstrip("/") + "/docs",
    }
    if contact:
        out["contactUrl"] = contact_url(contact)
    return out


def contact_url(contact: str) -> str:
    """A contact as a URL: an e-mail address becomes ``mailto:`` (RFC 6068), as the
    service-info and Beacon schemas ask; a URL stays as it is."""
    return contact if ":" in contact else f"mailto:{contact}"


def map_response(origin: str, root: str) -> dict[str, Any]:
    root = root.rstrip("/")
    return {
        "meta": _informational_meta(origin),
        "response": {
            "$schema": "beacon-map-v2.0.0",
            "endpointSets": {
                e.id: {"entryType": e.id, "rootUrl": f"{root}/{e.path}", "endpoints": {}}
                for e in ENTRY_TYPES
            },
        },
    }


def _entry_types() -> dict[str, Any]:
    return {
        e.id: {
            "id": e.id,
            "name": e.name,
            "ontologyTermForThisType": {"id": e.term[0], "label": e.term[1]},
            "partOfSpecification": "Beacon " + API_VERSION,
            "defaultSchema": {
                "id": e.schema,
                "name": f"Default schema for {e.name.lower()}s",
                "referenceToSchemaDefinition": f"{_MODEL_URL}/{e.path}/defaultSchema.json",
                "schemaVersion": API_VERSION,
            },
            "nonFilteredQueriesAllowed": True,
        }
        for e in ENTRY_TYPES
    }


def entry_types(origin: str) -> dict[str, Any]:
    return {"meta": _informational_meta(origin), "response": {"entryTypes": _entry_types()}}


def configuration(origin: str) -> dict[str, Any]:
    return {
        "meta": _informational_meta(origin),
        "response": {
            "$schema": "beacon-configuration-v2.0.0",
            "maturityAttributes": {"productionStatus": "PROD"},
            "securityAttributes": {"defaultGranularity": "count", "securityLevels": ["PUBLIC"]},
            "entryTypes": _entry_types(),
        },
    }


def filtering_terms_response(origin: str, terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "meta": _informational_meta(origin),
        "response": {
            "filteringTerms": terms,
            "resources": [
                {
                    "id": "ICD10",
                    "name": "ICD-10",
                    "url": "https://icd.who.int/browse10",
                    "nameSpacePrefix": "ICD10",
                },
                {
                    "id": "ORPHA",
                    "name": "Orphanet Rare Disease Ontology",
                    "url": "https://www.orpha.net",
                    "nameSpacePrefix": "ORPHA",
                },
                {
                    "id": "DUO",
                    "name": "Data Use Ontology",
                    "url": "http://purl.obolibrary.org/obo/duo.owl",
                    "nameSpacePrefix": "DUO",
                },
                {
                    "id": "NCIT",
                    "name": "NCI Thesaurus",
                    "url": "http://purl.obolibrary.org/obo/ncit.owl",
                    "nameSpacePrefix": "NCIT",
                },
            ],
        },
    }
