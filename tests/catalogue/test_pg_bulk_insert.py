"""`catalogue.db.bulk_insert`: the binary COPY PostgreSQL's harvest stores with keeps every
value as the text COPY and SQLite's executemany do (issue 19 item 7, PostgreSQL harvest)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Date, Integer, MetaData, Table, select, text

from catalogue.context import build_context
from catalogue.db import bulk_insert, copy_types, generic_plans, make_engine, write_tx
from catalogue.harvest.apply import LEAF_COLUMNS
from catalogue.harvest.index import COMBO_COLUMNS, combo_hash, combo_key
from catalogue.models import combos, leaves, sample_groups
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.simulator import NodeSimulator, bounded_group, exact_group, group_id

# values at the edges of each column type: NUL and high bytes, non-ASCII text, a JSON text
# with a backslash and a tab (text COPY escapes them), NULLs, an index past 2**32
LEAF_ROWS = [
    (1, 0, b"\x00\xff\\\n\tleaf", b"\x00" * 32, "sample-group", "g-1", '{"a":"\\\\\\t\u4e2d"}'),
    (1, 2**40, b"", bytes(range(256)), "", "", None),
    (7, 5, b"x" * 5000, b"\xfe" * 32, "biobank", "bbmri-eric:ID:DE_\u00fc", "\u6837\u672c" * 300),
]


def test_copy_types_name_each_columns_exact_postgresql_type() -> None:
    assert copy_types(leaves, LEAF_COLUMNS) == [
        "int4",
        "int8",
        "bytea",
        "bytea",
        "text",
        "text",
        "text",
    ]
    assert copy_types(combos, ("id", "diagnoses", "use_conditions", "dataset_types")) == [
        "int4",
        "text",
        "text",
        "text",
    ]
    assert copy_types(sample_groups, ("s_min",)) == ["int8"]
    odd = Table("odd", MetaData(), Column("day", Date))
    assert copy_types(odd, ("day",)) is None  # not mapped: text COPY


def test_bulk_insert_binary_copy_round_trips_every_leaf_value(db_url: str) -> None:
    assert _stored_after_insert(db_url, LEAF_ROWS) == LEAF_ROWS


def test_bulk_insert_binary_copy_stores_bytearray_and_memoryview_blobs_as_bytes(
    db_url: str,
) -> None:
    """The harvest's rows carry their BLOBs as bytearray (`harvest.apply.Chunk`); psycopg's C
    bytea dumper takes every buffer type as the DB-API one did (`db.bulk_insert`)."""
    rows = [
        (r[0], r[1], bytearray(r[2]), memoryview(r[3]), *r[4:])
        if n % 2
        else (r[0], r[1], memoryview(r[2]), bytearray(r[3]), *r[4:])
        for n, r in enumerate(LEAF_ROWS)
    ]
    assert _stored_after_insert(db_url, rows) == LEAF_ROWS


def test_bulk_insert_binary_copy_keeps_combo_nulls_and_ints(db_url: str) -> None:
    key = combo_key({"biobank": "b", "collection": "c", "diagnoses": [], "sex": "female"})
    rows: list[tuple[Any, ...]] = [
        (3, 1, combo_hash(key), *key[:9], None, None, None, None, 0, 0, 0, 0, None),
        (2, 1, b"\x00\xff" * 16, "b", "c", "Serum", "-80", "male", 40, 59, 2010, 2014)
        + ('[["ICD-10","C50.9","C50","II"],["ORPHA","ORPHA:\u00e9",null,null]]', '["DUO:1"]')
        + ('["Genomic","Proteomic"]', "DE", 1, 9, 1, 9, 7),
    ]
    columns = COMBO_COLUMNS
    engine = make_engine(db_url)
    try:
        with write_tx(engine) as conn:
            bulk_insert(conn, combos, columns, rows)
        with engine.connect() as conn:
            stored = [
                tuple(r)
                for r in conn.execute(select(*(combos.c[c] for c in columns)).order_by("id"))
            ]
        assert stored == sorted(rows)
    finally:
        engine.dispose()


def test_bulk_insert_falls_back_to_text_copy_for_an_unmapped_type(db_url: str) -> None:
    import datetime

    odd = Table(
        "odd_bulk", MetaData(), Column("id", Integer, primary_key=True), Column("day", Date)
    )
    engine = make_engine(db_url)
    try:
        odd.create(engine)
        rows = [(1, datetime.date(2026, 12, 5)), (2, None)]
        with write_tx(engine) as conn:
            bulk_insert(conn, odd, ("id", "day"), rows)
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(select(odd).order_by(odd.c.id))] == rows
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_bulk_insert_refuses_an_int4_value_it_cannot_hold_instead_of_wrapping_it(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """psycopg's binary int4 dumper would store 2**31 as -2**31: the rows go in text form
    then, and the server refuses the value as it always did (PostgreSQL only: SQLite's
    integers are 64-bit)."""
    import psycopg

    with database("postgres", tmp_path, request) as url:
        _refuses_out_of_range_int4(url, psycopg.errors.NumericValueOutOfRange)


def _refuses_out_of_range_int4(db_url: str, refused: type[Exception]) -> None:
    engine = make_engine(db_url)
    try:
        for big in (2**31, -(2**31) - 1):
            with pytest.raises(refused), write_tx(engine) as conn:
                row = (1, "g-1", 0, 1, 5, 5, 5, 5)
                bulk_insert(conn, sample_groups, GROUP_COLUMNS, [row, (1, "g-2", 0, big, *row[4:])])
        with engine.connect() as conn:
            assert conn.execute(select(sample_groups)).all() == []
    finally:
        engine.dispose()


GROUP_COLUMNS = ("node_id", "group_id", "idx", "combo_id", "s_min", "s_max", "d_min", "d_max")


def _indexed(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """What a harvest stored, without the ids the database chose (combos by their key)."""
    queries = {
        "leaves": "SELECT node_id, idx, leaf, hash, kind, record_id, content FROM leaves",
        "combos": "SELECT khash, biobank, collection, country, sample_type, storage_temperature,"
        " sex, age_min, age_max, year_from, year_to, diagnoses, use_conditions, dataset_types,"
        " n_min, n_max, d_min, d_max FROM combos",
        "groups": "SELECT g.group_id, g.idx, c.khash, g.s_min, g.s_max, g.d_min, g.d_max"
        " FROM sample_groups g JOIN combos c ON c.id = g.combo_id",
        "leaf_records": "SELECT node_id, kind, record_id, idx FROM leaf_records",
        "rejections": "SELECT node_id, idx, kind, record_id, problems FROM rejections",
    }
    with engine.connect() as conn:
        return {
            name: sorted(
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in conn.execute(text(sql))
            )
            for name, sql in queries.items()
        }


@pytest.mark.postgres
def test_postgresql_harvest_stores_and_indexes_exactly_what_sqlite_does(
    pg_url: str, tmp_path: Path, request: pytest.FixtureRequest, serve: Any
) -> None:
    """The same node harvested into SQLite (executemany) and PostgreSQL (binary COPY, new
    combos in key order), in two steps (a withdrawal, a republished group, new combos)."""
    bb, col = "bbmri-eric:ID:DE_\u00fcml", "bbmri-eric:ID:DE_\u00fcml:collection:\u00e9t\u00e9"
    sim = NodeSimulator("pgsame.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=bb, collection=col)
    for n in range(40):
        fields: dict[str, Any] = {
            "sex": ("female", "male", "other")[n % 3],
            "age": {"min": 10 * (n % 7), "max": 10 * (n % 7) + 9},
            "diagnoses": [{"system": "ICD-10", "code": f"C{50 + n % 9}.{n % 10}"}]
            + ([{"system": "ORPHA", "code": "ORPHA:586"}] if n % 4 == 0 else []),
            "use_conditions": ["DUO:0000042", "DUO:0000006"][: 1 + n % 2],
            "dataset_types": ["Genomic", "Proteomic"][: n % 3],
        }
        if n % 5:
            sim.publish(
                "sample-group",
                exact_group(
                    n, biobank=bb, collection=col, samples=9 + n, donors=5 + n % 4, **fields
                ),
            )
        else:
            sim.publish(
                "sample-group",
                bounded_group(n, biobank=bb, collection=col, samples=2, k=5, **fields),
            )
    serve(sim)
    with ExitStack() as stack:
        cats = []
        for kind in ("sqlite", "postgres"):
            where = tmp_path / kind
            where.mkdir()
            url = stack.enter_context(database(kind, where, request))
            ctx = build_context(make_settings(url, where / "home"))
            stack.callback(ctx.engine.dispose)
            cats.append(Catalogue(ctx))
            cats[-1].enrol(sim, sim.url)
            assert cats[-1].harvest()[sim.origin].ok
        first = [_indexed(c.engine) for c in cats]
        assert not first[0]["rejections"], first[0]["rejections"][:2]
        assert first[0]["combos"]
        for column in (11, 12, 13):  # diagnoses, use conditions, dataset types: some stated
            assert any(row[column] for row in first[0]["combos"]), column
        assert first[0] == first[1]
        sim.withdraw("sample-group", group_id(3))
        sim.publish(
            "sample-group",
            exact_group(4, biobank=bb, collection=col, samples=50, donors=20, sex="male"),
        )
        sim.publish(
            "sample-group",
            exact_group(99, biobank=bb, collection=col, samples=7, donors=6, sex="unknown"),
        )
        for cat in cats:
            assert cat.harvest()[sim.origin].ok
        second = [_indexed(c.engine) for c in cats]
        assert second[0] != first[0]
        assert second[0] == second[1]


def test_bulk_insert_stores_a_value_binary_copy_would_refuse_as_text_copy_did(
    db_url: str,
) -> None:
    """An int for a text column goes in text form (stored as its digits, as before), not
    into the binary dumper that refuses it; the rest of such a batch is unchanged."""
    engine = make_engine(db_url)
    try:
        rows = [(2, 0, b"l", b"h" * 32, "biobank", 5, None), *LEAF_ROWS[:1]]
        with write_tx(engine) as conn:
            bulk_insert(conn, leaves, LEAF_COLUMNS, rows)
        with engine.connect() as conn:
            stored = conn.execute(
                select(leaves.c.node_id, leaves.c.record_id).order_by(leaves.c.node_id)
            ).all()
        assert [tuple(r) for r in stored] == [(1, "g-1"), (2, "5")]
    finally:
        engine.dispose()


def _combo_rows(n: int) -> list[tuple[Any, ...]]:
    rows = []
    for cid in range(1, n + 1):
        key = combo_key({"biobank": "b", "collection": "c", "age": {"min": cid, "max": cid}})
        rows.append((cid, 1, combo_hash(key), *key[:9], None, None, None, "DE", 5, 9, 2, 9, 1))
    return rows


def _counts(engine: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT id, n_min, n_max, d_min, d_max, changed FROM combos ORDER BY id")
            )
        ]


@pytest.mark.postgres
def test_postgresql_counts_by_one_statement_equal_a_statement_per_combo(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`index.write_counts` on PostgreSQL (a temporary table and one UPDATE each, from
    `BULK_UPDATE` combos) leaves every combo as a statement per combo does: combos
    recounted with and without groups left, combos that gained (a larger and a smaller donor
    lower bound, a count past 2**32), combos untouched."""
    from catalogue.harvest import index

    groups = [  # combo 1: two groups; combo 2: one; combo 3: none left; combos 4-6: untouched
        (1, "g-1", 0, 1, 1, 4, 1, 4),
        (1, "g-2", 1, 1, 7, 7, 6, 6),
        (1, "g-3", 2, 2, 30, 30, 20, 20),
    ]
    recount = [1, 2, 3]
    added = [(5, 5, 8, 8, 5, 77, 4), (3, 6, 1, 1, 2, 77, 5), (2**40, 2**40, 0, 0, 1, 77, 6)]
    results = []
    for bulk in (10**9, 1):
        with database("postgres", tmp_path / str(bulk), request) as url:
            engine = make_engine(url)
            try:
                with write_tx(engine) as conn:
                    bulk_insert(conn, combos, COMBO_COLUMNS, _combo_rows(8))
                    bulk_insert(conn, sample_groups, GROUP_COLUMNS, groups)
                with write_tx(engine) as conn, monkeypatch.context() as m:
                    m.setattr(index, "BULK_UPDATE", bulk)
                    index.write_counts(conn, recount, added, 77)
                    if bulk == 1:  # its temporary tables are gone: again in the transaction
                        index.write_counts(conn, recount, [], 77)
                results.append(_counts(engine))
            finally:
                engine.dispose()
    assert results[0] == results[1]
    got = {row[0]: row[1:] for row in results[1]}
    assert got[1] == (8, 11, 6, 10, 77)  # recounted from its two groups
    assert got[2] == (30, 30, 20, 20, 77)
    assert got[3] == (0, 0, 0, 0, 77)  # no group left
    assert got[4] == (10, 14, 8, 14, 77)  # gained: a larger donor lower bound
    assert got[5] == (8, 15, 2, 11, 77)  # gained: its own lower bound stays
    assert got[6][:2] == (5 + 2**40, 9 + 2**40)
    assert got[7] == (5, 9, 2, 9, 1)  # untouched


