"""The fast paths give the reference verdicts: parse_canonical vs rfc8785, the schema memo vs
fastjsonschema and jsonschema run afresh, on awkward corpora and hypothesis-generated input."""

from __future__ import annotations

import contextlib
import json
import unicodedata
import uuid
from typing import Any

import fastjsonschema
import jsonschema
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import MAX_SAFE_INTEGER, canonical, canonical_reference, parse_canonical
from protocol.errors import NonCanonicalError
from protocol.schema import SchemaSet
from protocol.schema_memo import FieldMemo, free_fields, is_clean


def _reject(_value: str) -> Any:
    raise ValueError("floats and constants are not canonical")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _valid_value(x: Any) -> bool:
    if isinstance(x, str):
        return unicodedata.is_normalized("NFC", x)
    if isinstance(x, bool) or x is None:
        return True
    if isinstance(x, int):
        return -MAX_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER
    if isinstance(x, list):
        return all(_valid_value(v) for v in x)
    return all(_valid_value(k) and _valid_value(v) for k, v in x.items())


def reference_accepts(data: bytes) -> bool:
    """The design's rule with the reference encoder: data is rfc8785.dumps of what it parses to,
    which holds no floats, only integers within ±(2^53−1) and only NFC strings."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_float=_reject,
            parse_constant=_reject,
            object_pairs_hook=_no_duplicates,
        )
    except ValueError:
        return False
    if not _valid_value(value):
        return False
    try:
        return bool(rfc8785.dumps(value) == data)
    except (rfc8785.CanonicalizationError, UnicodeError):
        return False


def fast_accepts(data: bytes) -> bool:
    try:
        value = parse_canonical(data)
    except NonCanonicalError:
        return False
    assert canonical_reference(value) == data  # an accepted value re-encodes to the input
    return True


# leaf-shaped and awkward: non-ASCII, escapes, controls, U+2028, astral, integers near 2^53
AWKWARD_VALUES: list[Any] = [
    {"log": "n.example/biobank-node", "index": 0, "op": "publish", "time": "2026-11-22T23:07:36Z"},
    {"a": "é", "b": 1},
    {"a": "e\u0301"},
    {"é": 1},
    {"e\u0301": 1},
    {"a": "\u2028\u2029"},
    {"a": "\x00\x01\x08\x1f\x7f"},
    {"a": '"\\/'},
    {"a": "😀"},
    {"😀": 1, "\ue000": 2},
    {"a": "\ufb01"},
    {"a": "\u0344"},
    {"a": "\x08\u0307"},
    {"a": "\u0301"},
    {"n": MAX_SAFE_INTEGER},
    {"n": -MAX_SAFE_INTEGER},
    {"n": MAX_SAFE_INTEGER + 1},
    {"n": -(2**53)},
    {"n": 2**63},
    {"n": 2**64},
    {"n": True},
    {"n": None},
    {"n": [1]},
    {"n": {"m": 1}},
    {"b": 1, "a": 2},
    {},
    [],
    "x",
    1,
]


def _variants(value: Any) -> list[bytes]:
    """The canonical bytes (when there are any) and other encodings of the same value."""
    out = [
        json.dumps(value, ensure_ascii=a, sort_keys=s, separators=sep).encode()
        for a in (True, False)
        for s in (True, False)
        for sep in ((",", ":"), None)
    ]
    with contextlib.suppress(rfc8785.CanonicalizationError):
        out.append(rfc8785.dumps(value))
    if isinstance(value, dict) and value:
        key = json.dumps(next(iter(value))).encode()
        flat = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        out.append(flat[:-1] + b"," + key + b":0}")  # a duplicate key
        out.append(flat.replace(b":", b":-0", 1) if b":0" in flat else flat + b" ")
    return out


@pytest.mark.parametrize("value", AWKWARD_VALUES, ids=range(len(AWKWARD_VALUES)))
def test_parse_canonical_verdict_equals_reference_on_awkward_corpus(value: Any) -> None:
    for data in _variants(value):
        assert fast_accepts(data) == reference_accepts(data), data


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1.0}',
        b'{"a":1e2}',
        b'{"a":-0}',
        b'{"a":9007199254740992}',
        b'{"a":"\\u00e9"}',
        b'{"a":"e\xcc\x81"}',
        b'{"\xee\x80\x80":1,"\xf0\x9f\x98\x80":2}',
        b'{"a":"\\ud800"}',
        b'{"a":"\xed\xa0\x80"}',
        b'{"a":1,"a":1}',
        b'{"a":true}',
        b'{"a":"\\u001F"}',
        b'{"a":18446744073709551616}',
        b'{"a":"x"} ',
        b'{"a":"\\b\xcc\x87"}',
    ],
)
def test_parse_canonical_verdict_equals_reference_on_edge_bytes(data: bytes) -> None:
    assert fast_accepts(data) == reference_accepts(data)


_text = st.text(
    st.sampled_from(
        'aZ09 ~"\\/\x00\x01\x08\x1f\x7féü\u0301\u0307\u0344\u2028\u2029\ufb01\ue000\uffff中😀𝄞'
    ),
    max_size=6,
)
_flat = st.dictionaries(_text, _text | st.integers(-(2**64), 2**64) | st.booleans(), max_size=5)


@settings(max_examples=400, deadline=None, database=None)
@given(_flat)
def test_property_parse_canonical_verdict_equals_reference(value: dict[str, Any]) -> None:
    for data in _variants(value):
        assert fast_accepts(data) == reference_accepts(data), data


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=40) | _flat.map(lambda v: json.dumps(v).encode()[:-1] + b"\x80}"))
def test_property_parse_canonical_on_arbitrary_bytes(data: bytes) -> None:
    assert fast_accepts(data) == reference_accepts(data)


# ---- the schema memo -----------------------------------------------------------------------

BASE = "https://w3id.org/biobank-federation/schemas/v1"
GOOD = {
    "id": "grp_" + "a" * 26,
    "biobank": "bbmri-eric:ID:DE_X",
    "collection": "bbmri-eric:ID:DE_X:collection:1",
    "sample_type": "WholeBlood",
    "storage_temperature": "-60to-85",
    "sex": "female",
    "age": {"min": 40, "max": 49},
    "diagnoses": [{"system": "ICD-10", "code": "C50.9"}],
    "use_conditions": ["DUO:0000042"],
    "dataset_types": ["Genomic"],
    "samples": 14,
    "donors": 11,
    "nonce": "0" * 32,
}

# every kind of schema failure, on a free field and on the rest
BAD_CHANGES: list[dict[str, Any]] = [
    {"id": "grp_" + "A" * 26},
    {"id": "grp_" + "a" * 26 + "\n"},
    {"id": 5},
    {"id": None},
    {"nonce": "0" * 31},
    {"samples": 0},
    {"samples": {"lt": 1}},
    {"donors": {"lt": 10, "gt": 1}},
    {"donors": "<10"},
    {"nonce": "g" * 32},
    {"nonce": ["0" * 32]},
    {"nonce": "0" * 32 + "\n"},
    {"sex": "Female"},
    {"age": {"min": 40}},
    {"age": {"min": 40, "max": 49, "x": 1}},
    {"age": {"min": 40.5, "max": 49}},
    {"age": {"min": -1, "max": 49}},
    {"extra": 1},
    {"diagnoses": [{"system": "ICD-10", "code": "c50"}]},
    {"diagnoses": [{"system": "ICD-10"}]},
    {"use_conditions": ["DUO:0000042", "DUO:0000042"]},
    {"sample_type": None},
    {"biobank": ""},
    {"biobank": "x" * 300},
    {"age": {"min": True, "max": 49}},
]


def _changed(change: dict[str, Any]) -> dict[str, Any]:
    record = {**GOOD, **change}
    return {k: v for k, v in record.items() if v is not None}


def test_shipped_sample_schema_has_id_and_nonce_as_free_fields() -> None:
    schema = SchemaSet.default().schema("sample-group")
    assert sorted(free_fields(schema)) == ["id", "nonce"]
    assert free_fields({**schema, "allOf": [{"required": ["sex"]}]}) == {}
    assert free_fields({**schema, "additionalProperties": {"type": "string"}}) == {}


@pytest.mark.parametrize("change", BAD_CHANGES, ids=range(len(BAD_CHANGES)))
def test_memo_never_hides_a_failure(change: dict[str, Any]) -> None:
    schemas = _SHARED
    reference = jsonschema.Draft202012Validator(
        schemas.schema("sample-group"),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    for i in range(3):  # the good shape is remembered first, with several ids
        good = {**GOOD, "id": "grp_" + "ab"[i % 2] * 26, "nonce": f"{i:032x}"}
        assert schemas.problems("sample-group", good, "x") == []
    bad = _changed(change)
    assert not schemas.is_valid("sample-group", bad)
    assert schemas.problems("sample-group", bad, "leaf 9")
    if not any(isinstance(v, str) and v.endswith("\n") for v in change.values()):
        assert not reference.is_valid(bad)  # ($ before a final newline: jsonschema differs)


def test_memo_is_not_fooled_by_non_json_types() -> None:
    schemas = _SHARED
    assert schemas.is_valid("sample-group", GOOD)
    fake_id = uuid.UUID(int=5)
    for odd in (
        {**GOOD, "use_conditions": ("DUO:0000042",)},
        {**GOOD, "biobank": fake_id},
        {**GOOD, "age": {"min": 40, "max": 49.0}},
    ):
        expected = _fresh_verdict(schemas, odd)
        assert schemas.is_valid("sample-group", odd) == expected
        assert (schemas.problems("sample-group", odd, "x") == []) == expected


_SHARED = SchemaSet.default()  # its memo keeps learning across tests and examples
_FRESH = SchemaSet.default()


def _fresh_verdict(schemas: SchemaSet, record: Any) -> bool:
    """fastjsonschema's verdict from the compiled validator alone (no memo in front)."""
    try:
        _FRESH._fast_validator(_FRESH.schema_id("sample-group"))(record)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


