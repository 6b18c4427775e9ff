"""What the node appends is exactly protocol.canonical.canonical, and floats are refused.

Log entries after the first of a run are encoded with orjson (node/publish.py); the
schema memo (protocol.schema_memo.FieldMemo) gives canonical bytes or nothing.
These tests prove the bytes are canonical on a real import and on generated values, and
that what canonical() refuses never gets published.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.generate import generate
from node.importing import staging
from node.importing.encode import encode_content
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.publish import LogWriter
from protocol.canonical import canonical, parse_canonical
from protocol.errors import Problem
from protocol.note import Signer
from protocol.schema import SchemaSet
from protocol.schema_memo import FieldMemo
from tests.node.node_support import make_home


def test_every_imported_leaf_and_content_is_canonical(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    out = tmp_path / "export"
    generate("DE", 3000, 5, out)
    for kind in ("biobanks", "collections", "samples"):
        report = run_import(
            home, [out / f"{kind}.csv"], mapping=Mapping.load(out / f"{kind}.mapping.toml")
        )
        assert report.problems == [] and report.applied
    conn = sqlite3.connect(home.db_path)
    rows = conn.execute(
        "SELECT l.leaf, c.content FROM leaves l JOIN contents c ON c.idx = l.idx ORDER BY l.idx"
    ).fetchall()
    conn.close()
    kinds = {parse_canonical(bytes(leaf), what="leaf")["kind"] for leaf, _ in rows}
    assert kinds == {"biobank", "collection", "sample-group"} and len(rows) > 20
    for leaf, content in rows:
        entry = parse_canonical(bytes(leaf), what="leaf")  # raises unless canonical
        data = content.encode("utf-8")
        assert canonical(orjson.loads(data)) == data
        assert entry["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text())
_value = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


_FIELDS = ["a", "b", "c", "é", "😀", "\ue000"]
_OPEN = {
    "type": "object",
    "properties": {k: {} for k in _FIELDS[:3]},
    "additionalProperties": False,
}  # any values, ASCII keys: the memo is active


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS[:3]), _value, max_size=3))
def test_memo_bytes_equal_canonical_for_canonicalisable_values(value: dict[str, Any]) -> None:
    """The memo's fast bytes (protocol.schema_memo) are canonical() or nothing."""
    memo = FieldMemo(_OPEN, fastjsonschema.compile)
    for _ in range(2):  # learnt, then known
        try:
            expected = canonical(value)
        except ValueError:  # non-NFC text: canonical() refuses; so must the fast path
            assert memo.canonical_bytes(value) is None
            continue
        data = memo.canonical_bytes(value)
        assert data is None or data == expected  # None: the full path encodes it
        if all(k.isascii() for k in _keys(value)):
            assert data == expected


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_a_float_is_refused_with_a_problem_not_published() -> None:
    schemas = SchemaSet.default()
    content = {
        "id": "grp_" + "a" * 26,
        "biobank": "bbmri-eric:ID:DE_X",
        "collection": "bbmri-eric:ID:DE_X:collection:c",
        "sample_type": "Serum",
        "age": {"min": 40.5, "max": 49},
        "samples": 12,
        "donors": 10,
        "nonce": "0" * 32,
    }
    problems = encode_content(schemas.problems, "sample-group", content, "group g row 7")
    assert isinstance(problems, list) and all(isinstance(p, Problem) for p in problems)
    assert "group g row 7" in str(problems[0])
    content["age"] = {"min": 40.0, "max": 49}  # integral, but still a float: not canonical
    assert isinstance(encode_content(schemas.problems, "sample-group", content, "row 8"), list)
    content["age"] = {"min": 40, "max": 49}
    assert not isinstance(encode_content(schemas.problems, "sample-group", content, "r"), list)


def test_staged_integral_floats_come_back_as_integers() -> None:
    """Staged integer columns come back as ints (INTEGER affinity): a group built from them
    never carries an integral float."""
    conn = sqlite3.connect(":memory:")
    table = staging.create(conn)
    conn.execute(
        f"INSERT INTO {table} (local_id, biobank, row_location, age_min, age_max) "
        "VALUES ('s1', 'b', 'row 2', 40.0, 49.5)"
    )
    age_min, age_max = conn.execute(f"SELECT age_min, age_max FROM {table}").fetchone()
    assert type(age_min) is int and age_min == 40
    assert type(age_max) is float  # a real float stays one, and never equals a seen int


def test_entries_with_a_non_ascii_origin_are_canonical() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE leaves (idx INTEGER PRIMARY KEY, leaf BLOB, hash BLOB, "
        "kind TEXT, id TEXT, op TEXT, time TEXT)"
    )
    conn.execute("CREATE TABLE contents (idx INTEGER PRIMARY KEY, content TEXT)")
    origin = "charité.example/node"
    writer = LogWriter(conn, origin, Signer(origin, b"s" * 32))
    for i in range(3):
        data = canonical({"id": f"grp_{i}", "x": "é"})
        writer.publish(
            "sample-group",
            f"grp_{i}",
            "https://example.org/s",
            data,
            "sha256:" + hashlib.sha256(data).hexdigest(),
        )
    writer.flush()
    for (leaf,) in conn.execute("SELECT leaf FROM leaves ORDER BY idx"):
        parsed = parse_canonical(bytes(leaf), what="leaf")
        assert parsed["log"] == origin
