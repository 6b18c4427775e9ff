"""The auditor's fast content path gives the full path's verdict, leaf for leaf.

`examine()` with the default `MemoSchemaCheck` checks a content the field memo accepts on
orjson's bytes, without the canonical walk or the validator. Here every content of an awkward
corpus (floats a validator would take for integers, non-NFC strings, keys needing UTF-16
order, integers beyond 2^53, schema failures, digests of other bytes) is examined both ways,
after the memo has learnt the honest values, and the results must be equal.
"""

from __future__ import annotations

import base64
import hashlib
from array import array
from typing import Any

import fastjsonschema
import orjson
import pytest

from audit.examine import (
    GROUP_SCHEMA,
    NUMBER_FIELDS,
    Examined,
    MemoSchemaCheck,
    examine,
    examine_task,
    expand,
)
from audit.livestate import Chapters
from protocol.canonical import canonical, digest
from protocol.entries import make_entry
from protocol.schema import SchemaSet
from tests.audit.sim import GROUP, SCHEMAS, TIME, group

ORIGIN = "memo.example/biobank-node"
BB = "bbmri-eric:ID:DE_MEMO"
COL = f"{BB}:collection:main"


class _NoMemo(SchemaSet):
    """The reference: fastjsonschema's compiled validator on every record, no memo."""

    def _fast_verdict(self, sid: str, record: Any) -> bool:
        try:
            self._fast_validator(sid)(record)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True


_REFERENCE = _NoMemo.default()


def _reference_check(schema_id: str, record: Any, location: str) -> list[Any]:
    return list(_REFERENCE.problems(schema_id, record, location))


def _leaf(index: int, content: dict[str, Any], signed: bytes | None) -> bytes:
    """A publish leaf whose digest covers `signed` (default: the content's canonical bytes)."""
    data = signed if signed is not None else canonical(content)
    return canonical(
        make_entry(
            log=ORIGIN,
            index=index,
            op="publish",
            time=TIME,
            kind=GROUP,
            id=str(content["id"]),
            schema=SCHEMAS[GROUP],
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
        )
    )


def _variants() -> list[tuple[dict[str, Any], bytes | None]]:
    """(content, bytes its digest covers): None means its canonical bytes."""
    base = group(7, BB, COL)
    orj = orjson.OPT_SORT_KEYS
    out: list[tuple[dict[str, Any], bytes | None]] = [(base, None)]
    for change in (
        {"age": {"min": 40.0, "max": 49}},
        {"period": {"from": 2010.0, "to": 2015}},
        {"samples": 12.0},
        {"age": {"min": 2**53, "max": 2**53 + 1}},
        {"collection": COL + "e\u0301"},
        {"id": base["id"][:-1] + "\u0301"},
        {"diagnoses": [{"system": "ICD-10", "code": "C50.9", "😀": 1, "\ue000": 2}]},
        {"age": {"min": 40, "max": 49.0}},
        {"period": {"from": 2010, "to": 2015.0}},
        {"samples": {"lt": 12.0}},
        {"donors": 5.0},
        {"donors": {"lt": 10.0}},
    ):
        bad = {**base, **change}
        out.append((bad, orjson.dumps(bad, option=orj)))  # signed over orjson's bytes
    for change in (
        {"sex": "Blut"},
        {"age": {"min": 40}},
        {"extra": 1},
        {"use_conditions": ["DUO:0000042", "DUO:0000042"]},
        {"nonce": "0" * 31},
        {"sample_type": "WholeBlood", "storage_temperature": "warm"},
        {"samples": {"lt": 1}},
        {"donors": 0},
    ):
        out.append(({**base, **change}, None))  # canonical but invalid
    out.append((base, canonical({**base, "sex": "male" if base["sex"] != "male" else "female"})))
    out.append(({**base, "id": base["id"][:-1] + "b"}, None))  # another honest group
    out.append(({**base, "samples": 9, "donors": 11}, None))  # valid, but cannot be counted
    out.append(({**base, "samples": {"lt": 20}, "donors": {"lt": 10}}, None))  # bounded
    return out


def _examine_all(check: Any, items: list[tuple[dict[str, Any], bytes | None]]) -> list[Examined]:
    chapters = Chapters()
    out = []
    for index, (content, signed) in enumerate(items):
        try:
            leaf = _leaf(index, content, signed)
        except ValueError:  # an id with no canonical form cannot be in a leaf: digest only
            leaf = _leaf(index, {**content, "id": "grp_" + "z" * 26}, signed)
        parsed = orjson.loads(orjson.dumps(content))  # as the fetcher hands it over
        out.append(examine(ORIGIN, index, leaf, parsed, check, chapters))
    return out


def test_fast_path_equals_full_path_on_awkward_contents() -> None:
    honest = [(group(n, BB, COL), None) for n in range(40)]  # the memo learns these values
    items = honest + _variants() + honest
    memo = MemoSchemaCheck()
    fast = _examine_all(memo, items)
    full = _examine_all(_reference_check, items)
    assert fast == full
    # the corpus does reach both outcomes the fast path could get wrong
    assert any(e.digest_errors for e in full) and any(e.schema_error for e in full)
    assert sum(e.group is not None for e in full) > len(honest)
    assert any(e.schema_error and "cannot be counted" in e.schema_error for e in full)
    # and the memo really was used for the honest contents
    record = orjson.loads(orjson.dumps(honest[3][0]))
    assert memo.schemas.known_digest(SCHEMAS[GROUP], record) is not None


@pytest.mark.parametrize("index", range(1, 8))
def test_unclean_content_is_never_accepted_by_the_memo(index: int) -> None:
    schemas = MemoSchemaCheck().schemas
    sid = SCHEMAS[GROUP]
    for n in range(5):
        honest = group(n, BB, COL)
        assert schemas.known_digest(sid, honest) == digest(honest)
    content, _signed = _variants()[index]
    assert schemas.known_digest(sid, orjson.loads(orjson.dumps(content))) is None