_ids = st.sampled_from(["grp_" + "a" * 26, "grp_" + "b" * 26, "grp_" + "A" * 26, "grp_1", ""])
_nonces = st.sampled_from(["0" * 32, "f" * 32, "0" * 31, "X" * 32])
_sexes = st.sampled_from(["female", "male", "Female"])
_ages = st.sampled_from([{"min": 40, "max": 49}, {"min": 40}, {"min": 40, "max": 151}])


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(_ids, _nonces, _sexes, _ages, st.booleans()), min_size=1, max_size=12))
def test_property_memo_verdicts_equal_a_fresh_validator(rows: list[Any]) -> None:
    schemas = _SHARED
    for rid, nonce, sex, age, drop_nonce in rows:
        record = {**GOOD, "id": rid, "nonce": nonce, "sex": sex, "age": age}
        if drop_nonce:
            del record["nonce"]
        expected = _fresh_verdict(schemas, record)
        assert schemas.is_valid("sample-group", record) == expected, record
        assert (schemas.problems("sample-group", record, "x") == []) == expected


def test_memo_starts_over_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import protocol.schema_memo as memo_module

    monkeypatch.setattr(memo_module, "LIMIT", 2)
    memo = SchemaSet.default().field_memo("sample-group")
    for sex in ("female", "male", "other"):
        assert memo.accepts({**GOOD, "sex": sex})
    assert memo._seen["sex"] == {"other"}  # learnt after starting over
    assert memo.accepts({**GOOD, "sex": "male"})  # learnt again from its own subschema


