"""Log entries: building them and parsing leaf bytes with shape, index and origin checks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from protocol.canonical import canonical, digest
from protocol.entries import make_catalogue_entry, make_entry, parse_leaf, utc_now
from protocol.errors import IndexOrderError, MalformedEntry, NonCanonicalError, OriginMismatch
from protocol.note import generate_key

LOG = "charite.example/biobank-node"
TIME = "2026-11-22T23:07:36Z"
SCHEMA = "https://w3id.org/biobank-federation/schemas/v2/sample-group.schema.json"
VKEY = generate_key(LOG)[1]


def _publish(index: int = 0, **over: Any) -> dict[str, Any]:
    entry = make_entry(
        log=LOG,
        index=index,
        op="publish",
        kind="sample-group",
        id="grp_x",
        schema=SCHEMA,
        digest=digest({"id": "grp_x"}),
        time=TIME,
    )
    entry.update(over)
    return entry


def test_make_and_parse_publish_round_trip() -> None:
    entry = _publish(5)
    assert parse_leaf(canonical(entry), expected_log=LOG, expected_index=5) == entry
    assert set(entry) == {"log", "index", "op", "kind", "id", "schema", "digest", "time"}


def test_withdraw_and_rotate_key_shapes() -> None:
    w = make_entry(log=LOG, index=1, op="withdraw", kind="sample-group", id="grp_x", time=TIME)
    assert parse_leaf(canonical(w), expected_log=LOG, expected_index=1)["op"] == "withdraw"
    r = make_entry(log=LOG, index=2, op="rotate-key", key=VKEY, time=TIME)
    assert parse_leaf(canonical(r), expected_log=LOG, expected_index=2)["key"] == VKEY


def test_catalogue_entries_parse_with_catalogue_ops() -> None:
    from protocol.entries import CATALOGUE_OPS

    e = make_catalogue_entry(
        log="cat.example",
        index=0,
        op="enrol",
        time=TIME,
        node=LOG,
        url="https://node.example",
        key=VKEY,
        country="DE",
        from_size=0,
    )
    assert (
        parse_leaf(
            canonical(e), expected_log="cat.example", expected_index=0, allowed_ops=CATALOGUE_OPS
        )
        == e
    )
    with pytest.raises(MalformedEntry, match="leaf 0: field 'op'='enrol'"):
        parse_leaf(canonical(e), expected_log="cat.example", expected_index=0)


def test_make_entry_refuses_wrong_fields() -> None:
    with pytest.raises(ValueError, match="missing digest, schema"):
        make_entry(log=LOG, index=0, op="publish", kind="sample-group", id="x", time=TIME)
    with pytest.raises(ValueError, match="unexpected digest"):
        make_entry(
            log=LOG,
            index=0,
            op="withdraw",
            kind="sample-group",
            id="x",
            time=TIME,
            digest="sha256:" + "0" * 64,
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "donor"}, "leaf 0: field 'kind'='donor': must be one of"),
        ({"id": ""}, "field 'id'='': must be a non-empty string"),
        ({"digest": "sha256:ABC"}, "field 'digest'"),
        ({"digest": "md5:" + "0" * 64}, "field 'digest'"),
        ({"time": "2026-11-22T23:07:36+01:00"}, "field 'time'"),
        ({"time": "2026-11-22 23:07:36Z"}, "field 'time'"),
        ({"index": -1}, "field 'index'=-1"),
        ({"index": True}, "field 'index'=True"),
        ({"op": "delete"}, "field 'op'='delete'"),
        ({"log": 7}, "field 'log'=7"),
        ({"extra": 1}, "publish entry has wrong fields: unexpected extra"),
        ({"key": VKEY}, "unexpected key"),
    ],
)
def test_parse_leaf_rejects_bad_shapes(change: dict[str, Any], message: str) -> None:
    entry = _publish(0)
    entry.update(change)
    with pytest.raises(MalformedEntry, match=re.escape(message)):
        parse_leaf(canonical(entry), expected_log=LOG, expected_index=0)


def test_parse_leaf_rejects_missing_field() -> None:
    entry = _publish(0)
    del entry["schema"]
    with pytest.raises(
        MalformedEntry, match="leaf 0: publish entry has wrong fields: missing schema"
    ):
        parse_leaf(canonical(entry), expected_log=LOG, expected_index=0)


def test_parse_leaf_rejects_bad_rotate_key() -> None:
    leaf = canonical({"log": LOG, "index": 3, "op": "rotate-key", "key": "not+a+key", "time": TIME})
    with pytest.raises(MalformedEntry, match="leaf 3: field 'key'.*not a verifier key"):
        parse_leaf(leaf, expected_log=LOG, expected_index=3)


def test_parse_leaf_index_order() -> None:
    with pytest.raises(IndexOrderError, match="leaf 4: carries index 5, expected 4"):
        parse_leaf(canonical(_publish(5)), expected_log=LOG, expected_index=4)


def test_parse_leaf_other_log() -> None:
    leaf = canonical(_publish(0, log="other.example/node"))
    with pytest.raises(OriginMismatch, match="leaf 0: belongs to log 'other.example/node'"):
        parse_leaf(leaf, expected_log=LOG, expected_index=0)


def test_parse_leaf_non_canonical() -> None:
    leaf = canonical(_publish(9)).replace(b",", b", ", 1)
    with pytest.raises(NonCanonicalError, match="leaf 9"):
        parse_leaf(leaf, expected_log=LOG, expected_index=9)
    with pytest.raises(MalformedEntry, match="leaf 9: not a JSON object"):
        parse_leaf(b"[]", expected_log=LOG, expected_index=9)


def test_utc_now_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_now())
