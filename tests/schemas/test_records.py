"""Example records: valid ones pass, and each kind of invalid record fails at the right place."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.schemas.helpers import schema

SAMPLE: dict[str, Any] = {
    "id": "grp_abcdefghijklmnopqrstuvwxyz",
    "biobank": "bbmri-eric:ID:DE_CHARITE",
    "collection": "bbmri-eric:ID:DE_CHARITE:collection:CRC",
    "sample_type": "WholeBlood",
    "storage_temperature": "-60to-85",
    "sex": "female",
    "age": {"min": 40, "max": 49},
    "period": {"from": 2015, "to": 2019},
    "diagnoses": [{"system": "ICD-10", "code": "C50.9"}, {"system": "ORPHA", "code": "ORPHA:558"}],
    "use_conditions": ["DUO:0000042"],
    "dataset_types": ["Genomic"],
    "samples": 23,
    "donors": 12,
    "nonce": "0123456789abcdef0123456789abcdef",
}
BIOBANK: dict[str, Any] = {
    "id": "bbmri-eric:ID:DE_CHARITE",
    "acronym": "ZeBanC",
    "name": "Central Biobank Charité",
    "url": "https://biobank.example.org",
    "juristic_person": "Charité Universitätsmedizin Berlin",
    "country": "DE",
    "contact": {"email": "biobank@example.org", "role": "Access desk"},
    "description": "Hospital-integrated biobank.",
    "quality_standards": ["iso-20387-2018"],
    "capabilities": ["SampleStorage", "NucleicAcidExtraction"],
}
COLLECTION: dict[str, Any] = {
    "id": "bbmri-eric:ID:DE_CHARITE:collection:CRC",
    "biobank": "bbmri-eric:ID:DE_CHARITE",
    "name": "Colorectal cancer",
    "acronym": "CRC",
    "description": "Tumour and normal tissue.",
    "sample_source": "Human",
    "sex": ["female", "male"],
    "age": {"min": 18, "max": 90, "unit": "years"},
    "dataset_types": ["Clinical", "Genomic"],
    "sample_types": ["TissueFFPE", "Plasma"],
    "storage_temperatures": ["RT", "-60to-85"],
    "diagnoses": [
        {"system": "ICD-10", "code": "C18"},
        {"system": "ICD-10", "code": "C00-C97"},
        {"system": "ORPHA", "code": "ORPHA:733"},
    ],
    "design": ["DiseaseSpecificCohort"],
    "collection_setting": ["RoutineHealthCare"],
    "use_conditions": ["DUO:0000007", "DUO:0000020"],
    "status": "Active",
    "number_of_subjects": 1200,
    "size": 5000,
    "contact": {"email": "crc@example.org"},
    "quality_standards": ["iso-15189"],
}
VKEY = "charite.example/biobank-node+1a2b3c4d+" + "A" * 43 + "E"
NODE: dict[str, Any] = {
    "origin": "charite.example/biobank-node",
    "name": "Charité biobank node",
    "country": "DE",
    "organisation": "Charité",
    "contact": {"email": "node@example.org"},
    "url": "http://127.0.0.1:8700",
    "verifier_key": VKEY,
    "schemas": ["https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"],
    "policy": {
        "k": 10,
        "change_set_donors": 10,
        "age_band": 10,
        "period_width": 5,
        "diagnosis_precision": "full",
        "published_fields": ["age", "sex"],
    },
}
DIGEST = "sha256:" + "ab" * 32
PUBLISH: dict[str, Any] = {
    "log": "charite.example/biobank-node",
    "index": 0,
    "op": "publish",
    "kind": "sample-group",
    "id": SAMPLE["id"],
    "schema": "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json",
    "digest": DIGEST,
    "time": "2026-11-22T23:07:36Z",
}
WITHDRAW = {
    "log": "charite.example/biobank-node",
    "index": 1,
    "op": "withdraw",
    "kind": "collection",
    "id": COLLECTION["id"],
    "time": "2026-11-22T23:07:37Z",
}
ROTATE = {
    "log": "charite.example/biobank-node",
    "index": 2,
    "op": "rotate-key",
    "key": VKEY,
    "time": "2026-11-22T23:07:38Z",
}

VALID = [
    ("sample-group", SAMPLE),
    ("biobank", BIOBANK),
    ("collection", COLLECTION),
    ("node-descriptor", NODE),
    ("log-entry", PUBLISH),
    ("log-entry", WITHDRAW),
    ("log-entry", ROTATE),
    (
        "sample-group",
        {
            **{k: SAMPLE[k] for k in ("id", "biobank", "collection", "sample_type", "nonce")},
            "samples": {"lt": 10},
            "donors": {"lt": 10},
        },
    ),
    ("collection", {"id": "c1", "biobank": "b1", "name": "Minimal"}),
    ("biobank", {"id": "b1", "name": "B", "country": "CN", "contact": {"email": "a@b.cn"}}),
]


def errors(kind: str, record: dict[str, Any]) -> list[tuple[str, str]]:
    validator = Draft202012Validator(schema(kind))
    return [(e.json_path, e.validator) for e in validator.iter_errors(record)]


@pytest.mark.parametrize(
    ("kind", "record"), VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)]
)
def test_valid_records_pass(kind: str, record: dict[str, Any]) -> None:
    assert errors(kind, record) == []


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``path`` (dot-separated, ints index lists) set or deleted."""
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return out