def test_memo_is_active_only_for_closed_independent_top_levels() -> None:
    schemas = SchemaSet.default()
    schema = schemas.schema("sample-group")
    assert schemas.field_memo("sample-group").active
    for other in (
        {**schema, "allOf": [{"required": ["sex"]}]},
        {**schema, "additionalProperties": True},
        {**schema, "additionalProperties": {"type": "string"}},
        {**schema, "dependentRequired": {"age": ["sex"]}},
        {**schema, "properties": {**schema["properties"], "é": {"type": "string"}}},
    ):
        memo = FieldMemo(other, schemas._compile_fragment)
        assert not memo.active and not memo.accepts(GOOD)


# values a validator may accept that have no canonical form, or whose canonical bytes are not
# orjson's sorted bytes: the memo must leave every one of them to the full path
UNCLEAN_CHANGES: list[dict[str, Any]] = [
    {"age": {"min": 40.0, "max": 49}},
    {"age": {"min": 40, "max": 49.0}},
    {"period": {"from": 2010.0, "to": 2015}},
    {"collection": "bbmri-eric:ID:DE_X:collection:e\u0301"},  # not NFC
    {"biobank": "bbmri-eric:ID:DE_\u212b"},
    {"id": "grp_" + "a" * 25 + "\u0301"},
    {"diagnoses": [{"system": "ICD-10", "code": "C50.9", "😀": 1, "\ue000": 2}]},
    {"age": {"min": 2**53, "max": 2**53 + 1}},
]


