"""The schema verdict (jsonschema-rs) agrees with jsonschema, the reference, on valid and invalid
records of every shipped kind, and follows the project's pattern rule where jsonschema's
Python regexes differ (ECMA-262: `$` never matches before a final newline)."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.schema import SchemaSet
from tests.protocol.test_fast_paths import BAD_CHANGES, GOOD

SCHEMAS = SchemaSet.default()
BIOBANK = {
    "id": "bbmri-eric:ID:DE_CHARITE",
    "name": "Charité biobank",
    "country": "DE",
    "contact": {"email": "biobank@charite.example", "name": "Office", "role": "Biobank office"},
    "acronym": "ZeBanC",
    "url": "https://biobank.charite.example",
    "quality_standards": ["iso-15189"],
}
COLLECTION = {
    "id": "bbmri-eric:ID:DE_CHARITE:collection:CANCER",
    "biobank": "bbmri-eric:ID:DE_CHARITE",
    "name": "Cancer",
    "sample_types": ["Plasma"],
    "age": {"min": 18, "max": 90, "unit": "years"},
    "diagnoses": [{"system": "ICD-10", "code": "C00-C97"}],
    "use_conditions": ["DUO:0000042"],
    "size": 5000,
    "number_of_subjects": 1200,
    "contact": {"email": "biobank@charite.example"},
}
BAD_OTHERS: list[tuple[str, dict[str, Any]]] = [
    ("biobank", {"country": "Germany"}),
    ("biobank", {"contact": {"email": 5}}),
    ("biobank", {"id": ""}),
    ("biobank", {"extra": True}),
    ("biobank", {"quality_standards": ["no such standard"]}),
    ("collection", {"age": {"min": 18}}),
    ("collection", {"size": -1}),
    ("collection", {"diagnoses": [{"system": "ICD-10", "code": "c50"}]}),
    ("collection", {"diagnoses": [{"system": "ICD-10", "code": "C50.9\n"}]}),
    ("collection", {"use_conditions": ["DUO:1"]}),
    ("collection", {"biobank": None}),
]


def _reference(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        SCHEMAS.schema(kind), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _ecma_newline(record: Any) -> bool:
    """A string ending in a newline somewhere: where Python's `$` differs from ECMA-262's."""
    stack = [record]
    while stack:
        x = stack.pop()
        if isinstance(x, str) and x.endswith("\n"):
            return True
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def _fastjsonschema(kind: str, record: Any) -> bool:
    try:
        fastjsonschema.compile(SCHEMAS.schema(kind))(record)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _agrees(kind: str, record: dict[str, Any]) -> None:
    verdict = SCHEMAS.verdict(kind)(record)
    assert verdict == SCHEMAS.is_valid(kind, record)
    assert (SCHEMAS.problems(kind, record, "x") == []) == verdict
    if _ecma_newline(record):  # jsonschema accepts "...\n" for `^...$`: the rule refuses it
        assert not verdict
        assert _fastjsonschema(kind, record) == verdict
    else:
        assert verdict == _reference(kind).is_valid(record)


@pytest.mark.parametrize(
    ("kind", "record"),
    [("sample-group", GOOD), ("biobank", BIOBANK), ("collection", COLLECTION)],
)
def test_jsonschema_rs_accepts_valid_records_as_jsonschema_does(
    kind: str, record: dict[str, Any]
) -> None:
    assert SCHEMAS.verdict(kind)(record)
    _agrees(kind, record)


@pytest.mark.parametrize("change", BAD_CHANGES, ids=range(len(BAD_CHANGES)))
def test_jsonschema_rs_refuses_invalid_groups_as_jsonschema_does(change: dict[str, Any]) -> None:
    record = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    assert not SCHEMAS.verdict("sample-group")(record)
    _agrees("sample-group", record)


@pytest.mark.parametrize(("kind", "change"), BAD_OTHERS, ids=range(len(BAD_OTHERS)))
def test_jsonschema_rs_refuses_invalid_biobanks_and_collections_as_jsonschema_does(
    kind: str, change: dict[str, Any]
) -> None:
    base = BIOBANK if kind == "biobank" else COLLECTION
    record = {k: v for k, v in {**base, **change}.items() if v is not None}
    assert not SCHEMAS.verdict(kind)(record)
    _agrees(kind, record)


def test_jsonschema_rs_refuses_a_value_of_no_json_type_and_problems_name_it() -> None:
    import uuid

    record = {**GOOD, "biobank": uuid.UUID(int=5)}
    assert not SCHEMAS.is_valid("sample-group", record)
    assert SCHEMAS.problems("sample-group", record, "leaf 3")


def test_trailing_newline_problem_is_named_though_jsonschema_sees_none() -> None:
    record = {**GOOD, "nonce": "0" * 32 + "\n"}
    problems = SCHEMAS.problems("sample-group", record, "leaf 4")
    assert [p.field for p in problems] == ["/nonce"]
    assert str(problems[0]).startswith("leaf 4: /nonce=")


_text = st.sampled_from(
    ["", "x", "C50.9", "C50", "c50", "C00-C97", "C50.9\n", "ORPHA:558", "DUO:0000042", "é", "\n"]
)
_counts = st.one_of(
    st.integers(min_value=-2, max_value=30),
    st.fixed_dictionaries({"lt": st.integers(min_value=-1, max_value=30)}),
    st.just("10"),
)


@settings(max_examples=400, deadline=None, database=None)
@given(
    sample_type=st.sampled_from(["WholeBlood", "Plasma", "plasma", "", "DNA"]),
    sex=st.sampled_from(["female", "male", "Female", None]),
    code=_text,
    use=_text,
    samples=_counts,
    donors=_counts,
    age=st.sampled_from([None, {"min": 40, "max": 49}, {"min": 40}, {"min": 150, "max": 200}]),
    extra=st.booleans(),
)
def test_property_jsonschema_rs_agrees_with_jsonschema_on_generated_groups(
    sample_type: str,
    sex: str | None,
    code: str,
    use: str,
    samples: Any,
    donors: Any,
    age: Any,
    extra: bool,
) -> None:
    record: dict[str, Any] = {
        **GOOD,
        "sample_type": sample_type,
        "diagnoses": [{"system": "ICD-10", "code": code}],
        "use_conditions": [use],
        "samples": samples,
        "donors": donors,
    }
    for name, value in (("sex", sex), ("age", age)):
        if value is None:
            record.pop(name, None)
        else:
            record[name] = value
    if extra:
        record["free_text"] = "x"
    _agrees("sample-group", record)
