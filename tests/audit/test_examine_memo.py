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
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.examine import (
    GROUP_SCHEMA,
    MAX_INDEX,
    NUMBER_FIELDS,
    NUMBERS_CUT,
    SIGNATURE_CUTS,
    SIGNATURES,
    Examined,
    MemoSchemaCheck,
    examine,
    examine_task,
    expand,
    signature,
)
from audit.livestate import Chapters, group_key
from protocol.canonical import canonical, digest
from protocol.entries import make_entry
from protocol.schema import SchemaSet
from tests.audit.sim import GROUP, SCHEMAS, TIME, group
from tests.support import number_paths

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


def test_group_number_fields_are_where_the_schema_admits_numbers() -> None:
    """The inline path rules out floats in a schema-valid group by looking only at
    `NUMBER_FIELDS` (a field, or the values of its object): derived from the shipped schema,
    every place a valid record can hold a number is one of those."""
    schema = SchemaSet.default()._by_id[GROUP_SCHEMA]
    paths = number_paths(schema, schema["$defs"], ())
    assert paths
    for path in paths:
        assert path[0] in NUMBER_FIELDS and len(path) <= 2 and "*" not in path, path
    assert {path[0] for path in paths} == set(NUMBER_FIELDS)
    assert SCHEMAS[GROUP] == GROUP_SCHEMA


def _object_schemas(node: Any, defs: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """(path, object schema) of every object a record valid against `node` can hold."""
    out = []
    if "$ref" in node:
        out += _object_schemas(defs[node["$ref"].removeprefix("#/$defs/")], defs, path)
    for word in ("oneOf", "anyOf", "allOf", "then", "else"):
        subs = node.get(word, ())
        for sub in [subs] if isinstance(subs, dict) else subs:
            out += _object_schemas(sub, defs, path)
    if "properties" in node:
        out.append((path, node))
        for name, sub in node["properties"].items():
            out += _object_schemas(sub, defs, (*path, name))
    if "items" in node:
        out += _object_schemas(node["items"], defs, (*path, "*"))
    return out


def test_signature_cuts_follow_the_group_schema() -> None:
    """The key's signature cuts the canonical bytes of a schema-valid v2 group at three
    markers: the shipped schema must put its members in the order the cut assumes (sorted:
    `age` alone before `biobank`; `id`, `nonce`, `period` alone between the key's members up
    to `donors` and from `sample_type` on), require the members marked, and close every object,
    no nested one naming a marked member (so each marker can only be the top-level key)."""
    schema = SchemaSet.default()._by_id[GROUP_SCHEMA]
    names = sorted(schema["properties"])
    first, cut, back = names.index("biobank"), names.index("id"), names.index("sample_type")
    assert names[:first] == ["age"]
    assert names[cut:back] == ["id", "nonce", "period"]
    assert set(names[:first] + names[cut:back]) == set(SIGNATURE_CUTS)
    assert {"biobank", "id", "nonce", "sample_type"} <= set(schema["required"])
    objects = _object_schemas(schema, schema["$defs"], ())
    assert objects and objects[0][0] == ()
    closed = {path for path, node in objects if node.get("additionalProperties") is False}
    for path, node in objects:  # open only as a branch applied to a closed object's value
        assert path in closed, path
        if path:
            assert not {"biobank", "id", "sample_type"} & set(node["properties"]), path
    assert set(NUMBERS_CUT) == set(NUMBER_FIELDS) & set(SIGNATURE_CUTS)


def _valid_groups() -> list[dict[str, Any]]:
    """Valid v2 groups, many sharing their key's members, each member varied (optional ones
    left out, code lists reordered or repeated, counts exact or bounded)."""
    out = []
    diagnoses = [
        [{"system": "ICD-10", "code": "C50.9"}],
        [{"system": "ICD-10", "code": "C50.1"}],  # another code, the same chapter
        [{"system": "ORPHA", "code": "ORPHA:558"}, {"system": "ICD-10", "code": "E11.9"}],
        [{"system": "ICD-10", "code": "E11.9"}, {"system": "ORPHA", "code": "ORPHA:558"}],
    ]
    uses = [["DUO:0000042"], ["DUO:0000007", "DUO:0000042"], ["DUO:0000042", "DUO:0000007"]]
    for n in range(96):
        content = group(n % 6, BB, COL, id=group(n, BB, COL)["id"])
        content["diagnoses"] = diagnoses[n % 4]
        content["use_conditions"] = uses[n % 3]
        content["age"] = {"min": 10 * (n % 5), "max": 10 * (n % 5) + 9}
        content["period"] = {"from": 2000 + n % 7, "to": 2020}
        for name in ("age", "period", "diagnoses", "sex", "dataset_types"):
            if n % 11 == len(name) % 11:
                del content[name]
        out.append(content)
    return out


def test_signature_memo_gives_each_group_its_group_key() -> None:
    """Groups that share a signature share their `group_key`, and a worker numbering keys by
    signature across tasks hands back each leaf's own `group_key` (many from the memo)."""
    groups = _valid_groups()
    by_signature: dict[bytes, Any] = {}
    for content in groups:
        sig = signature(canonical(content))
        assert sig is not None
        assert by_signature.setdefault(sig, group_key(content, Chapters())) == group_key(
            content, Chapters()
        )
    assert len(by_signature) < len(groups) // 2  # the memo is hit
    lines = []
    for index, content in enumerate(groups):
        leaf = _leaf(index, content, None)
        lines.append(orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content}))
    sent: list[Any] = []
    got = []
    for start in range(0, len(lines), 25):
        chunk = examine_task(ORIGIN, start, lines[start : start + 25], session="sig")
        assert chunk.error is None and not chunk.others
        assert chunk.key_base == len(sent)
        sent += chunk.keys
        kinds = array("i")
        kinds.frombytes(chunk.kinds)
        got += [sent[k] for k in kinds]
    assert got == [group_key(c, Chapters()) for c in groups]