DELETE = object()
INVALID = [
    # (case id, kind, base, path, value, expected json path of an error)
    ("sample-free-text-field", "sample-group", SAMPLE, "comment", "donor is the mayor", "$"),
    ("sample-unknown-sample-type", "sample-group", SAMPLE, "sample_type", "Blut", "$.sample_type"),
    (
        "sample-unknown-temperature",
        "sample-group",
        SAMPLE,
        "storage_temperature",
        "-80",
        "$.storage_temperature",
    ),
    ("sample-unknown-sex", "sample-group", SAMPLE, "sex", "F", "$.sex"),
    ("sample-id-not-pseudonym", "sample-group", SAMPLE, "id", "LIMS-000123", "$.id"),
    ("group-samples-zero", "sample-group", SAMPLE, "samples", 0, "$.samples"),
    ("group-donors-missing", "sample-group", SAMPLE, "donors", DELETE, "$"),
    ("group-bound-as-text", "sample-group", SAMPLE, "donors", "<10", "$.donors"),
    ("group-bound-extra-key", "sample-group", SAMPLE, "samples", {"lt": 10, "gte": 1}, "$.samples"),
    ("sample-nonce-too-short", "sample-group", SAMPLE, "nonce", "abcd", "$.nonce"),
    (
        "sample-nonce-uppercase",
        "sample-group",
        SAMPLE,
        "nonce",
        "0123456789ABCDEF0123456789ABCDEF",
        "$.nonce",
    ),
    ("sample-age-over-150", "sample-group", SAMPLE, "age.max", 151, "$.age.max"),
    ("sample-age-negative", "sample-group", SAMPLE, "age.min", -1, "$.age.min"),
    ("sample-age-float", "sample-group", SAMPLE, "age.min", 40.5, "$.age.min"),
    ("sample-age-extra-key", "sample-group", SAMPLE, "age.exact", 43, "$.age"),
    ("sample-period-a-date", "sample-group", SAMPLE, "period.from", "2015-03-02", "$.period.from"),
    ("sample-period-before-1900", "sample-group", SAMPLE, "period.from", 1899, "$.period.from"),
    ("sample-period-missing-to", "sample-group", SAMPLE, "period.to", DELETE, "$.period"),
    (
        "sample-icd-code-as-orpha",
        "sample-group",
        SAMPLE,
        "diagnoses.1.code",
        "C50.9",
        "$.diagnoses[1].code",
    ),
    (
        "sample-orpha-code-as-icd",
        "sample-group",
        SAMPLE,
        "diagnoses.0.code",
        "ORPHA:558",
        "$.diagnoses[0].code",
    ),
    (
        "sample-icd-block-malformed",
        "sample-group",
        SAMPLE,
        "diagnoses.0.code",
        "C00-97",
        "$.diagnoses[0].code",
    ),
    (
        "sample-icd-lowercase",
        "sample-group",
        SAMPLE,
        "diagnoses.0.code",
        "c50.9",
        "$.diagnoses[0].code",
    ),
    (
        "sample-diagnosis-free-text",
        "sample-group",
        SAMPLE,
        "diagnoses.0.label",
        "breast cancer",
        "$.diagnoses[0]",
    ),
    (
        "sample-unknown-system",
        "sample-group",
        SAMPLE,
        "diagnoses.0.system",
        "SNOMED",
        "$.diagnoses[0].system",
    ),
    (
        "sample-unknown-duo",
        "sample-group",
        SAMPLE,
        "use_conditions",
        ["DUO:9999999"],
        "$.use_conditions[0]",
    ),
    (
        "sample-duplicate-dataset",
        "sample-group",
        SAMPLE,
        "dataset_types",
        ["Genomic", "Genomic"],
        "$.dataset_types",
    ),
    ("sample-missing-type", "sample-group", SAMPLE, "sample_type", DELETE, "$"),
    ("sample-missing-nonce", "sample-group", SAMPLE, "nonce", DELETE, "$"),
    ("biobank-country-alpha3", "biobank", BIOBANK, "country", "DEU", "$.country"),
    ("biobank-country-uk", "biobank", BIOBANK, "country", "UK", "$.country"),
    ("biobank-no-contact", "biobank", BIOBANK, "contact", DELETE, "$"),
    ("biobank-bad-email", "biobank", BIOBANK, "contact.email", "not an email", "$.contact.email"),
    ("biobank-contact-phone", "biobank", BIOBANK, "contact.phone", "+49 30 0000", "$.contact"),
    ("biobank-url-javascript", "biobank", BIOBANK, "url", "javascript:alert(1)", "$.url"),
    ("biobank-huge-description", "biobank", BIOBANK, "description", "x" * 10001, "$.description"),
    (
        "biobank-unknown-capability",
        "biobank",
        BIOBANK,
        "capabilities",
        ["Teleportation"],
        "$.capabilities[0]",
    ),
    ("biobank-id-with-space", "biobank", BIOBANK, "id", "bbmri eric", "$.id"),
    ("collection-age-days-in-years", "collection", COLLECTION, "age.max", 151, "$.age.max"),
    ("collection-age-only-unit", "collection", COLLECTION, "age", {"unit": "years"}, "$.age"),
    ("collection-unknown-unit", "collection", COLLECTION, "age.unit", "decades", "$.age.unit"),
    ("collection-negative-size", "collection", COLLECTION, "size", -5, "$.size"),
    ("collection-size-too-big", "collection", COLLECTION, "size", 2**53, "$.size"),
    ("collection-unknown-design", "collection", COLLECTION, "design", ["COHORT"], "$.design[0]"),
    ("collection-unknown-status", "collection", COLLECTION, "status", "open", "$.status"),
    (
        "collection-unknown-source",
        "collection",
        COLLECTION,
        "sample_source",
        "Plant",
        "$.sample_source",
    ),
    ("collection-sex-scalar", "collection", COLLECTION, "sex", "female", "$.sex"),
    ("node-bad-key", "node-descriptor", NODE, "verifier_key", "not-a-key", "$.verifier_key"),
    (
        "node-unknown-schema",
        "node-descriptor",
        NODE,
        "schemas",
        ["https://example.org/x.json"],
        "$.schemas[0]",
    ),
    ("node-policy-extra", "node-descriptor", NODE, "policy.secret", 1, "$.policy"),
    (
        "node-policy-bad-precision",
        "node-descriptor",
        NODE,
        "policy.diagnosis_precision",
        "exact",
        "$.policy.diagnosis_precision",
    ),
    (
        "node-policy-unknown-field",
        "node-descriptor",
        NODE,
        "policy.published_fields",
        ["name"],
        "$.policy.published_fields[0]",
    ),
    ("entry-bad-digest", "log-entry", PUBLISH, "digest", "sha256:" + "AB" * 32, "$.digest"),
    ("entry-bad-op", "log-entry", PUBLISH, "op", "delete", "$.op"),
    ("entry-time-with-offset", "log-entry", PUBLISH, "time", "2026-11-22T23:07:36+01:00", "$.time"),
    ("entry-time-fraction", "log-entry", PUBLISH, "time", "2026-11-22T23:07:36.5Z", "$.time"),
    ("entry-publish-no-digest", "log-entry", PUBLISH, "digest", DELETE, "$"),
    ("entry-publish-with-key", "log-entry", PUBLISH, "key", VKEY, "$.key"),
    ("entry-sample-public-id", "log-entry", PUBLISH, "id", "bbmri-eric:ID:X", "$.id"),
    ("entry-withdraw-with-digest", "log-entry", WITHDRAW, "digest", DIGEST, "$.digest"),
    ("entry-rotate-no-key", "log-entry", ROTATE, "key", DELETE, "$"),
    ("entry-rotate-with-id", "log-entry", ROTATE, "id", "b1", "$.id"),
    ("entry-negative-index", "log-entry", PUBLISH, "index", -1, "$.index"),
    ("entry-unknown-field", "log-entry", PUBLISH, "content", {}, "$"),
]


@pytest.mark.parametrize(
    ("kind", "base", "path", "value", "where"),
    [c[1:] for c in INVALID],
    ids=[c[0] for c in INVALID],
)
def test_invalid_record_fails_where_expected(
    kind: str, base: dict[str, Any], path: str, value: Any, where: str
) -> None:
    assert errors(kind, base) == []  # the base is valid: the change alone makes it fail
    found = errors(kind, changed(base, path, value))
    assert found, f"{kind}: {path}={value!r} was accepted"
    assert where in {p for p, _ in found}, f"{kind}: errors at {found}, expected one at {where}"
