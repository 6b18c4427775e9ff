"""SchemaSet: fastjsonschema and jsonschema agree on every verdict; problems carry JSON pointers."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from protocol.codelists import CodeList, CodeLists
from protocol.errors import ConfigError, ValidationFailed
from protocol.schema import SchemaSet

BASE = "https://w3id.org/biobank-federation/schemas"
TEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"{BASE}/v1/thing.schema.json",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind"],
    "properties": {
        "id": {"type": "string", "pattern": "^thg_[a-z0-9]{4}$"},
        "kind": {"const": "thing"},
        "colour": {"enum": ["red", "green"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "label": {"type": "string", "maxLength": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
        "range": {"$ref": "#/$defs/range"},
        "flag": {"type": "boolean"},
    },
    "$defs": {
        "range": {
            "type": "object",
            "additionalProperties": False,
            "required": ["min", "max"],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
        }
    },
}
V2 = {**TEST_SCHEMA, "$id": f"{BASE}/v2/thing.schema.json"}

VALID = {
    "id": "thg_ab12",
    "kind": "thing",
    "colour": "red",
    "count": 10,
    "label": "abcde",
    "tags": ["a", "b"],
    "range": {"min": 1, "max": 2},
    "flag": True,
}

# (record change, JSON pointer of the problem, failure kind)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"count": "3"}, "/count", "type"),
    ({"count": 1.5}, "/count", "type"),
    ({"flag": 1}, "/flag", "type"),
    ({"range": []}, "/range", "type"),
    ({"id": None}, "/id", "required"),
    ({"range": {"min": 1}}, "/range/max", "required"),
    ({"extra": 1}, "/extra", "additionalProperties"),
    ({"range": {"min": 1, "max": 2, "mid": 1}}, "/range/mid", "additionalProperties"),
    ({"colour": "Blau"}, "/colour", "enum"),
    ({"id": "thg_ABCD"}, "/id", "pattern"),
    ({"count": -1}, "/count", "minimum"),
    ({"count": 11}, "/count", "maximum"),
    ({"tags": []}, "/tags", "minItems"),
    ({"tags": ["a", "a"]}, "/tags", "uniqueItems"),
    ({"tags": ["a", 1]}, "/tags/1", "type"),
    ({"kind": "other"}, "/kind", "const"),
    ({"label": "abcdef"}, "/label", "maxLength"),
]


def _record(change: dict[str, Any]) -> dict[str, Any]:
    record = {**VALID, **change}
    return {k: v for k, v in record.items() if v is not None}


@pytest.fixture(scope="module")
def schemas() -> SchemaSet:
    return SchemaSet([TEST_SCHEMA, V2])


def test_lookup_by_kind_and_id(schemas: SchemaSet) -> None:
    assert schemas.schema_id("thing") == f"{BASE}/v2/thing.schema.json"
    assert schemas.kind_of(f"{BASE}/v1/thing.schema.json") == "thing"
    with pytest.raises(ConfigError, match="no schema for kind 'sample'"):
        schemas.schema_id("sample")


def test_valid_record_has_no_problems(schemas: SchemaSet) -> None:
    assert schemas.is_valid("thing", VALID)
    assert schemas.problems("thing", VALID, "row 1") == []
    schemas.validate("thing", VALID, "row 1")


@pytest.mark.parametrize(
    ("change", "pointer", "kind"), INVALID, ids=[f"{k}:{p}" for _, p, k in INVALID]
)
def test_invalid_record_verdicts_agree_and_problem_is_named(
    schemas: SchemaSet, change: dict[str, Any], pointer: str, kind: str
) -> None:
    record = _record(change)
    reference = jsonschema.Draft202012Validator(TEST_SCHEMA)
    assert [e.validator for e in reference.iter_errors(record)] == [kind]
    assert not schemas.is_valid("thing", record)
    problems = schemas.problems(f"{BASE}/v1/thing.schema.json", record, "leaf 7")
    assert [p.field for p in problems] == [pointer]
    assert str(problems[0]).startswith(f"leaf 7: {pointer}=")
    with pytest.raises(ValidationFailed) as info:
        schemas.validate("thing", record, "leaf 7")
    assert info.value.problems == problems


def test_enum_problem_says_unknown_code(schemas: SchemaSet) -> None:
    [problem] = schemas.problems("thing", _record({"colour": "Blau"}), "row 3")
    assert problems_text(problem) == "row 3: /colour='Blau': unknown code 'Blau' for colour"


def problems_text(problem: object) -> str:
    return str(problem)


def test_several_problems_are_all_listed(schemas: SchemaSet) -> None:
    record = {"kind": "other", "count": 99, "junk": 1}
    fields = sorted(p.field for p in schemas.problems("thing", record, "row 1"))
    assert fields == ["/count", "/id", "/junk", "/kind"]


def test_unknown_schema_is_a_problem_not_a_crash(schemas: SchemaSet) -> None:
    [problem] = schemas.problems(f"{BASE}/v9/nope.schema.json", VALID, "leaf 1")
    assert "unknown schema" in problem.reason


def test_schema_without_versioned_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not end in"):
        SchemaSet([{"$id": "https://example.org/thing.json"}])


def test_remote_refs_resolve_only_locally() -> None:
    common = {"$id": f"{BASE}/v1/common.schema.json", "$defs": {"code": {"enum": ["a"]}}}
    user = {
        "$id": f"{BASE}/v1/user.schema.json",
        "type": "object",
        "properties": {"c": {"$ref": f"{BASE}/v1/common.schema.json#/$defs/code"}},
    }
    schemas = SchemaSet([common, user])
    assert schemas.is_valid("user", {"c": "a"})
    assert [p.field for p in schemas.problems("user", {"c": "b"}, "x")] == ["/c"]
    missing = SchemaSet([{**user, "properties": {"c": {"$ref": f"{BASE}/v1/gone.schema.json"}}}])
    with pytest.raises(ConfigError, match="not among the loaded schemas"):
        missing.is_valid("user", {"c": "a"})


def test_shipped_schemas_load() -> None:
    schemas = SchemaSet.default()
    for kind in ("biobank", "collection", "sample-group"):
        version = 2 if kind == "sample-group" else 1
        assert schemas.schema_id(kind) == f"{BASE}/v{version}/{kind}.schema.json"
        assert not schemas.is_valid(kind, {})
        assert schemas.problems(kind, {}, "x")


def test_shipped_codelists_load() -> None:
    lists = CodeLists.default()
    assert "sex" in lists.names
    assert lists.get("sex").parent("female") is None
    assert "female" in lists.get("sex").codes()
    with pytest.raises(ConfigError, match="unknown code list 'nope'"):
        lists.get("nope")


def test_codelist_checks_duplicates_and_parents() -> None:
    good = {
        "name": "t",
        "version": "1",
        "codes": [
            {"code": "A", "en": "a", "zh": "甲", "parent": None},
            {"code": "A1", "en": "a1", "zh": "甲一", "parent": "A"},
        ],
    }
    cl = CodeList.from_json(good)
    assert cl.children("A") == ["A1"]
    assert cl.parent("A1") == "A"
    with pytest.raises(KeyError, match="unknown code 'B' in code list 't'"):
        cl.parent("B")
    with pytest.raises(ConfigError, match="appears twice"):
        CodeList.from_json({**good, "codes": good["codes"] + [good["codes"][0]]})
    with pytest.raises(ConfigError, match="unknown parent"):
        CodeList.from_json({**good, "codes": [{**good["codes"][1]}]})


def test_fast_form_keeps_verdicts_on_enum_edge_cases(schemas: SchemaSet) -> None:
    reference = jsonschema.Draft202012Validator(TEST_SCHEMA)
    for colour in ["red", "green", "Red", "", 1, None, True, ["red"], {"red": 1}]:
        record = {**VALID, "colour": colour}
        assert schemas.is_valid("thing", record) == reference.is_valid(record), colour


def _mutations(record: dict[str, Any]) -> list[Any]:
    """The record, then each field dropped, retyped, or given an odd value, plus an extra field."""
    out: list[Any] = [record, {**record, "unexpected": 1}, [], "x"]
    odd: list[Any] = [None, 1, -5, 2**40, "", "x" * 300, "Blut", [], ["x", "x"], {}, True]
    for key in record:
        out.append({k: v for k, v in record.items() if k != key})
        out.extend({**record, key: value} for value in odd)
        inner = record[key]
        if isinstance(inner, dict):
            out.extend({**record, key: {**inner, k: value}} for k in inner for value in odd)
        if isinstance(inner, list) and inner:
            out.extend({**record, key: [*inner, value]} for value in odd)
    return out


SHIPPED_EXAMPLES: dict[str, dict[str, Any]] = {
    "sample-group": {
        "id": "grp_" + "a" * 26,
        "biobank": "bbmri-eric:ID:DE_X",
        "collection": "bbmri-eric:ID:DE_X:collection:1",
        "sample_type": "WholeBlood",
        "storage_temperature": "-60to-85",
        "sex": "female",
        "age": {"min": 40, "max": 49},
        "period": {"from": 2015, "to": 2019},
        "diagnoses": [
            {"system": "ICD-10", "code": "C50.9"},
            {"system": "ORPHA", "code": "ORPHA:558"},
        ],
        "use_conditions": ["DUO:0000042"],
        "dataset_types": ["Genomic"],
        "samples": {"lt": 10},
        "donors": {"lt": 10},
        "nonce": "0" * 32,
    },
    "collection": {
        "id": "bbmri-eric:ID:DE_X:collection:1",
        "biobank": "bbmri-eric:ID:DE_X",
        "name": "Breast cancer",
        "description": "Tissue and blood",
        "sex": ["female"],
        "age": {"min": 18, "max": 90, "unit": "years"},
        "sample_types": ["WholeBlood"],
        "use_conditions": ["DUO:0000042"],
        "number_of_subjects": 10,
        "size": 100,
        "diagnoses": [{"system": "ICD-10", "code": "C50"}],
    },
    "biobank": {
        "id": "bbmri-eric:ID:DE_X",
        "acronym": "X",
        "name": "X Biobank",
        "url": "https://x.example",
        "juristic_person": "X University",
        "country": "DE",
        "contact": {"email": "biobank@x.example"},
        "description": "A biobank",
        "quality_standards": [],
        "capabilities": [],
    },
}


@pytest.mark.parametrize("kind", sorted(SHIPPED_EXAMPLES))
def test_shipped_schema_verdicts_agree_with_jsonschema(kind: str) -> None:
    schemas = SchemaSet.default()
    schema = schemas.schema(kind)
    reference = jsonschema.Draft202012Validator(schema)
    corpus = _mutations(SHIPPED_EXAMPLES[kind])
    verdicts = [reference.is_valid(r) for r in corpus]
    assert [schemas.is_valid(kind, r) for r in corpus] == verdicts
    assert verdicts[0], "the example record should be valid: update SHIPPED_EXAMPLES"
    assert not all(verdicts)
    for record, valid in zip(corpus, verdicts, strict=True):
        assert (schemas.problems(kind, record, "r") == []) == valid


def test_the_reference_validator_is_loaded_only_for_an_invalid_record() -> None:
    """A harvest worker compiles every schema's verdict (`warm_worker`) without loading
    jsonschema and referencing (about 3 MB of each worker); the first invalid record loads
    them, and its problems are named as before."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from catalogue.harvest.harvester import warm_worker\n"
        "from protocol.schema import SchemaSet\n"
        "warm_worker()\n"
        "before = sorted(m for m in ('jsonschema', 'referencing') if m in sys.modules)\n"
        "found = SchemaSet.default().problems('sample-group', {'id': 1}, 'x')\n"
        "after = sorted(m for m in ('jsonschema', 'referencing') if m in sys.modules)\n"
        "print(before, after, len(found) > 1, all(p.location.startswith('x') for p in found))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split("\n")[0] == "[] ['jsonschema', 'referencing'] True True"