@pytest.mark.parametrize(
    "change",
    [
        {"age": {"min": 40.0, "max": 49}},
        {"age": {"min": 40, "max": 49.0}},
        {"period": {"from": 2010.0, "to": 2015}},
        {"period": {"from": 2010, "to": 2015.0}},
        {"samples": 12.0, "donors": 12},
        {"donors": {"lt": 10.0}},
        {"samples": 9, "donors": 11},
    ],
)
def test_signature_hit_still_refuses_floats_and_impossible_counts(change: dict[str, Any]) -> None:
    """A record whose key members match a group the worker has seen (its signature is
    remembered) is still refused when a number cut out of the signature is a float signed
    over orjson's bytes, or when its own members differ (floats, impossible counts): the
    worker's verdict for it is `examine()`'s with the reference schema check."""
    base = group(4, BB, COL, samples=12, donors=12)
    seen = [{**base, "id": group(n, BB, COL)["id"], "nonce": f"{n:032x}"} for n in range(3)]
    bad = {**base, **change, "id": group(9, BB, COL)["id"]}
    items: list[tuple[dict[str, Any], bytes | None]] = [(c, None) for c in seen]
    items.append((bad, orjson.dumps(bad, option=orjson.OPT_SORT_KEYS)))
    lines = []
    for index, (content, signed) in enumerate(items):
        leaf = _leaf(index, content, signed)
        lines.append(orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content}))
    examined, error = expand(examine_task(ORIGIN, 0, lines))
    assert error is None
    assert examined == _examine_all(_reference_check, items)
    assert examined[-1].group is None and (examined[-1].digest_errors or examined[-1].schema_error)
    assert all(e.group is not None for e in examined[:-1])


def test_signature_memo_stays_bounded() -> None:
    """A worker remembers at most `SIGNATURES` signatures per log (then starts over)."""
    assert 1_000 <= SIGNATURES <= 1 << 20
    content = group(1, BB, COL)
    sig = signature(canonical(content))
    assert sig is not None and b'"nonce"' not in sig and b'"age"' not in sig
    assert signature(b'{"biobank":"x"}') is None


def _line(leaf: bytes, content: Any) -> bytes:
    return orjson.dumps({"leaf": base64.b64encode(leaf).decode(), "content": content})


