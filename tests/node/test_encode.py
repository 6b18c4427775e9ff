"""The import's helper process encodes exactly what the importer would encode inline.

Big imports hand the per-sample work (pseudonym, content, schema gate, canonical bytes,
digest) to a helper process (node/importing/encode.py). These tests run the same imports with and
without the helper and compare everything but the random nonces: the ids, contents,
leaves, record state, problems and counts.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson
import pytest

from federation.generate import generate
from node import store
from node.home import SECRET, Home
from node.importing import diff, encode
from node.importing.encode import Bulk, ImportHelper, LeafPlan, SampleEncoder
from node.importing.importer import ImportReport, run_import
from node.importing.mapping import Mapping
from node.importing.sources import tabular
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter
from protocol.canonical import canonical, parse_canonical
from protocol.note import Signer
from protocol.schema import SchemaSet
from tests.node.node_support import make_home

SECRET_BYTES = b"k" * 32


def _row(local: str, **over: Any) -> str:
    """A staged row as the importer hands it to the encoder (SQLite's json_array text)."""
    row: dict[str, Any] = {
        "local_id": local,
        "donor_id": "D" + local,
        "biobank": "bbmri-eric:ID:DE_X",
        "collection": "bbmri-eric:ID:DE_X:collection:c",
        "sample_type": "Serum",
        "storage": "-18to-35",
        "sex": "female",
        "age_min": 40,
        "age_max": 49,
        "period_from": 2015,
        "period_to": 2019,
        "diagnoses": '[{"code":"C50","system":"ICD-10"}]',
        "use": '["DUO:0000042"]',
        "datasets": "[]",
        "location": f"samples.csv row {local}",
        "old_id": None,
        "old_digest": None,
        "old_nonce": None,
        "live": None,
    }
    row.update(over)
    return orjson.dumps(list(row.values())).decode()


def _comparable(result: Any) -> Any:
    """An encoding without its random nonce (content bytes parsed, nonce dropped)."""
    if result is None or isinstance(result, list):
        return result
    id, data, digest, nonce, donor, built, _, _ = result
    assert built is None
    content = orjson.loads(data)
    assert content.pop("nonce") == nonce
    assert digest == "sha256:" + sha256(data).hexdigest() and canonical(orjson.loads(data)) == data
    return id, content, donor


def test_the_helper_returns_what_the_inline_encoder_returns() -> None:
    inline = SampleEncoder(Pseudonymiser(SECRET_BYTES), SchemaSet.default())
    fixed = {
        "id": "smp_" + "a" * 26,
        "biobank": "bbmri-eric:ID:DE_X",
        "collection": "bbmri-eric:ID:DE_X:collection:c",
        "sample_type": "Serum",
        "nonce": "ab" * 16,
    }
    kept = canonical(fixed)
    rows: list[str] = [
        _row("1"),
        _row("2", donor_id=None),
        _row("3", sex=None, storage=None),
        _row("4", age_min=40.5),  # not canonical: a problem, nothing published
        _row("5", sample_type="NoSuchType"),  # schema: a problem
        _row(
            "6",
            age_min=None,
            age_max=None,
            period_from=None,
            period_to=None,
            diagnoses="[]",
            use="[]",
            storage=None,
            sex=None,
            old_id=fixed["id"],
            old_digest="sha256:" + sha256(kept).hexdigest(),
            old_nonce=fixed["nonce"],
            live=1,
        ),  # unchanged
        _row(
            "7",
            old_id="smp_" + "b" * 26,
            old_digest="sha256:" + "0" * 64,
            old_nonce="cd" * 16,
            live=1,
        ),  # changed: a fresh nonce
        _row("8", biobank="bbmri-eric:ID:DE_Ä"),  # non-ASCII: the canonical() path
    ]
    expected = inline.encode(rows)
    pool = ImportHelper(SECRET_BYTES)
    try:
        sent = [rows[:3], rows[3:5], rows[5:]]
        batches = list(pool.encode(sent, ahead=1))
    finally:
        pool.close()
    assert [b for b, _ in batches] == [rows[:3], rows[3:5], rows[5:]]
    got = [r for _, results in batches for r in results]
    assert [_comparable(r) for r in got] == [_comparable(r) for r in expected]
    assert got[5] is None and isinstance(got[3], list) and isinstance(got[4], list)
    assert "samples.csv row 4" in str(got[3][0]) and "sample_type" in str(got[4][0])
    assert got[6] is not None and got[6][3] not in ("cd" * 16, expected[6][3])  # type: ignore[index]


def _writer(origin: str = "node.example/biobank-node") -> tuple[sqlite3.Connection, LogWriter]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store.create_schema(conn)
    return conn, LogWriter(conn, origin, Signer(origin, b"s" * 32))


@pytest.mark.parametrize("origin", ["node.example/biobank-node", "charité.example/node"])
def test_leaves_built_in_the_helper_are_the_leaves_the_writer_builds(
    origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = SampleEncoder(Pseudonymiser(SECRET_BYTES), SchemaSet.default())
    schema = SchemaSet.default().schema_id("sample")
    rows = [_row(str(i)) for i in range(6)]
    own_conn, own = _writer(origin)
    conn, writer = _writer(origin)
    plan = LeafPlan(origin, schema, writer.time, 0)
    own.time = writer.time
    built_here = []  # leaves the writer made itself
    real = LogWriter._add

    def spy(self: LogWriter, leaf: bytes, *rest: Any) -> int:
        if self is writer:
            built_here.append(parse_canonical(leaf, what="leaf")["index"])
        return real(self, leaf, *rest)

    monkeypatch.setattr(LogWriter, "_add", spy)
    for result in encoder.encode(rows, plan):
        assert result is not None and not isinstance(result, list)
        id, data, digest, _, _, built, _, _ = result
        own.publish("sample", id, schema, data, digest)
        writer.publish("sample", id, schema, data, digest, built)
    assert built_here == [0]  # the first entry is always checked; 1..5 from the helper
    # a plan whose indexes are off (rows before it were unchanged): the writer's own leaf
    late = encoder.encode([_row("9")], LeafPlan(origin, schema, writer.time, 99))[0]
    assert late is not None and not isinstance(late, list)
    own.publish("sample", late[0], schema, late[1], late[2])
    writer.publish("sample", late[0], schema, late[1], late[2], late[5])
    own.flush()
    writer.flush()
    query = "SELECT idx, leaf, hash, kind, id, op, time FROM leaves ORDER BY idx"
    assert own_conn.execute(query).fetchall() == conn.execute(query).fetchall()
    assert built_here == [0, 6] and writer.size == 7
    for idx, leaf, lh in conn.execute("SELECT idx, leaf, hash FROM leaves"):
        assert parse_canonical(bytes(leaf), what="leaf")["index"] == idx
        assert lh == sha256(b"\x00" + leaf).digest()


def test_a_failing_batch_fails_the_caller() -> None:
    pool = ImportHelper(SECRET_BYTES)
    try:
        with pytest.raises(ValueError):
            list(pool.encode([['["too", "short"]']]))
    finally:
        pool.close()


def test_a_helper_that_dies_fails_the_import_with_a_clear_error() -> None:
    pool = ImportHelper(SECRET_BYTES)
    try:
        pool._process.kill()
        pool._process.join()
        with pytest.raises(RuntimeError, match="helper process ended unexpectedly"):
            list(pool.encode([[_row("1")]] * 3))
    finally:
        pool.close()


def test_closing_ends_the_helper() -> None:
    pool = ImportHelper(SECRET_BYTES)
    assert [len(r) for _, r in pool.encode([[_row("1")], [_row("2")]])] == [1, 1]
    pool.close()
    assert not pool._process.is_alive() and pool._process.exitcode == 0


def _import(home: Home, folder: Path, **kw: Any) -> ImportReport:
    report = ImportReport(files=[])
    for kind in ("biobanks", "collections", "samples"):
        report = run_import(
            home,
            [folder / f"{kind}.csv"],
            mapping=Mapping.load(folder / f"{kind}.mapping.toml"),
            **kw,
        )
    return report


def _state(home: Home) -> dict[str, Any]:
    conn = sqlite3.connect(home.db_path)
    try:
        leaves = []
        for leaf, kind, id, op, content in conn.execute(
            "SELECT l.leaf, l.kind, l.id, l.op, c.content FROM leaves l "
            "LEFT JOIN contents c ON c.idx = l.idx ORDER BY l.idx"
        ):
            entry = orjson.loads(leaf)
            for varying in ("digest", "time"):  # the digest covers the random nonce
                entry.pop(varying, None)
            body = orjson.loads(content) if content else None
            if body:
                body.pop("nonce", None)  # (biobank and collection records have none)
            leaves.append((entry, kind, id, op, body))
        records = conn.execute(
            "SELECT kind, id, biobank, local_id, donor_hash, live, last_index, "
            "digest IS NULL, nonce IS NULL FROM records ORDER BY kind, id"
        ).fetchall()
    finally:
        conn.close()
    return {"leaves": leaves, "records": records}


def _report(report: ImportReport) -> tuple[Any, ...]:
    return (
        report.published,
        report.unchanged,
        report.withdrawn,
        report.size_after,
        [str(p) for p in report.problems],
        report.applied,
    )


def test_imports_through_the_helper_equal_inline_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "export"
    generate("DE", 1500, 11, export)
    inline, _ = make_home(tmp_path, name="inline")
    helped, _ = make_home(tmp_path, name="helped")
    shutil.copyfile(inline.path / SECRET, helped.path / SECRET)
    helped = Home.open(helped.path)
    # many batches, several in the helper at once
    monkeypatch.setattr(diff, "BATCH", 100)
    monkeypatch.setattr(tabular, "BATCH", 70)
    through_helper: list[int] = []
    prebuilt: list[bool] = []
    real_encode = ImportHelper.encode

    def counted(self: ImportHelper, batches: Any, **kw: Any) -> Any:
        for batch, results in real_encode(self, batches, **kw):
            through_helper.append(len(batch))
            if isinstance(results, Bulk):
                prebuilt.extend([True] * len(results.leaves))
            else:
                prebuilt.extend(r[5] is not None for r in results if isinstance(r, tuple))
            yield batch, results

    monkeypatch.setattr(ImportHelper, "encode", counted)
    requests: list[str] = []
    real_send = ImportHelper._send

    def send(self: ImportHelper, request: tuple[Any, ...]) -> None:
        requests.append(request[0])
        real_send(self, request)

    monkeypatch.setattr(ImportHelper, "_send", send)

    def both(folder: Path, **kw: Any) -> None:
        monkeypatch.setattr(encode, "HELPER_MIN_ROWS", 10**9)
        monkeypatch.setattr(encode, "HELPER_MIN_BYTES", 10**12)
        a = _import(inline, folder, **kw)
        monkeypatch.setattr(encode, "HELPER_MIN_ROWS", 1)
        monkeypatch.setattr(encode, "HELPER_MIN_BYTES", 1)
        through_helper.clear()
        prebuilt.clear()
        requests.clear()
        b = _import(helped, folder, **kw)
        assert requests.count("check") > 5 and requests.count("encode") > 3
        assert len(through_helper) > 10 and sum(through_helper) == b.privacy.published
        assert prebuilt and all(prebuilt)  # leaves came from the helper too
        assert _report(a) == _report(b)
        assert _state(inline) == _state(helped)

    both(export)  # a first import: everything new

    # a second export: some samples changed, some gone, some new, one invalid row
    changed = tmp_path / "changed"
    shutil.copytree(export, changed)
    path = changed / "samples.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header, body = rows[0], rows[1:]
    storage = header.index("Lagertemperatur")
    for i, row in enumerate(body):
        if i % 5 == 0:
            row[storage] = "-80 °C" if row[storage] != "-80 °C" else "-20 °C"
    body = [row for i, row in enumerate(body) if i % 11 != 3]
    extra = [list(r) for r in body[:40]]
    for n, row in enumerate(extra):
        row[0] = f"NEW-{n:04d}"
    extra[7][storage] = "lukewarm"  # not a code the mapping knows: a problem
    extra[9] = extra[9][:5]  # a truncated row: a problem of the reader
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows([header, *body, *extra])
    both(changed, snapshot=True, skip_invalid=True)
    assert _state(helped)["leaves"][-1][3] in ("publish", "withdraw")


@pytest.mark.parametrize("first", [True, False])
def test_staged_sql_types_reach_the_encoder_unchanged(tmp_path: Path, first: bool) -> None:
    """Rows travel as SQLite json_array text: a REAL stays a float (refused), text stays
    text, an INTEGER stays an integer; on a first import and on a re-import (the join)."""
    from node.importing import staging
    from node.importing.diff import Differ

    home, _ = make_home(tmp_path)
    conn = store.connect(home.db_path)
    store.create_schema(conn)
    if not first:  # a published sample makes the importer join with the record state
        conn.execute(
            "INSERT INTO records VALUES ('sample', 'smp_x', 'b', 'OLD', NULL, "
            "'sha256:00', 'n', 0, 1)"
        )
    table = staging.create(conn)
    conn.executemany(
        f"INSERT INTO {table} (local_id, biobank, collection, sample_type, row_location, "
        "age_min, age_max, diagnoses, use_conditions, dataset_types) "
        "VALUES (?, 'bbmri-eric:ID:DE_X', 'bbmri-eric:ID:DE_X:collection:c', 'Serum', ?, "
        "?, ?, ?, '[]', '[]')",
        [
            ("S1", "row 2", 40.5, 49, '[{"code":"C50","system":"ICD-10"}]'),
            ("S2", "row 3", 40, 49, '[{"code":"C50","system":"ICD-10"}]'),
            ("S3", "row 4", 40.0, 49, "[]"),
        ],
    )
    conn.execute("BEGIN IMMEDIATE")
    schemas = SchemaSet.default()
    writer = LogWriter(conn, home.config.origin, home.signer)
    differ = Differ(
        conn, writer, {"sample": schemas.schema_id("sample")}, schemas, Pseudonymiser(home.secret)
    )
    differ.samples(table)
    writer.finish()
    conn.execute("COMMIT")
    assert [p.location for p in differ.problems] == ["row 2"]  # 40.5: a float, refused
    published = [
        orjson.loads(c)
        for (c,) in conn.execute(
            "SELECT content FROM contents WHERE content IS NOT NULL ORDER BY idx"
        )
    ]
    conn.close()
    assert [p["age"] for p in published] == [{"min": 40, "max": 49}] * 2
    assert published[0]["diagnoses"] == [{"code": "C50", "system": "ICD-10"}]
    assert "diagnoses" not in published[1]


@pytest.mark.parametrize("in_helper", [0, 1, 10**6])
def test_checked_batches_come_back_in_order_however_the_work_is_shared(
    tmp_path: Path, in_helper: int
) -> None:
    from itertools import islice

    from node.importing.codes import Codes
    from node.importing.sources.base import read_table
    from node.importing.sources.tabular import SampleRows

    generate("DK", 600, 3, tmp_path)
    mapping = Mapping.load(tmp_path / "samples.mapping.toml")
    rows = read_table(tmp_path / "samples.csv", mapping.delimiter or ",", fields=True)
    _, header, _ = next(rows)
    batches = list(iter(lambda: list(islice(rows, 25)), []))
    expected = [SampleRows(mapping, Codes.default(), list(header)).check(b) for b in batches]
    pool = ImportHelper(SECRET_BYTES)
    try:
        got = list(pool.check_samples(mapping, list(header), batches, in_helper=in_helper))
    finally:
        pool.close()
    assert got == expected and len(got) == 24


@pytest.mark.parametrize("ahead", [0, 1, 10**6])
def test_encoded_batches_come_back_in_order_however_the_work_is_shared(ahead: int) -> None:
    """Batches the helper finds too busy are encoded in the importer: same order, same
    leaf indexes (the plan counts every batch not yet handed back), same contents."""
    schema = SchemaSet.default().schema_id("sample")
    plan_time = "2026-01-01T00:00:00Z"
    batches = [[_row(f"{b}-{i}") for i in range(40)] for b in range(30)]
    batches[7][3] = _row("bad", sample_type="NoSuchType")  # a problem: not a Bulk
    inline = SampleEncoder(Pseudonymiser(SECRET_BYTES), SchemaSet.default())
    here = SampleEncoder(Pseudonymiser(SECRET_BYTES), SchemaSet.default())
    encoded_here: list[int] = []
    real = here.encode_batch

    def counted(rows: Any, plan: Any = None) -> Any:
        encoded_here.append(len(rows))
        return real(rows, plan)

    here.encode_batch = counted  # type: ignore[method-assign]
    handed = 0  # rows handed back (what the caller has appended)

    def plan(unconsumed: int) -> LeafPlan:
        return LeafPlan("node.example/n", schema, plan_time, 5 + handed + unconsumed)

    def shape(results: Any) -> Any:
        if isinstance(results, Bulk):
            contents = [orjson.loads(text) for _, text in results.contents]
            for c in contents:
                c.pop("nonce")
            return (
                "bulk",
                results.base,
                [row[0] for row in results.leaves],
                contents,
                [(u[1], u[3], u[4]) for u in results.upserts],
            )
        return [
            _comparable(r)
            if isinstance(r, tuple) and r[5] is None
            else r
            if not isinstance(r, tuple)
            else _comparable((*r[:5], None, *r[6:]))
            for r in results
        ]

    expected = []
    for batch in batches:
        expected.append(shape(inline.encode_batch(batch, plan(0))))
        handed += len(batch)
    handed = 0
    pool = ImportHelper(SECRET_BYTES)
    got = []
    try:
        for batch, results in pool.encode(batches, ahead=ahead, plan=plan, here=here):
            got.append((batch, shape(results)))
            handed += len(batch)
    finally:
        pool.close()
    assert [b for b, _ in got] == batches
    assert [r for _, r in got] == expected
    assert isinstance(expected[7], list) and expected[8][0] == "bulk"
    assert (sum(encoded_here) > 0) == (ahead < 10**6)


def test_a_bulk_batch_is_stored_as_the_writer_would_store_it_or_refused(tmp_path: Path) -> None:
    """A batch whose rows all publish comes as a Bulk for the indexes its plan assumed;
    the writer takes it only at exactly those indexes, else the importer publishes it row
    by row, and either way the log is the one publishing row by row gives."""
    encoder = SampleEncoder(Pseudonymiser(SECRET_BYTES), SchemaSet.default())
    schema = SchemaSet.default().schema_id("sample")
    origin = "node.example/biobank-node"
    own_conn, own = _writer(origin)
    conn, writer = _writer(origin)
    own.time = writer.time
    first = encoder.encode([_row("0")])[0]
    assert isinstance(first, tuple)
    for w in (own, writer):  # the first entry of a run is always checked, built here
        w.publish("sample", first[0], schema, first[1], first[2])
    rows = [_row(str(i)) for i in range(1, 7)]
    bulk = encoder.encode_batch(rows, LeafPlan(origin, schema, writer.time, 1))
    assert isinstance(bulk, Bulk) and len(bulk.leaves) == 6
    assert not writer.append_built("sample", schema, 2, bulk.leaves, bulk.contents)
    assert not writer.append_built("sample", "other", 1, bulk.leaves, bulk.contents)
    assert writer.size == 1  # refused: nothing appended
    assert writer.append_built("sample", schema, 1, bulk.leaves, bulk.contents)
    for (_, id, _, _, _, digest, _, _), (_, text) in zip(bulk.upserts, bulk.contents, strict=True):
        own.publish("sample", str(id), schema, str(text), str(digest))
    own.flush()
    writer.flush()
    query = "SELECT idx, leaf, hash, kind, id, op, time FROM leaves ORDER BY idx"
    assert own_conn.execute(query).fetchall() == conn.execute(query).fetchall()
    query = "SELECT idx, content FROM contents ORDER BY idx"
    assert own_conn.execute(query).fetchall() == conn.execute(query).fetchall()
    assert own.compact.root() == writer.compact.root()
    # a batch with a row that does not publish is not a Bulk
    mixed = encoder.encode_batch(
        [_row("8"), _row("9", age_min=40.5)], LeafPlan(origin, schema, writer.time, 7)
    )
    assert isinstance(mixed, list) and isinstance(mixed[1], list)