@pytest.mark.parametrize("change", UNCLEAN_CHANGES, ids=range(len(UNCLEAN_CHANGES)))
def test_memo_never_accepts_an_unclean_record(change: dict[str, Any]) -> None:
    memo = SchemaSet.default().field_memo("sample-group")
    assert memo.accepts(GOOD)
    record = _changed(change)
    assert not memo.accepts(record)
    assert not is_clean(record)
    expected = _fresh_verdict(_SHARED, record)
    assert _SHARED.is_valid("sample-group", record) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(_ids, _nonces, _sexes, _ages, st.booleans()), min_size=1, max_size=12))
def test_property_accepted_records_are_clean_and_valid(rows: list[Any]) -> None:
    """What the memo accepts has canonical bytes == orjson's sorted bytes (the auditor's
    digest fast path) and the fresh validator's approval."""
    memo = SchemaSet.default().field_memo("sample-group")
    for rid, nonce, sex, age, drop_nonce in rows:
        record = {**GOOD, "id": rid, "nonce": nonce, "sex": sex, "age": age}
        if drop_nonce:
            del record["nonce"]
        if memo.accepts(record):
            assert _fresh_verdict(_SHARED, record)
            assert canonical(record) == rfc8785.dumps(record)
            assert is_clean(record)


def _reference_bytes(record: dict[str, Any]) -> bytes | None:
    """canonical() of a record the fresh validator approves; None otherwise."""
    if not _fresh_verdict(_SHARED, record):
        return None
    try:
        return canonical(record)
    except ValueError:
        return None


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(_ids, _nonces, _sexes, _ages, st.booleans()), min_size=1, max_size=12))
def test_property_canonical_bytes_equal_the_reference(rows: list[Any]) -> None:
    """FieldMemo.canonical_bytes gives canonical() exactly for the records the fresh
    validator approves, and None for the others."""
    memo = SchemaSet.default().field_memo("sample-group")
    for rid, nonce, sex, age, drop_nonce in rows * 2:  # each row again, known by then
        record = {**GOOD, "id": rid, "nonce": nonce, "sex": sex, "age": age}
        if drop_nonce:
            del record["nonce"]
        expected = _reference_bytes(record)
        assert memo.canonical_bytes(record) == expected


def test_canonical_unchanged_for_leaf_shaped_entries() -> None:
    entry = {
        "log": "n.example/biobank-node",
        "index": MAX_SAFE_INTEGER,
        "op": "publish",
        "time": "2026-11-22T23:07:36Z",
        "kind": "sample-group",
        "id": "grp_x",
        "schema": "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json",
        "digest": "sha256:" + "0" * 64,
    }
    data = canonical(entry)
    assert data == rfc8785.dumps(entry)
    assert parse_canonical(data) == entry
