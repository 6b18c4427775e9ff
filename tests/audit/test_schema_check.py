"""The auditor's memoised schema check: same verdicts as SchemaSet, id and nonce always checked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from audit.examine import default_schema_check
from protocol.schema import SchemaSet

GROUP = "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"
GOOD = {
    "id": "grp_" + "a" * 26,
    "biobank": "bbmri-eric:ID:DE_X",
    "collection": "bbmri-eric:ID:DE_X:collection:1",
    "sample_type": "WholeBlood",
    "storage_temperature": "-60to-85",
    "sex": "female",
    "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
    "samples": 14,
    "donors": 11,
    "nonce": "0" * 32,
}


def _parsed(record: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(record))  # as the fetcher hands contents over


@pytest.mark.parametrize(
    "change",
    [
        {"id": "grp_" + "A" * 26},
        {"id": "grp_short"},
        {"id": 7},
        {"id": "grp_" + "a" * 26 + "\n"},
        {"id": "smp_" + "a" * 26},
        {"nonce": "0" * 31},
        {"nonce": "Z" * 32},
        {"nonce": None},
        {"sex": "Blut"},
        {"extra": 1},
        {"age": {"min": 1, "max": 2.5}},
        {"samples": {"lt": 1}},
        {"samples": {"lt": 10, "gt": 2}},
        {"donors": 0},
        {"donors": "<10"},
    ],
)
def test_remembered_shape_never_hides_a_bad_field(change: dict[str, Any]) -> None:
    check = default_schema_check()
    for n in range(3):  # learn the good shape under several ids and nonces
        good = {**GOOD, "id": "grp_" + "abc"[n] * 26, "nonce": f"{n:032x}"}
        assert check(GROUP, _parsed(good), "leaf 1") == []
    bad = _parsed({k: v for k, v in {**GOOD, **change}.items() if v is not None})
    problems = check(GROUP, bad, "leaf 2")
    assert problems == SchemaSet.default().problems(GROUP, bad, "leaf 2")
    assert problems and str(problems[0]).startswith("leaf 2: /")


def test_unknown_schema_is_reported_not_remembered() -> None:
    check = default_schema_check()
    [problem] = check("https://example.org/v9/nope.schema.json", _parsed(GOOD), "leaf 3")
    assert "unknown schema" in problem.reason
