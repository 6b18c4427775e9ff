"""SQLite's final commit with less CPU (issue 19 item 4, seventh session): the sample-group rows
go into the database hundreds a statement (`db.bulk_insert(many_rows=True)`), and the keyed
groups staged with the chunks are handed to each batch by C loops (`index.StagedKeys.take`).
What is stored and what a batch is given must be what the one-row statements and the
per-leaf loop gave."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from catalogue.db import MANY_ROWS, bulk_insert, make_engine, write_tx
from catalogue.harvest.index import ComboIds, StagedKeys, combo_hash, combo_key, pack_keyed
from catalogue.models import combos, harvest_keyed, sample_groups
from catalogue.search.codes import Vocabulary

GROUP_COLUMNS = ("node_id", "group_id", "idx", "combo_id", "s_min", "s_max", "d_min", "d_max")


def _groups(n: int) -> list[tuple[Any, ...]]:
    """`n` sample-group rows with varied values (big counts, an id of many characters)."""
    return [
        (1 + i % 2, f"grp-{i:05d}-" + "x" * (i % 50), i, 1 + i % 7, i, i + 2**40, i % 3, i + 9)
        for i in range(n)
    ]


def _stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(sample_groups).order_by(sample_groups.c.node_id, sample_groups.c.group_id)
            )
        ]


@pytest.mark.parametrize("n", [0, 5, sum(MANY_ROWS) + 3, 2 * MANY_ROWS[0] + 1])
def test_sqlite_many_rows_insert_stores_what_one_row_statements_store(
    tmp_path: Path, n: int
) -> None:
    rows = _groups(n)
    stored = []
    for many in (False, True):
        engine = make_engine(f"sqlite:///{tmp_path / f'many{many}.db'}")
        try:
            with write_tx(engine) as conn:
                bulk_insert(conn, sample_groups, GROUP_COLUMNS, rows, many_rows=many)
            stored.append(_stored(engine))
        finally:
            engine.dispose()
    assert stored[0] == stored[1]
    assert len(stored[1]) == n


def test_sqlite_many_rows_insert_keeps_within_the_bound_value_limit(tmp_path: Path) -> None:
    """A database allowing fewer bound values a statement than the largest size uses the
    sizes that fit (and one row a statement below them); all rows are stored."""
    rows = _groups(700)
    engine = make_engine(f"sqlite:///{tmp_path / 'limit.db'}")
    statements: list[int] = []
    try:
        with write_tx(engine) as conn:
            dbapi: Any = conn.connection.dbapi_connection
            # 64 rows of 8 values: 512; 512 rows would need 4096
            dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 600)
            dbapi.set_trace_callback(lambda sql: statements.append(sql.count("),")))
            bulk_insert(conn, sample_groups, GROUP_COLUMNS, rows, many_rows=True)
            dbapi.set_trace_callback(None)
        assert _stored(engine) == sorted(rows, key=lambda r: (r[0], r[1]))
    finally:
        engine.dispose()
    # (a statement of k rows has k - 1 "),"s between its rows)
    many = [s + 1 for s in statements if s > 0]
    assert many and max(many) == 64  # never 512 rows: beyond the limit
    assert sum(many) == 700 - 700 % 8


def _keyed(idx: int) -> tuple[Any, ...]:
    key = combo_key({"biobank": "b", "collection": "c", "sex": ("male", "female")[idx % 2]})
    return (idx, combo_hash(key), key, (idx, idx), (1, 9), idx, None, f"g{idx}")


def test_staged_keys_give_each_leaf_of_a_batch_its_staged_group_or_none(tmp_path: Path) -> None:
    """`take` gives every leaf index of [lo, hi) its staged group (as staged, once) or None,
    reading the staged chunks as the batches reach them; an empty dict where none is staged."""
    engine = make_engine(f"sqlite:///{tmp_path / 'staged.db'}")
    chunks = {(0, 10): [1, 3, 5], (10, 20): [12, 19], (20, 30): []}
    try:
        with write_tx(engine) as conn:
            for (lo, hi), keyed in chunks.items():
                if keyed:
                    conn.execute(
                        harvest_keyed.insert().values(
                            node_id=1, lo=lo, hi=hi, data=pack_keyed([_keyed(i) for i in keyed])
                        )
                    )
        with engine.connect() as conn:
            staged = StagedKeys(1, 0)
            first = staged.take(conn, 0, 8)
            assert set(first) == set(range(8))  # every leaf of the span, by index
            assert {i for i, kd in first.items() if kd is not None} == {1, 3, 5}
            assert first[3] == _keyed(3) and first[2] is None
            second = staged.take(conn, 8, 15)
            assert {i for i, kd in second.items() if kd is not None} == {12}
            assert staged.take(conn, 15, 20)[19] == _keyed(19)
            assert staged.take(conn, 20, 30) == {}  # none staged there
            assert staged.items == {}  # each let go once its batch had it
            # another node's staged chunks are not its own
            assert StagedKeys(2, 0).take(conn, 0, 20) == {}
            count = conn.execute(text("SELECT count(*) FROM harvest_keyed")).scalar_one()
            assert count == 2
    finally:
        engine.dispose()


def test_new_combos_are_numbered_in_the_order_given_and_written_in_that_order(
    tmp_path: Path,
) -> None:
    """`ComboIds.ensure` numbers the keys the node does not have yet in the order given, each
    after the largest id, and skips those it has; `insert_new` writes them in that order (it
    no longer sorts them: the table's B-tree is appended to) with what they gained."""
    engine = make_engine(f"sqlite:///{tmp_path / 'order.db'}")
    keys = [combo_key({"biobank": "b", "collection": f"c{i}"}) for i in range(6)]
    hashes = [combo_hash(k) for k in keys]
    try:
        with write_tx(engine) as conn:
            ids = ComboIds(conn, 1)
            ids.ensure(conn, {hashes[3]: keys[3], hashes[1]: keys[1]})
            assert ids.ids == {hashes[3]: 1, hashes[1]: 2}
            # a known key among new ones keeps its id; the new ones follow in the order given
            ids.ensure(conn, {hashes[5]: keys[5], hashes[1]: keys[1], hashes[0]: keys[0]})
            assert [ids.ids[hashes[i]] for i in (3, 1, 5, 0)] == [1, 2, 3, 4]
            ids.encode_new(Vocabulary.default())
            statements: list[str] = []
            dbapi: Any = conn.connection.dbapi_connection
            dbapi.set_trace_callback(statements.append)
            new = ids.insert_new(conn, {3: [5, 9, 1, 9]}, set(), 7, node_country="DE")
            dbapi.set_trace_callback(None)
            # (one statement a combo, its values expanded in the trace: the id first)
            written = [
                int(s.split("VALUES (")[1].split(",")[0])
                for s in statements
                if s.startswith("INSERT INTO combos")
            ]
        assert new == {1, 2, 3, 4}
        assert written == [1, 2, 3, 4]
        with engine.connect() as conn:
            rows = conn.execute(select(combos).order_by(combos.c.id)).all()
        assert [bytes(r.khash) for r in rows] == [hashes[3], hashes[1], hashes[5], hashes[0]]
        assert [(r.n_min, r.n_max, r.d_min, r.d_max) for r in rows][2] == (5, 9, 1, 9)
        assert {r.changed for r in rows} == {7}
    finally:
        engine.dispose()
