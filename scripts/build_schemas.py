"""Generate schemas/*.schema.json from the definitions below and the code lists.

The code lists (schemas/codelists/*.json) are the single source of every enum: this
script copies their codes into each schema's ``$defs`` so that a schema and its code
lists can never drift. Run ``python scripts/build_schemas.py`` after changing a code
list; ``--check`` exits 1 (naming the files) when a schema on disk is out of date, which
is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
BASE_ID = "https://w3id.org/biobank-federation/schemas/v{version}/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_SAFE_INT = 2**53 - 1

#: $defs name -> code list whose codes become that def's enum.
ENUM_DEFS: dict[str, str] = {
    "sample_type": "sample-type",
    "storage_temperature": "storage-temperature",
    "sex": "sex",
    "age_unit": "age-unit",
    "dataset_type": "dataset-type",
    "collection_design": "collection-design",
    "collection_setting": "collection-setting",
    "collection_status": "collection-status",
    "sample_source": "sample-source",
    "duo": "duo",
    "quality_standard": "quality-standard",
    "capability": "capability",
    "country": "country",
}

# Public identifiers such as bbmri-eric:ID:DE_CHARITE:collection:X (ASCII plus Latin letters
# with diacritics, which real Directory ids contain).
PUBLIC_ID = r"^[A-Za-z0-9\u00C0-\u024F][A-Za-z0-9\u00C0-\u024F_.:\-]{0,254}$"
ICD10_CODE = r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$"
ICD10_CODE_OR_BLOCK = r"^[A-Z][0-9]{2}((\.[0-9A-Z]{1,4})|(-[A-Z][0-9]{2}))?$"
ORPHA_CODE = r"^ORPHA:[0-9]{1,7}$"
ORIGIN = r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}(:[0-9]{1,5})?(/[A-Za-z0-9._~\-]{1,64}){0,8}$"
VERIFIER_KEY = r"^[^\s+]{1,128}\+[0-9a-f]{8}\+[A-Za-z0-9+/]{43,88}={0,2}$"
SCHEMA_ID = r"^https://w3id\.org/biobank-federation/schemas/v[0-9]{1,3}/(biobank|collection|sample-group)\.schema\.json$"
RFC3339_UTC_SECONDS = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)Z$"
)
AGE_MAX_BY_UNIT = {"years": 150, "months": 1800, "weeks": 7830, "days": 54800}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def array(item: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": item, "uniqueItems": True, "maxItems": max_items}


def obj(properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    out.update(extra)
    return out


def text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


def diagnosis(icd_def: str) -> dict[str, Any]:
    """A ``{system, code}`` object whose code pattern depends on the system."""
    return obj(
        {"system": {"enum": ["ICD-10", "ORPHA"]}, "code": {"type": "string", "maxLength": 16}},
        ["system", "code"],
        allOf=[
            {
                "if": {"properties": {"system": {"const": "ICD-10"}}},
                "then": {"properties": {"code": ref(icd_def)}},
            },
            {
                "if": {"properties": {"system": {"const": "ORPHA"}}},
                "then": {"properties": {"code": ref("orpha_code")}},
            },
        ],
    )


def common_defs(codelists: dict[str, list[str]]) -> dict[str, Any]:
    defs: dict[str, Any] = {
        "public_id": {"type": "string", "pattern": PUBLIC_ID, "maxLength": 255},
        "group_id": {"type": "string", "pattern": r"^grp_[a-z2-7]{26}$"},
        # a group's count: exact (the group has at least k distinct donors) or the bound
        # {"lt": B} (fewer than B; the group exists, so at least 1)
        "group_count": {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INT},
                obj({"lt": {"type": "integer", "minimum": 2, "maximum": MAX_SAFE_INT}}, ["lt"]),
            ]
        },
        "nonce": {"type": "string", "pattern": r"^[0-9a-f]{32}$"},
        "url": {"type": "string", "pattern": r"^https?://[^\s]+$", "maxLength": 2048},
        "email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "maxLength": 254},
        "contact": obj({"email": ref("email"), "name": text(200), "role": text(200)}, ["email"]),
        "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "age_years": {"type": "integer", "minimum": 0, "maximum": 150},
        "count": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INT},
        "icd10_code": {"type": "string", "pattern": ICD10_CODE},
        "icd10_code_or_block": {"type": "string", "pattern": ICD10_CODE_OR_BLOCK},
        "orpha_code": {"type": "string", "pattern": ORPHA_CODE},
    }
    for name, codelist in ENUM_DEFS.items():
        defs[name] = {"type": "string", "enum": codelists[codelist]}
    return defs


def sample_group_schema() -> dict[str, Any]:
    return obj(
        {
            "id": ref("group_id"),
            "biobank": ref("public_id"),
            "collection": ref("public_id"),
            "sample_type": ref("sample_type"),
            "storage_temperature": ref("storage_temperature"),
            "sex": ref("sex"),
            "age": obj({"min": ref("age_years"), "max": ref("age_years")}, ["min", "max"]),
            "period": obj({"from": ref("year"), "to": ref("year")}, ["from", "to"]),
            "diagnoses": array(diagnosis("icd10_code_or_block"), 32),
            "use_conditions": array(ref("duo"), 40),
            "dataset_types": array(ref("dataset_type"), 20),
            "samples": ref("group_count"),
            "donors": ref("group_count"),
            "nonce": ref("nonce"),
        },
        ["id", "biobank", "collection", "sample_type", "samples", "donors", "nonce"],
    )


def collection_age() -> dict[str, Any]:
    by_unit = [
        {
            "if": {"properties": {"unit": {"const": unit}}},
            "then": {"properties": {"min": {"maximum": top}, "max": {"maximum": top}}},
        }
        for unit, top in AGE_MAX_BY_UNIT.items()
    ]
    bound = {"type": "integer", "minimum": 0, "maximum": max(AGE_MAX_BY_UNIT.values())}
    return obj(
        {"min": bound, "max": bound, "unit": ref("age_unit")},
        ["unit"],
        minProperties=2,
        allOf=by_unit,
    )


def collection_schema() -> dict[str, Any]:
    return obj(
        {
            "id": ref("public_id"),
            "biobank": ref("public_id"),
            "name": text(500),
            "acronym": text(100),
            "description": text(10000),
            "url": ref("url"),
            "sample_source": ref("sample_source"),
            "sex": array(ref("sex"), 4),
            "age": collection_age(),
            "dataset_types": array(ref("dataset_type"), 20),
            "sample_types": array(ref("sample_type"), 100),
            "storage_temperatures": array(ref("storage_temperature"), 10),
            "diagnoses": array(diagnosis("icd10_code_or_block"), 20000),
            "design": array(ref("collection_design"), 20),
            "collection_setting": array(ref("collection_setting"), 10),
            "use_conditions": array(ref("duo"), 40),
            "status": ref("collection_status"),
            "number_of_subjects": ref("count"),
            "size": ref("count"),
            "contact": ref("contact"),
            "quality_standards": array(ref("quality_standard"), 50),
        },
        ["id", "biobank", "name"],
    )


def biobank_schema() -> dict[str, Any]:
    return obj(
        {
            "id": ref("public_id"),
            "acronym": text(100),
            "name": text(500),
            "url": ref("url"),
            "juristic_person": text(500),
            "country": ref("country"),
            "contact": ref("contact"),
            "description": text(10000),
            "quality_standards": array(ref("quality_standard"), 50),
            "capabilities": array(ref("capability"), 40),
        },
        ["id", "name", "country", "contact"],
    )


def node_descriptor_schema() -> dict[str, Any]:
    policy = obj(
        {
            "k": {"type": "integer", "minimum": 1, "maximum": 1000},
            # a publication never changes the counts of fewer distinct donors than this
            "change_set_donors": {"type": "integer", "minimum": 1, "maximum": 1000},
            "age_band": {"type": "integer", "minimum": 1, "maximum": 150},
            "period_width": {"type": "integer", "minimum": 1, "maximum": 200},
            "diagnosis_precision": {"enum": ["full", "category", "chapter", "none"]},
            "published_fields": array(
                {
                    "enum": [
                        "sex",
                        "age",
                        "period",
                        "diagnoses",
                        "storage_temperature",
                        "use_conditions",
                        "dataset_types",
                    ]
                },
                7,
            ),
        },
        [
            "k",
            "change_set_donors",
            "age_band",
            "period_width",
            "diagnosis_precision",
            "published_fields",
        ],
    )
    return obj(
        {
            "origin": {"type": "string", "pattern": ORIGIN, "maxLength": 255},
            "name": text(500),
            "country": ref("country"),
            "organisation": text(500),
            "contact": ref("contact"),
            "url": ref("url"),
            "verifier_key": {"type": "string", "pattern": VERIFIER_KEY, "maxLength": 300},
            "schemas": {
                "type": "array",
                "items": {"type": "string", "pattern": SCHEMA_ID},
                "uniqueItems": True,
                "minItems": 1,
                "maxItems": 30,
            },
            "policy": policy,
        },
        [
            "origin",
            "name",
            "country",
            "organisation",
            "contact",
            "url",
            "verifier_key",
            "schemas",
            "policy",
        ],
    )


def log_entry_schema() -> dict[str, Any]:
    base = {
        "log": {"type": "string", "pattern": ORIGIN, "maxLength": 255},
        "index": {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INT},
        "op": {"enum": ["publish", "withdraw", "rotate-key"]},
        "kind": {"enum": ["biobank", "collection", "sample-group"]},
        "id": {"anyOf": [ref("group_id"), ref("public_id")]},
        "schema": {"type": "string", "pattern": SCHEMA_ID},
        "digest": {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"},
        "key": {"type": "string", "pattern": VERIFIER_KEY, "maxLength": 300},
        "time": {"type": "string", "pattern": RFC3339_UTC_SECONDS},
    }
    never = {"not": {}}
    return obj(
        base,
        ["log", "index", "op", "time"],
        allOf=[
            {
                "if": {"properties": {"op": {"const": "publish"}}},
                "then": {
                    "required": ["kind", "id", "schema", "digest"],
                    "properties": {"key": never},
                },
            },
            {
                "if": {"properties": {"op": {"const": "withdraw"}}},
                "then": {
                    "required": ["kind", "id"],
                    "properties": {"schema": never, "digest": never, "key": never},
                },
            },
            {
                "if": {"properties": {"op": {"const": "rotate-key"}}},
                "then": {
                    "required": ["key"],
                    "properties": {"kind": never, "id": never, "schema": never, "digest": never},
                },
            },
            {
                "if": {"properties": {"kind": {"const": "sample-group"}}, "required": ["kind"]},
                "then": {"properties": {"id": ref("group_id")}},
            },
        ],
    )


#: kind -> (builder, description, schema version: the version is part of the $id)
BUILDERS = {
    "biobank": (biobank_schema, "A biobank (MIABIS Core 3.0 BIOBANK-01..12).", 1),
    "collection": (collection_schema, "A collection (MIABIS Core 3.0 COLLECTION-01..23).", 1),
    "sample-group": (
        sample_group_schema,
        "How many samples a node holds that share all their published attributes (MIABIS "
        "Sample 1.1 coding); counts exact when the group has at least k distinct donors, "
        'else the bound {"lt": B}. No sample or donor identifier, no free text, ever.',
        2,
    ),
    "node-descriptor": (node_descriptor_schema, "GET /.well-known/biobank-node.", 1),
    "log-entry": (log_entry_schema, "One node log entry (the leaf before canonicalisation).", 1),
}


def load_codelists(folder: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[data["name"]] = [entry["code"] for entry in data["codes"]]
    return out


def build(codelists: dict[str, list[str]]) -> dict[str, str]:
    """File name -> exact file text of every generated schema."""
    defs = common_defs(codelists)
    files: dict[str, str] = {}
    for kind, (builder, title, version) in BUILDERS.items():
        body = builder()
        used = _used_defs(body, defs)
        schema = {
            "$schema": DIALECT,
            "$id": f"{BASE_ID.format(version=version)}{kind}.schema.json",
            "title": kind,
            "description": title + " Generated by scripts/build_schemas.py "
            "from schemas/codelists; do not edit by hand.",
            **body,
            "$defs": {name: defs[name] for name in sorted(used)},
        }
        files[f"{kind}.schema.json"] = json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
    return files


def _used_defs(node: Any, defs: dict[str, Any]) -> set[str]:
    """Names of $defs reachable from ``node`` (so each schema carries only what it uses)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            target = item.get("$ref")
            if isinstance(target, str) and target.startswith("#/$defs/"):
                name = target.removeprefix("#/$defs/")
                if name not in found:
                    found.add(name)
                    stack.append(defs[name])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any schema file differs"
    )
    parser.add_argument("--dir", type=Path, default=SCHEMAS_DIR, help="the schemas/ folder")
    args = parser.parse_args(argv)
    files = build(load_codelists(args.dir / "codelists"))
    stale = [
        name
        for name, body in files.items()
        if not (args.dir / name).is_file() or (args.dir / name).read_text(encoding="utf-8") != body
    ]
    if args.check:
        for name in stale:
            print(f"{args.dir / name}: out of date; run python scripts/build_schemas.py")
        return 1 if stale else 0
    for name in stale:
        (args.dir / name).write_text(files[name], encoding="utf-8")
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
