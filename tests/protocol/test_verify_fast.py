"""StepVerifier.feed's leaf-shape fast path (issue 19 item 4, fifth session): a publish leaf
in the shape of the log's earlier leaves read off its bytes (`LeafShapes`), and a valid
v2 sample group's float check limited to the fields where its schema admits numbers
(`SchemaSet.number_fields`). Every verdict (entry, problems, bytes, refusal and its message,
rejections, the final state) must equal the reference path's (`StepVerifier.fast = False`).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import bytes_digest, canonical, digest
from protocol.entries import MAX_INDEX, TAILS, LeafShapes, make_entry, parse_leaf
from protocol.errors import BiobankError
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Signer, Verifier, generate_key, sign_checkpoint
from protocol.schema import GROUP_SCHEMA, NUMBER_FIELDS, SchemaSet
from protocol.verify import StepVerifier
from tests.audit.sim import GROUP, SCHEMAS, TIME, group
from tests.support import number_paths

ORIGIN = "fast.example/biobank-node"
BB = "bbmri-eric:ID:DE_FAST"
COL = f"{BB}:collection:main"
SHIPPED = SchemaSet.default()
SKEY, VKEY = generate_key(ORIGIN)


def _leaf(
    at: int, content: Any, body: bytes | None = None, fields: dict[str, Any] | None = None
) -> bytes:
    """A group publish leaf at `index` with the digest of `body` (default: the content's
    canonical bytes), `fields` changed (the leaf then sorted but not checked)."""
    entry = make_entry(
        log=ORIGIN,
        index=at,
        op="publish",
        time=TIME,
        kind=GROUP,
        id=str(content["id"]) if isinstance(content, dict) else "grp_x",
        schema=GROUP_SCHEMA,
        digest=bytes_digest(body if body is not None else canonical(content)),
    )
    if not fields:
        return canonical(entry)
    return orjson.dumps({**entry, **fields}, option=orjson.OPT_SORT_KEYS)


def _honest(count: int) -> list[tuple[bytes, Any]]:
    contents = [group(n, BB, COL) for n in range(count)]
    return [(_leaf(n, c), c) for n, c in enumerate(contents)]


def _note(leaves: list[bytes]) -> str:
    compact = CompactRange()
    compact.extend(leaf_hash(leaf) for leaf in leaves)
    return sign_checkpoint(Checkpoint(ORIGIN, len(leaves), compact.root()), [Signer.from_key(SKEY)])


def _run(items: list[tuple[bytes, Any]], *, fast: bool, schemas: SchemaSet = SHIPPED) -> list[Any]:
    """Every leaf's outcome (or the refusal that stopped the step), the final state and the
    rejections; contents parsed from JSON as a page gives them."""
    step = StepVerifier(
        None, _note([leaf for leaf, _ in items]), [Verifier.from_key(VKEY)], schemas
    )
    step.fast = fast
    out: list[Any] = []
    for leaf, content in items:
        parsed = None if content is None else orjson.loads(orjson.dumps(content))
        try:
            v = step.feed(leaf, parsed)
        except BiobankError as exc:
            out.append((type(exc).__name__, str(exc)))
            return out
        out.append(
            (v.index, v.entry, list(v.entry), v.leaf, v.content, v.problems, v.leaf_hash, v.body)
        )
    try:
        out.append(step.finish().to_json())
    except BiobankError as exc:
        out.append((type(exc).__name__, str(exc)))
    out.append([(r.index, r.id, r.problems) for r in step.rejections])
    return out


def _same(items: list[tuple[bytes, Any]], schemas: SchemaSet = SHIPPED) -> list[Any]:
    fast = _run(items, fast=True, schemas=schemas)
    assert fast == _run(items, fast=False, schemas=schemas)
    return fast


def test_verifier_fast_path_accepts_honest_groups_as_the_reference() -> None:
    """An honest log: the same entries (members in the leaf's order), bytes, hashes, state."""
    out = _same(_honest(12))
    assert len(out) == 14 and out[-1] == []


def test_leaf_shapes_read_what_parse_leaf_reads() -> None:
    """A learnt shape gives parse_leaf's entry, members in the same order; another digest,
    another index or an unlearnt tail give None."""
    shapes = LeafShapes()
    items = _honest(3)
    first = parse_leaf(items[0][0], expected_log=ORIGIN, expected_index=0)
    shapes.learn(items[0][0], 0, first)
    for n, (leaf, content) in enumerate(items):
        entry = parse_leaf(leaf, expected_log=ORIGIN, expected_index=n)
        read = shapes.read(leaf, n, digest(content))
        assert read == entry and list(read or {}) == list(entry)
        assert shapes.read(leaf, n + 1, digest(content)) is None
        assert shapes.read(leaf, n, digest({"other": n})) is None
    other = _leaf(3, group(3, BB, COL), fields={"time": "2026-11-23T00:00:00Z"})
    assert shapes.read(other, 3, digest(group(3, BB, COL))) is None


@settings(max_examples=300, deadline=None)
@given(
    at=st.integers(0, 400),
    cut=st.integers(0, 3),
    insert=st.sampled_from(
        [b"", b"0", b"1", b" ", b'"', b"\\", b"\x7f", b"\x00", b"\xc3\xa9", b"a", b","]
    ),
)
def test_verifier_fast_path_equals_reference_on_edited_leaves(
    at: int, cut: int, insert: bytes
) -> None:
    """A leaf edited anywhere (a byte changed, taken out or put in: quotes, escapes,
    non-ASCII, digits, spaces), signed as edited, its content unchanged, after leaves that
    taught the shape: the same verdict both ways."""
    items = _honest(4)
    leaf, content = items[3]
    items[3] = (leaf[:at] + insert + leaf[at + cut :], content)
    _same(items)


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
        {"time": "2026-11-23T00:00:00Z"},
        {"log": "other.example/biobank-node"},
        {"kind": "biobank"},
        {"op": "withdraw"},
        {"schema": "https://example.org/v1/other.schema.json"},
        {"schema": "sample-group"},
        {"digest": "sha256:" + "A" * 64},
        {"index": 4},
        {"extra": 1},
    ],
)
def test_verifier_fast_path_refuses_what_the_reference_refuses(fields: dict[str, Any]) -> None:
    """Leaves that differ from the learnt shape in one member: the reference's verdict."""
    items = _honest(3)
    content = group(3, BB, COL)
    items.append((_leaf(3, content, fields=fields), content))
    _same(items)


