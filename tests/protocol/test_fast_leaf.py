"""parse_leaf's fast accept of the common leaf (a publish entry) gives exactly the reference's
verdicts (`parse_leaf_reference`: parse_canonical, check_entry, index, log): the same entries
accepted, the same error classes and messages for every refusal; and canonical_parsed's float
walk finds a float at every depth and position."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical, canonical_parsed, digest, parsed_digest
from protocol.entries import CATALOGUE_OPS, OPS, parse_leaf, parse_leaf_reference
from protocol.errors import BiobankError, NonCanonicalError

LOG = "node.example/biobank-node"
TIME = "2026-11-22T23:07:36Z"
SCHEMA = "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"
DIGEST = digest({"id": "grp_x"})


def _entry(index: int = 7, **over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "digest": DIGEST,
        "id": "grp_x",
        "index": index,
        "kind": "sample-group",
        "log": LOG,
        "op": "publish",
        "schema": SCHEMA,
        "time": TIME,
    }
    entry.update(over)
    return entry


def _verdict(fn: Any, leaf: bytes, log: str, index: int, ops: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(leaf, expected_log=log, expected_index=index, allowed_ops=ops)
    except BiobankError as exc:
        return type(exc).__name__, str(exc)


def _same(leaf: bytes, log: str = LOG, index: int = 7, ops: Any = OPS) -> tuple[str, Any]:
    """parse_leaf's verdict on `leaf`, asserted equal to the reference's."""
    fast = _verdict(parse_leaf, leaf, log, index, ops)
    assert fast == _verdict(parse_leaf_reference, leaf, log, index, ops)
    return fast


GOOD = canonical(_entry())

# (name, leaf bytes): refusals the fast path must leave to the reference, with its message
REFUSED: list[tuple[str, bytes]] = [
    ("leading space", b" " + GOOD),
    ("trailing newline", GOOD + b"\n"),
    ("space after colon", GOOD.replace(b'"id":', b'"id": ')),
    ("key order", orjson.dumps(dict(reversed(list(_entry().items()))))),
    ("escaped letter", GOOD.replace(b'"grp_x"', b'"grp_\\u0078"')),
    ("escaped slash", GOOD.replace(b"https://w3id", b"https:\\/\\/w3id")),
    ("duplicate key", GOOD.replace(b'"id":"grp_x"', b'"id":"grp_y","id":"grp_x"')),
    ("duplicate key, same value", GOOD.replace(b'"id":"grp_x"', b'"id":"grp_x","id":"grp_x"')),
    ("float index", GOOD.replace(b'"index":7', b'"index":7.0')),
    ("exponent index", GOOD.replace(b'"index":7', b'"index":7e0')),
    ("2^53 index", canonical(_entry()).replace(b'"index":7', b'"index":9007199254740992')),
    ("huge index", GOOD.replace(b'"index":7', b'"index":100000000000000000000000')),
    ("negative index", GOOD.replace(b'"index":7', b'"index":-7')),
    ("string index", GOOD.replace(b'"index":7', b'"index":"7"')),
    ("bool index", GOOD.replace(b'"index":7', b'"index":true')),
    ("null id", GOOD.replace(b'"grp_x"', b"null")),
    ("integer id", GOOD.replace(b'"grp_x"', b"5")),
    ("empty id", GOOD.replace(b'"grp_x"', b'""')),
    ("empty schema", canonical(_entry(schema=""))),
    ("list schema", canonical(_entry(schema=[SCHEMA]))),
    ("other kind", canonical(_entry(kind="donor"))),
    ("kind as list", canonical(_entry(kind=["sample-group"]))),
    ("other op", canonical(_entry(op="publishes"))),
    ("non-NFC id, raw", canonical(_entry(id="é")).replace("é".encode(), "e\u0301".encode())),
    ("non-NFC id, escaped", GOOD.replace(b'"grp_x"', b'"e\\u0301"')),
    ("astral id, escaped", GOOD.replace(b'"grp_x"', b'"grp_\\ud83d\\ude00"')),
    ("lone surrogate id", GOOD.replace(b'"grp_x"', b'"grp_\\ud83d"')),
    ("astral key", GOOD.replace(b'"id":', b'"\xf0\x9f\x98\x80":"x","id":')),
    ("extra field", canonical(_entry(extra="x"))),
    ("missing field", canonical({k: v for k, v in _entry().items() if k != "schema"})),
    ("time, month 13", canonical(_entry(time="2026-13-22T23:07:36Z"))),
    ("time, no Z", canonical(_entry(time="2026-11-22T23:07:36"))),
    ("time, newline", GOOD.replace(TIME.encode(), TIME.encode() + b"\\n")),
    ("time, fraction", canonical(_entry(time="2026-11-22T23:07:36.5Z"))),
    ("time, escaped arabic digits", GOOD.replace(b'"2026', b'"\\u0662\\u0660\\u0662\\u0666')),
    ("time as integer", canonical(_entry(time=1764000000))),
    ("digest upper case", canonical(_entry(digest=DIGEST.upper().replace("SHA", "sha")))),
    ("digest short", canonical(_entry(digest=DIGEST[:-1]))),
    ("digest long", canonical(_entry(digest=DIGEST + "0"))),
    ("digest other prefix", canonical(_entry(digest="sha512" + DIGEST[6:]))),
    ("digest prefix missing", canonical(_entry(digest="xxxxxxx" + DIGEST[7:]))),
    ("digest hex in prefix", canonical(_entry(digest="sh:aaaa" + DIGEST[7:]))),
    ("digest non-hex letter", canonical(_entry(digest=DIGEST[:-1] + "g"))),
    ("digest fullwidth digit", canonical(_entry(digest=DIGEST[:-1] + "０"))),
    ("digest arabic digit", canonical(_entry(digest=DIGEST[:-1] + "٣"))),
    ("digest escaped newline", canonical(_entry(digest=DIGEST[:-1] + "\n"))),
    ("digest as integer", canonical(_entry(digest=5))),
    ("other log", canonical(_entry(log="other.example/biobank-node"))),
    ("empty log", canonical(_entry(log=""))),
    ("log as list", canonical(_entry(log=[LOG]))),
    ("other index", canonical(_entry(index=8))),
    ("not an object", b"[1,2]"),
    ("a string", b'"publish"'),
    ("not JSON", b"{"),
    ("NaN", GOOD.replace(b'"index":7', b'"index":NaN')),
    ("not UTF-8", GOOD.replace(b"grp_x", b"grp_\xff")),
    ("empty", b""),
]


def test_fast_leaf_accepts_the_canonical_publish_leaf_as_the_reference_does() -> None:
    assert _same(GOOD) == ("ok", _entry())
    for kind in ("biobank", "collection", "sample-group"):
        assert _same(canonical(_entry(kind=kind)))[0] == "ok"
    assert _same(canonical(_entry(index=0)), index=0)[0] == "ok"
    assert _same(canonical(_entry(index=2**53 - 1)), index=2**53 - 1)[0] == "ok"


@pytest.mark.parametrize(("name", "leaf"), REFUSED, ids=[name for name, _ in REFUSED])
def test_fast_leaf_refuses_as_the_reference_does(name: str, leaf: bytes) -> None:
    verdict, message = _same(leaf)
    assert verdict != "ok", name
    assert "leaf 7" in message


def test_fast_leaf_unicode_values_the_reference_accepts() -> None:
    # NFC non-ASCII values are canonical: the fast path leaves them to the reference
    leaf = canonical(_entry(id="grp_é", schema="https://例え.example/s.json"))
    assert _same(leaf) == ("ok", _entry(id="grp_é", schema="https://例え.example/s.json"))
    assert _same(canonical(_entry(id="grp_\U0001f600"))) == ("ok", _entry(id="grp_\U0001f600"))


def test_a_time_in_non_ascii_digits_is_refused_on_both_paths() -> None:
    """RFC 3339 digits are ASCII: a time in Arabic-Indic or fullwidth digits is malformed."""
    for time in ("٢٠٢٦-11-22T23:07:36Z", "２０２６-11-22T23:07:36Z", "2026-11-22T23:07:3٦Z"):
        verdict, message = _same(canonical(_entry(time=time)))
        assert verdict == "MalformedEntry" and "time" in message, time


def test_fast_leaf_expected_log_and_index_as_the_reference() -> None:
    assert _same(GOOD, log="other.example/biobank-node")[0] == "OriginMismatch"
    assert _same(GOOD, index=6)[0] == "IndexOrderError"
    assert _same(canonical(_entry(log="")), log="")[0] == "MalformedEntry"
    assert _same(canonical(_entry(index=-1)), index=-1)[0] == "MalformedEntry"


def test_fast_leaf_respects_allowed_ops() -> None:
    # a catalogue log allows no publish: the reference refuses it whatever the fast path holds
    assert _same(GOOD, ops=CATALOGUE_OPS)[0] == "MalformedEntry"
    assert _same(GOOD, ops=("withdraw",))[0] == "MalformedEntry"
    assert _same(GOOD, ops=frozenset(OPS))[0] == "ok"


def test_fast_leaf_other_ops_take_the_reference_path() -> None:
    withdraw = {"id": "grp_x", "index": 7, "kind": "sample-group", "log": LOG, "op": "withdraw"}
    assert _same(canonical({**withdraw, "time": TIME}))[0] == "ok"
    assert _same(canonical({**withdraw, "time": "x"}))[0] == "MalformedEntry"


def test_fast_leaf_time_memo_never_accepts_an_unmatched_time() -> None:
    # thousands of distinct good times (past the memo's bound), then bad ones: each refused
    for i in range(5000):
        stamp = f"20{i // 1000 + 10}-0{i % 9 + 1}-1{i % 10}T{i % 24:02}:{i % 60:02}:00Z"
        assert _same(canonical(_entry(time=stamp)))[0] == "ok"
    for bad in ("2026-11-22T24:07:36Z", "2026-11-22 23:07:36Z", TIME + " ", TIME.lower()):
        assert _same(canonical(_entry(time=bad)))[0] == "MalformedEntry"
    assert _same(GOOD)[0] == "ok"


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_value = (
    _text
    | st.sampled_from(["", "sample-group", "biobank", "collection", TIME, DIGEST, LOG, SCHEMA])
    | st.integers(min_value=-2, max_value=2**54)
    | st.sampled_from([7, 7.0, True, None, [], {}])
)
_fields = st.dictionaries(
    st.sampled_from(["digest", "id", "index", "kind", "log", "op", "schema", "time", "x"]),
    _value,
    max_size=9,
)


def _encodings(entry: dict[str, Any]) -> list[bytes]:
    out = [orjson.dumps(entry), json.dumps(entry).encode(), json.dumps(entry).encode() + b" "]
    out.append(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode())
    with contextlib.suppress(ValueError):
        out.append(canonical(entry))
    return out


@settings(max_examples=400, deadline=None, database=None)
@given(_fields)
def test_property_fast_leaf_agrees_with_the_reference(over: dict[str, Any]) -> None:
    entry = _entry(**over)
    if "x" not in over:
        entry.pop("x", None)
    for leaf in _encodings(entry):
        _same(leaf)


@settings(max_examples=200, deadline=None, database=None)
@given(st.sets(st.sampled_from(sorted(_entry())), min_size=1))
def test_property_fast_leaf_missing_fields_as_the_reference(dropped: set[str]) -> None:
    entry = {k: v for k, v in _entry().items() if k not in dropped}
    verdict, _message = _same(canonical(entry))
    assert verdict == "MalformedEntry"


def _float_at(path: list[Any], leaf: Any) -> Any:
    """`leaf` placed in dicts ("k") and lists (0) down `path`, beside strings, integers, bools,
    None and empty containers at each level."""
    value = leaf
    for step in reversed(path):
        if step == "k":
            value = {"a": "s", "b": 1, "c": True, "d": None, "e": [], "k": value, "z": "t"}
        else:
            value = ["s", 1, False, None, {}, value, "t"]
    return value


_PATHS = [[], ["k"], [0], ["k", "k"], ["k", 0], [0, "k"], [0, 0], ["k", 0, "k"], ["k", "k", "k"]]
_PATHS += [["k", 0, 0], [0, 0, 0], ["k", "k", 0, "k"], ["k", 0, "k", 0], [0, 0, 0, 0, "k"]]


@pytest.mark.parametrize("path", _PATHS, ids=["/".join(map(str, p)) or "top" for p in _PATHS])
@pytest.mark.parametrize("leaf", [1.5, 2.0, -0.0, 1e23])
def test_canonical_parsed_float_walk_finds_a_float_anywhere(path: list[Any], leaf: float) -> None:
    value = orjson.loads(orjson.dumps(_float_at(path, leaf)))
    with pytest.raises(ValueError) as fast:
        canonical_parsed(value)
    with pytest.raises(ValueError) as reference:
        canonical(value)
    assert str(fast.value) == str(reference.value)
    assert "floats are not allowed" in str(fast.value)
    # the same shape with an integer there is canonical, and its digest the reference's
    same_shape = orjson.loads(orjson.dumps(_float_at(path, 2)))
    assert canonical_parsed(same_shape) == canonical(same_shape)
    assert parsed_digest(same_shape) == digest(same_shape)


def test_canonical_parsed_float_in_a_tuple_is_refused() -> None:
    for value in [{"a": (1, 2.5)}, {"a": [(1, 2.5)]}, ({"a": 1.5},), {"a": [{"b": (0.5,)}]}]:
        with pytest.raises(ValueError, match="floats are not allowed"):
            canonical_parsed(value)


def test_fast_leaf_non_canonical_error_is_what_parse_leaf_raises_for_bad_bytes() -> None:
    with pytest.raises(NonCanonicalError):
        parse_leaf(b" " + GOOD, expected_log=LOG, expected_index=7)