def _worker_and_reference(items: list[tuple[bytes, Any]], start: int = 0) -> None:
    """The leaves (leaf bytes, content) at indexes start, start+1, ... as one worker task:
    each leaf's result equals `examine()`'s with the reference schema check."""
    examined, error = expand(examine_task(ORIGIN, start, [_line(*item) for item in items]))
    assert error is None
    assert examined[0].group is not None  # the first leaf, honest, teaches the shape
    chapters = Chapters()
    reference = [
        examine(
            ORIGIN, start + n, leaf, orjson.loads(orjson.dumps(content)), _reference_check, chapters
        )
        for n, (leaf, content) in enumerate(items)
    ]
    assert examined == reference


def _honest(count: int, start: int = 0) -> list[tuple[bytes, Any]]:
    """Valid group publishes at indexes start, start+1, ... (their contents' digests)."""
    contents = [group(n, BB, COL) for n in range(count)]
    return [(_leaf(start + n, content, None), content) for n, content in enumerate(contents)]


@settings(max_examples=300, deadline=None)
@given(
    at=st.integers(0, 400),
    cut=st.integers(0, 3),
    insert=st.sampled_from(
        [b"", b"0", b"1", b" ", b'"', b"\\", b"\x7f", b"\x00", b"\xc3\xa9", b"a", b","]
    ),
)
def test_leaf_shape_fast_path_equals_parse_leaf_on_edited_leaves(
    at: int, cut: int, insert: bytes
) -> None:
    """A worker reads a publish leaf in the shape of the log's earlier leaves off its bytes
    (`_learn_tail`) instead of parsing it: a leaf edited anywhere (a byte changed, taken out
    or put in: quotes, escapes, non-ASCII, digits, spaces), its content's digest unchanged,
    gets `examine()`'s verdict with parse_leaf, leaf for leaf."""
    items = _honest(4)
    leaf, content = items[3]
    items[3] = (leaf[:at] + insert + leaf[at + cut :], content)
    _worker_and_reference(items)


def _group_leaf(at: int, content: dict[str, Any], fields: dict[str, Any] | None = None) -> bytes:
    """A group publish leaf at `index` with its content's digest, `fields` changed."""
    entry = make_entry(
        log=ORIGIN,
        index=at,
        op="publish",
        time=TIME,
        kind=GROUP,
        id=str(content["id"]),
        schema=SCHEMAS[GROUP],
        digest=digest(content),
    )
    return orjson.dumps({**entry, **(fields or {})}, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(
    "fields",
    [
        {"id": 'grp_"quoted"'},
        {"id": "grp_back\\slash"},
        {"id": "grp_é"},
        {"id": "grp_tab\t"},
        {"id": "grp_del\x7f"},
        {"id": ""},
        {"id": 5},
        {"time": "2026-11-22T23:07:36+00:00"},
        {"log": "other.example/biobank-node"},
        {"kind": "biobank"},
        {"op": "withdraw"},
        {"schema": "https://example.org/other.schema.json"},
        {"digest": "sha256:" + "A" * 64},
        {"index": 4},
        {"extra": 1},
    ],
)
def test_leaf_shape_fast_path_refuses_what_parse_leaf_refuses(fields: dict[str, Any]) -> None:
    """Leaves that differ from the learnt shape in one member (an id needing escapes or not a
    string, another time, log, kind, op, schema, an upper-case digest, another index, a
    member more): each gets `examine()`'s verdict with parse_leaf."""
    items = _honest(3)
    content = group(3, BB, COL)
    items.append((_group_leaf(3, content, fields), content))
    _worker_and_reference(items)


def test_leaf_shape_fast_path_reads_the_index_exactly() -> None:
    """The index is read as parse_leaf reads it: its digits at the expected place (not a
    prefix of a longer number, nor one with a leading zero), and none beyond 2^53 - 1."""
    content = group(12, BB, COL)
    honest = _honest(12)
    for leaf in (
        _group_leaf(12, content).replace(b'"index":12,', b'"index":012,'),
        _group_leaf(12, content).replace(b'"index":12,', b'"index":123,'),
        _group_leaf(12, content).replace(b'"index":12,', b'"index":1,'),
    ):
        _worker_and_reference([*honest, (leaf, content)])
    big = MAX_INDEX + 1
    contents = [group(n, BB, COL) for n in range(3)]
    items = [
        (_group_leaf(0, c).replace(b'"index":0,', b'"index":%d,' % (big - 2 + n)), c)
        for n, c in enumerate(contents)
    ]
    _worker_and_reference(items, start=big - 2)