def _awkward() -> list[tuple[str, Any, bytes | None]]:
    """(name, content, the bytes its leaf's digest is over: None = canonical)."""
    base = group(3, BB, COL)
    sorted_bytes = lambda c: orjson.dumps(c, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    cases: list[tuple[str, Any, bytes | None]] = []
    for name, change in [
        ("float samples", {"samples": 12.0}),
        ("float donors", {"donors": 11.0}),
        ("float in age", {"age": {"min": 20.0, "max": 39}}),
        ("float in period", {"period": {"from": 2020, "to": 2024.0}}),
        ("float count bound", {"samples": {"lt": 10.0}}),
        ("float where no number is", {"sample_type": 1.5}),
        ("float in a list", {"use_conditions": [1.0]}),
        ("float member", {"x": 0.5}),
    ]:
        content = {**base, **change}
        cases.append((name + " over orjson bytes", content, sorted_bytes(content)))
    for name, change in [
        ("non-NFC value", {"sample_type": "Cafe\u0301"}),
        ("non-ASCII value", {"sample_type": "Plasmä"}),
        ("big integer", {"samples": 2**60}),
        ("integer at 2^53", {"samples": 2**53}),
        ("invalid value", {"sample_type": "Nonsense"}),
        ("extra member", {"extra": "x"}),
        ("other id", {"id": "grp_aaaaaaaaaaaaaaaaaaaaaaaaaa"}),
        ("no nonce", {"nonce": None}),
        ("true for a count", {"samples": True}),
    ]:
        content = {k: v for k, v in {**base, **change}.items() if v is not None}
        try:
            body = canonical(content)
        except ValueError:
            body = None
        cases.append((name, content, body if body is not None else sorted_bytes(content)))
    cases.append(("digest of other bytes", base, b"{}"))
    cases.append(("a list for content", [1, 2], sorted_bytes([1, 2])))
    return cases


@pytest.mark.parametrize("case", _awkward(), ids=lambda c: c[0])
def test_verifier_fast_path_equals_reference_on_awkward_contents(
    case: tuple[str, Any, bytes | None],
) -> None:
    """Floats a validator may take for integers, floats where the schema admits none,
    non-NFC and non-ASCII strings, integers past 2^53, schema failures, another id, digests
    of other bytes: after honest leaves that taught the shape, the same verdict both ways
    (a refusal with the same message, or a rejection with the same problems)."""
    _name, content, body = case
    items = _honest(3)
    items.append((_leaf(3, content, body), content))
    items.append(_honest(5)[4])
    _same(items)


def test_verifier_fast_path_leaves_other_schemas_under_the_group_id_to_the_full_walk() -> None:
    """`number_fields` holds only for the shipped schema of its `$id`: a set loading another
    schema under the v2 group `$id` (numbers admitted anywhere) gets the full float walk, and
    the verdicts stay the reference's."""
    loose = SchemaSet([{"$id": GROUP_SCHEMA, "type": "object"}])
    assert SHIPPED.number_fields(GROUP_SCHEMA) == NUMBER_FIELDS[GROUP_SCHEMA]
    assert loose.number_fields(GROUP_SCHEMA) is None
    items = _honest(3)
    content = {**group(3, BB, COL), "anything": {"deep": [1.5]}}
    items.append((_leaf(3, content, orjson.dumps(content, option=orjson.OPT_SORT_KEYS)), content))
    out = _same(items, loose)
    assert out[-1][0] == "DigestMismatch"


def test_verifier_fast_path_reads_the_index_exactly() -> None:
    """The index is read as parse_leaf reads it: its digits at the expected place (not a
    prefix of a longer number, nor one with a leading zero)."""
    content = group(12, BB, COL)
    for wrong in (b'"index":012,', b'"index":123,', b'"index":1,'):
        items = _honest(12)
        items.append((_leaf(12, content).replace(b'"index":12,', wrong), content))
        _same(items)
    assert MAX_INDEX == 2**53 - 1


def test_number_fields_are_where_the_group_schema_admits_numbers() -> None:
    """The fast path rules out floats in a valid v2 group by looking only at its
    `NUMBER_FIELDS` (a field, or the values of its object): derived from the shipped schema,
    every place a valid record can hold a number is one of those, and the leaves the
    simulated nodes write name that schema."""
    schema = SHIPPED.schema(GROUP_SCHEMA)
    assert schema["additionalProperties"] is False
    paths = number_paths(schema, schema["$defs"], ())
    fields = NUMBER_FIELDS[GROUP_SCHEMA]
    assert paths
    for path in paths:
        assert path[0] in fields and len(path) <= 2 and "*" not in path, path
    assert {path[0] for path in paths} == set(fields)
    assert SCHEMAS[GROUP] == GROUP_SCHEMA


def test_verifier_fast_path_reads_no_escaped_id() -> None:
    """An id written with an escape (`a\\/b`, which JSON reads as `a/b`, and no canonical
    form writes) is not read off the bytes, even where the record's own id is the escape's
    text: the reference refuses the leaf as not canonical, and so does the fast path."""
    loose = SchemaSet([{"$id": GROUP_SCHEMA, "type": "object"}])
    items = _honest(3)
    content = {**group(3, BB, COL), "id": "a\\/b"}
    leaf = _leaf(3, content)
    assert b'"id":"a\\\\/b"' in leaf
    items.append((leaf.replace(b'"id":"a\\\\/b"', b'"id":"a\\/b"'), content))
    out = _same(items, loose)
    assert out[-1][0] == "NonCanonicalError"


def test_leaf_shapes_stay_bounded() -> None:
    """A log of ever new tails (another time each) never holds more than TAILS of them, and
    a shape learnt after a start-over is read again."""
    shapes = LeafShapes()
    content = group(1, BB, COL)
    for n in range(TAILS + 5):
        time = f"2026-11-22T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        leaf = _leaf(7, content, fields={"time": time})
        shapes.learn(leaf, 7, parse_leaf(leaf, expected_log=ORIGIN, expected_index=7))
        assert len(shapes.tails) <= TAILS
    assert shapes.read(leaf, 7, digest(content)) is not None