def test_worker_inline_group_path_equals_examine_on_awkward_contents() -> None:
    """`examine_task` checks the common leaf (a valid group publish) inline and sends every
    other leaf through `examine()`: on the awkward corpus, as bundle lines, the leaves it
    hands back equal `examine()` with the reference schema check, leaf for leaf."""
    honest = [(group(n, BB, COL), None) for n in range(40)]
    items = honest + _variants() + honest
    lines = []
    for index, (content, signed) in enumerate(items):
        try:
            leaf = _leaf(index, content, signed)
        except ValueError:
            leaf = _leaf(index, {**content, "id": "grp_" + "z" * 26}, signed)
        line = {"leaf": base64.b64encode(leaf).decode(), "content": content}
        lines.append(orjson.dumps(line))
    examined, error = expand(examine_task(ORIGIN, 0, lines))
    assert error is None
    full = _examine_all(_reference_check, items)
    assert examined == full
    assert sum(e.group is not None for e in examined) > len(honest)  # the inline path ran
    assert any(e.digest_errors for e in examined) and any(e.schema_error for e in examined)


def _group_lines(count: int) -> list[bytes]:
    """Bundle lines of valid group publishes; some repeat the key of an earlier group (of the
    same task, or 15 leaves before)."""
    lines = []
    for index in range(count):
        content = group(index, BB, COL)
        like = index - 1 if index % 3 == 2 else index - 15 if index % 5 == 0 else index
        if like >= 0 and like != index:
            content = {**group(like, BB, COL), "id": content["id"], "nonce": content["nonce"]}
        leaf = _leaf(index, content, None)
        lines.append(orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content}))
    return lines


def test_worker_sends_each_key_once_per_session() -> None:
    """In a session a worker numbers a log's group keys across its tasks and sends only the
    keys new in each task (`key_base`: the number of the first); a new session starts over,
    and a task outside any session sends its own keys numbered from 0."""
    lines = _group_lines(30)
    first = examine_task(ORIGIN, 0, lines[:15], session="one")
    second = examine_task(ORIGIN, 15, lines[15:], session="one")
    alone = examine_task(ORIGIN, 15, lines[15:])
    assert first.key_base == 0 and second.key_base == len(first.keys)
    assert alone.key_base is None
    repeated = set(alone.keys) & set(first.keys)
    assert repeated and not repeated & set(second.keys)  # sent once, in the first task
    assert set(second.keys) == set(alone.keys) - set(first.keys)
    again = examine_task(ORIGIN, 15, lines[15:], session="two")
    assert again.key_base == 0 and again.keys == alone.keys
    # the numbers refer to the session's keys: every leaf's key is one the worker sent
    sent = first.keys + second.keys
    kinds = array("i")
    kinds.frombytes(second.kinds)
    assert [sent[k] for k in kinds] == [e.group for e in expand(alone)[0]]


def _number_paths(
    node: Any, defs: dict[str, Any], path: tuple[str, ...], closed: bool = False
) -> set[tuple[str, ...]]:
    """Where a record valid against `node` can hold a JSON number ("*": any array item);
    refuses any keyword it does not know, a value of any type and an object open to other
    properties (`closed`: `node` is applied to the same value as a schema around it, whose
    type and closed properties then hold)."""
    known = {"type", "properties", "required", "additionalProperties", "items", "enum"}
    known |= {"const", "pattern", "maxLength", "minimum", "maximum", "uniqueItems", "maxItems"}
    known |= {"$ref", "oneOf", "anyOf", "allOf", "if", "then", "else", "title", "description"}
    known |= {"$schema", "$id", "$defs"}
    assert set(node) <= known, set(node) - known
    out: set[tuple[str, ...]] = set()
    closed = closed or (node.get("type") == "object" and node.get("additionalProperties") is False)
    if "$ref" in node:
        out |= _number_paths(defs[node["$ref"].removeprefix("#/$defs/")], defs, path, closed)
    for word in ("oneOf", "anyOf", "allOf"):
        for sub in node.get(word, ()):
            out |= _number_paths(sub, defs, path, closed)
    for word in ("then", "else"):  # `if` only selects; its branches constrain
        if word in node:
            out |= _number_paths(node[word], defs, path, closed)
    types = node.get("type")
    if types is not None:
        types = {types} if isinstance(types, str) else set(types)
        if types & {"integer", "number"}:
            out.add(path)
    elif "enum" in node or "const" in node:
        values = node.get("enum", [node.get("const")])
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out.add(path)
    elif not closed and not {"$ref", "oneOf", "anyOf", "allOf"} & set(node):
        raise AssertionError(f"{path}: a value of any type")
    if "properties" in node:
        assert closed, path
        for name, sub in node["properties"].items():
            out |= _number_paths(sub, defs, (*path, name))
    if "items" in node:
        out |= _number_paths(node["items"], defs, (*path, "*"))
    return out


def test_group_number_fields_are_where_the_schema_admits_numbers() -> None:
    """The inline path rules out floats in a schema-valid group by looking only at
    `NUMBER_FIELDS` (a field, or the values of its object): derived from the shipped schema,
    every place a valid record can hold a number is one of those."""
    schema = SchemaSet.default()._by_id[GROUP_SCHEMA]
    paths = _number_paths(schema, schema["$defs"], ())
    assert paths
    for path in paths:
        assert path[0] in NUMBER_FIELDS and len(path) <= 2 and "*" not in path, path
    assert {path[0] for path in paths} == set(NUMBER_FIELDS)
    assert SCHEMAS[GROUP] == GROUP_SCHEMA
