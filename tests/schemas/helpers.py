"""Readers shared by the schemas/ tests: shipped files and codes found in the real external data."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KINDS = ("biobank", "collection", "sample-group", "node-descriptor", "log-entry")
BASE_ID = "https://w3id.org/biobank-federation/schemas/v1/"
#: kinds whose schema is past version 1 (the version is part of the $id)
VERSIONS = {"sample-group": 2}


def schema_id(kind: str) -> str:
    """The $id a shipped schema of ``kind`` has."""
    return f"{BASE_ID.replace('/v1/', f'/v{VERSIONS.get(kind, 1)}/')}{kind}.schema.json"


MOLGENIS = Path("molgenis-emx2-directory/data/biobank-directory/ontologies")
D2018 = Path("bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets")
IG = Path("samply-bbmri-fhir-ig/input/resources")
BUNDLE_FOLDERS = (
    "samply-bbmri-fhir-ig",
    "samply-directory-sync-service",
    "sthanke-miabis-on-fhir-generator",
)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def codelist(name: str) -> dict[str, Any]:
    return load_json(SCHEMAS / "codelists" / f"{name}.json")


def codes_of(name: str) -> set[str]:
    return {entry["code"] for entry in codelist(name)["codes"]}


def schema(kind: str) -> dict[str, Any]:
    return load_json(SCHEMAS / f"{kind}.schema.json")


def csv_column(path: Path, column: str) -> list[str]:
    """Every non-empty value of ``column`` in a comma-separated file."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [row[column] for row in csv.DictReader(handle) if row[column]]


def csv_multi_values(path: Path, column: str, delimiter: str = ",") -> set[str]:
    """The distinct comma-joined values of a multi-valued column (e.g. ``materials``)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter=delimiter)
        assert rows.fieldnames and column in rows.fieldnames, f"{path}: no column {column!r}"
        return {v.strip() for row in rows for v in (row[column] or "").split(",") if v.strip()}


def codesystem_codes(path: Path) -> list[str]:
    """All concept codes of a FHIR CodeSystem resource, nested concepts included."""
    out: list[str] = []
    stack = list(load_json(path).get("concept", []))
    while stack:
        concept = stack.pop()
        out.append(concept["code"])
        stack.extend(concept.get("concept", []))
    return out


def _walk_codings(node: Any) -> Iterator[tuple[str, str]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("system"), str) and "code" in item:
                yield item["system"], str(item["code"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@lru_cache(maxsize=1)
def _codings_by_system(external: Path) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for folder in BUNDLE_FOLDERS:
        for path in sorted((external / folder).rglob("*.json")):
            for system, code in _walk_codings(load_json(path)):
                found.setdefault(system, set()).add(code)
    return {system: frozenset(codes) for system, codes in found.items()}


def codes_used_in_bundles(external: Path, system: str) -> frozenset[str]:
    """Codes of ``system`` used anywhere in the real FHIR bundles and examples."""
    return _codings_by_system(external).get(system, frozenset())