def _tuples_written(engine: Any, expect_inserted: int) -> tuple[int, int]:
    """(inserted, updated) rows of `combos` by PostgreSQL's statistics, once they show the
    inserts (a backend reports its counts within about a second of its commit)."""
    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            ins, upd = conn.execute(
                text(
                    "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'combos'"
                )
            ).one()
        if ins >= expect_inserted or time.monotonic() > deadline:
            return int(ins), int(upd)
        time.sleep(0.2)


@pytest.mark.postgres
def test_postgresql_combos_written_ahead_of_a_step_end_are_written_once_with_their_counts(
    tmp_path: Path, request: pytest.FixtureRequest, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond `NEW_COMBO_BUDGET` new combos a step writes its new combos ahead of its end;
    on PostgreSQL they are parked in a temporary table and go to `combos` once, with their
    counts and country: no combo row is updated, and the index is what a step within the
    budget stores."""
    from catalogue.harvest import index

    bb, col = "bbmri-eric:ID:DE_P", "bbmri-eric:ID:DE_P:collection:main"
    sim = NodeSimulator("park.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=bb, collection=col)
    for n in range(90):  # 30 combos (by age), three groups each
        age = {"min": n % 30, "max": n % 30 + 1}
        sim.publish(
            "sample-group",
            exact_group(n, biobank=bb, collection=col, samples=6 + n, donors=5, age=age),
        )
    serve(sim)
    stored = []
    for budget in (10**6, 4):
        where = tmp_path / str(budget)
        where.mkdir()
        with ExitStack() as stack:
            url = stack.enter_context(database("postgres", where, request))
            ctx = build_context(make_settings(url, where / "home"))
            stack.callback(ctx.engine.dispose)
            cat = Catalogue(ctx)
            cat.enrol(sim, sim.url)
            with monkeypatch.context() as m:
                m.setattr(index, "BATCH", 10)
                m.setattr(index, "NEW_COMBO_BUDGET", budget)
                assert cat.harvest()[sim.origin].ok
            stored.append(_indexed(ctx.engine))
            assert _tuples_written(ctx.engine, 30) == (30, 0)
    assert len(stored[1]["combos"]) == 30
    assert {row[3] for row in stored[1]["combos"]} == {"DE"}  # the biobank record's country
    assert all(row[14] > 0 for row in stored[1]["combos"])  # counted
    assert stored[1] == stored[0]


@pytest.mark.postgres
def test_generic_plans_holds_only_inside_its_block_of_the_transaction(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`db.generic_plans` (the erasing of withdrawn records' leaves, the removal of replaced
    groups) plans its statements for any parameters, and only its own."""
    with database("postgres", tmp_path, request) as url:
        engine = make_engine(url)
        try:
            with write_tx(engine) as conn:
                mode = "SELECT current_setting('plan_cache_mode')"
                assert conn.execute(text(mode)).scalar() == "auto"
                with generic_plans(conn):
                    assert conn.execute(text(mode)).scalar() == "force_generic_plan"
                assert conn.execute(text(mode)).scalar() == "auto"
        finally:
            engine.dispose()


def _stored_after_insert(db_url: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The leaves rows as read back after `bulk_insert` of ``rows`` into an empty table."""
    engine = make_engine(db_url)
    try:
        with write_tx(engine) as conn:
            bulk_insert(conn, leaves, LEAF_COLUMNS, rows)
        with engine.connect() as conn:
            return [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in conn.execute(
                    select(*(leaves.c[c] for c in LEAF_COLUMNS)).order_by(
                        leaves.c.node_id, leaves.c.idx
                    )
                )
            ]
    finally:
        engine.dispose()
