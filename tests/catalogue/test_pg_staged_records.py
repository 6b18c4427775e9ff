"""PostgreSQL's `leaf_records` (issue 19 item 7: PostgreSQL's harvest at least as fast as
SQLite's).

On PostgreSQL `leaf_records` is a view over `leaves` read through a partial index of them
(`ix_leaves_records`), which the chunks' COPY keeps: no rows of its own to insert (a table
filled from each chunk cost a backend about 3.3 µs a leaf, the index about 1.5). What a
harvest indexes must not change: the erasing of a withdrawn record's earlier leaves and the
step's replaced groups (`index.superseded`) read it. A catalogue of the version before (a
table) is brought to the view when opened, a step it staged accepted as it is. The staged
keyed groups are stored uncompressed (pglz cost a backend 11-12 ms a chunk)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, inspect, select, text, update

import catalogue.harvest.index
from catalogue.context import build_context
from catalogue.db import make_engine
from catalogue.harvest.apply import record_failure
from catalogue.harvest.harvester import guarded_final
from catalogue.harvest.index import (
    ERASE_PG,
    ReadAhead,
    pack_keyed,
    prepare_step,
    unpack_keyed,
)
from catalogue.harvest.stream import Writer
from catalogue.models import harvest_keyed, leaf_records, leaves, nodes, sample_groups
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator, group

CHUNK = 30
BB, COLL = "bbmri-eric:ID:DE_REC", "bbmri-eric:ID:DE_REC:collection:main"


def _node() -> NodeSimulator:
    """Groups over several chunks, new versions, withdrawals (their earlier leaves erased
    through `leaf_records`), and one group back after its withdrawal."""
    sim = NodeSimulator("records.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=BB, collection=COLL)
    ids = []
    for n in range(70):
        g = group(n, biobank=BB, collection=COLL, samples=10 + n % 4, donors=6 + n % 3)
        ids.append(g["id"])
        sim.publish("sample-group", g)
    for n in range(0, 70, 6):
        new = group(n + 1, biobank=BB, collection=COLL, samples=20, donors=9)
        sim.publish("sample-group", new | {"id": ids[n]})
    for n in (2, 8, 31, 45):
        sim.withdraw("sample-group", ids[n])
    sim.publish(
        "sample-group",
        group(99, biobank=BB, collection=COLL, samples=12, donors=7) | {"id": ids[31]},
    )
    return sim


def _record_leaves(sim: NodeSimulator) -> list[tuple[Any, ...]]:
    """(kind, record id, index) of every record leaf the node serves (a rotate-key has none)."""
    entries = [orjson.loads(leaf) for leaf in sim.leaves]
    return sorted((e["kind"], e["id"], i) for i, e in enumerate(entries) if e.get("kind"))


def _records(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return sorted(
            tuple(r)
            for r in conn.execute(
                select(leaf_records.c.kind, leaf_records.c.record_id, leaf_records.c.idx)
            )
        )


def _harvested(sim: NodeSimulator, home: Path, url: str) -> tuple[dict[str, Any], Any]:
    ctx = build_context(make_settings(url, home, page_size=25, harvest_chunk=CHUNK))
    try:
        cat = Catalogue(ctx)
        cat.enrol(sim, sim.url)
        assert cat.harvest()[sim.origin].ok
        return dump(ctx.engine), _records(ctx.engine)
    finally:
        ctx.engine.dispose()


def _sqlite_reference(sim: NodeSimulator, tmp_path: Path) -> dict[str, Any]:
    """What SQLite stores for a plain harvest of the node (`tests/catalogue/dbdump.py`)."""
    (tmp_path / "sqlite").mkdir()
    reference, _records_ = _harvested(
        sim, tmp_path / "sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'catalogue.db'}"
    )
    return reference


@pytest.mark.postgres
def test_postgresql_leaf_records_is_a_view_read_through_an_index_of_the_leaves(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    sim = _node()
    serve(sim)
    expected = _record_leaves(sim)
    (tmp_path / "sqlite").mkdir()
    reference, reference_records = _harvested(
        sim, tmp_path / "sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'catalogue.db'}"
    )
    assert reference_records == sorted(expected)
    with database("postgres", tmp_path, request) as url:
        settings = make_settings(
            url, tmp_path / "home", page_size=25, harvest_chunk=CHUNK, harvest_chunk_growth=1
        )
        ctx = build_context(settings)
        try:
            with ctx.engine.connect() as conn:
                assert "leaf_records" in inspect(conn).get_view_names()
                assert "leaf_records" not in inspect(conn).get_table_names()
                names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
                assert "ix_leaves_records" in names
            cat = Catalogue(ctx)
            cat.enrol(sim, sim.url)
            staged = cat.stage_whole(sim.origin)
            assert staged.error is None and staged.final is not None
            with ctx.engine.connect() as conn:  # the staged leaves, as the table held them
                assert conn.execute(select(nodes.c.tree_size)).scalar_one() == 0
                assert _records_in(conn) == sorted(expected)
                node_id = staged.final.position["node_id"]
                assert "ix_leaves_records" in _erase_plan(conn, node_id)
            done = asyncio.run(guarded_final(staged.final, Writer(ctx.engine, ctx.key), 20.0))
            assert done.error is None
            assert _records(ctx.engine) == reference_records
            assert dump(ctx.engine) == reference
            with ctx.engine.connect() as conn:  # the withdrawn groups' contents erased
                erased = conn.execute(
                    select(func.count()).select_from(leaves).where(leaves.c.content.is_(None))
                ).scalar_one()
            assert erased >= 4
        finally:
            ctx.engine.dispose()


def _erase_plan(conn: Any, node_id: int) -> str:
    """The generic plan of the erasing of a batch's withdrawn records (`index.ERASE_PG`), as
    PostgreSQL chooses it for any node and records: through `ix_leaves_records`, by key."""
    sql = ERASE_PG
    for name, n in (("n", 1), ("k", 2), ("r", 3), ("w", 4)):
        sql = sql.replace(f":{name}", f"${n}")
    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE erase(int, text[], text[], bigint[]) AS {sql}")
    plan = (
        conn.exec_driver_sql(
            f"EXPLAIN EXECUTE erase({int(node_id)}, '{{sample-group}}', '{{g}}', '{{1000}}')"
        )
        .scalars()
        .all()
    )
    conn.exec_driver_sql("DEALLOCATE erase")
    conn.exec_driver_sql("RESET plan_cache_mode")
    assert "Seq Scan" not in "\n".join(plan)
    return "\n".join(plan)


@pytest.mark.postgres
def test_postgresql_catalogue_of_the_version_before_gets_the_view_and_its_step_accepted(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    """A catalogue made by the version before: `leaf_records` a table, filled with each
    chunk (its keyed rows marked `RECORDED_FORMAT`), a step staged. Opened by this version:
    the index made, the table dropped, the view reads the same rows, and the step staged
    before is accepted and indexed as SQLite indexes it."""
    sim = _node()
    serve(sim)
    expected = _record_leaves(sim)
    (tmp_path / "sqlite").mkdir()
    reference, reference_records = _harvested(
        sim, tmp_path / "sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'catalogue.db'}"
    )
    with database("postgres", tmp_path, request) as url:
        ctx, final = _staged_step(sim, tmp_path / "home", url)
        try:
            with ctx.engine.begin() as conn:  # as the version before left it
                for lo, data in conn.execute(select(harvest_keyed.c.lo, harvest_keyed.c.data)):
                    keyed = unpack_keyed(data)
                    assert keyed is not None
                    conn.execute(
                        update(harvest_keyed)
                        .where(harvest_keyed.c.lo == lo)
                        .values(data=pack_keyed(keyed, recorded=True))
                    )
                conn.execute(text("DROP VIEW leaf_records"))
                conn.execute(text("DROP INDEX ix_leaves_records"))
                conn.execute(text(_TABLE_BEFORE))
                conn.execute(
                    text(
                        "INSERT INTO leaf_records SELECT node_id, kind, record_id, idx"
                        " FROM leaves WHERE kind <> ''"
                    )
                )
            ctx.engine.dispose()
            make_engine(url).dispose()  # opened by this version
            with ctx.engine.connect() as conn:
                assert "leaf_records" in inspect(conn).get_view_names()
                assert "leaf_records" not in inspect(conn).get_table_names()
                names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
                assert "ix_leaves_records" in names
                assert _records_in(conn) == sorted(expected)
            done = asyncio.run(guarded_final(final, Writer(ctx.engine, ctx.key), 20.0))
            assert done.error is None
            assert _records(ctx.engine) == reference_records
            assert dump(ctx.engine) == reference
        finally:
            ctx.engine.dispose()


_TABLE_BEFORE = """CREATE TABLE leaf_records (node_id INTEGER NOT NULL, kind VARCHAR(16) NOT NULL,
 record_id VARCHAR(255) NOT NULL, idx BIGINT NOT NULL,
 PRIMARY KEY (node_id, kind, record_id, idx))"""


def _records_in(conn: Any) -> list[tuple[Any, ...]]:
    rows = select(leaf_records.c.kind, leaf_records.c.record_id, leaf_records.c.idx)
    return sorted(tuple(r) for r in conn.execute(rows))


@pytest.mark.postgres
def test_postgresql_discarded_step_takes_its_staged_leaf_records_with_it(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    sim = _node()
    serve(sim)
    with database("postgres", tmp_path, request) as url:
        ctx = build_context(make_settings(url, tmp_path / "home", harvest_chunk=CHUNK))
        try:
            cat = Catalogue(ctx)
            cat.enrol(sim, sim.url)
            staged = cat.stage_whole(sim.origin)
            assert staged.final is not None and _records(ctx.engine)
            node_id = staged.final.position["node_id"]
            record_failure(ctx.engine, node_id, "refused", None, discard=True)
            assert _records(ctx.engine) == []
            assert cat.harvest()[sim.origin].ok  # staged again from the start, and accepted
            assert _records(ctx.engine) == _record_leaves(sim)
        finally:
            ctx.engine.dispose()


@pytest.mark.postgres
def test_postgresql_stores_staged_keyed_groups_uncompressed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = (
        "SELECT attstorage FROM pg_attribute"
        " WHERE attrelid = 'harvest_keyed'::regclass AND attname = 'data'"
    )
    with database("postgres", tmp_path, request) as url:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                assert conn.execute(text(storage)).scalar_one() == "e"  # EXTERNAL
                # as made by an earlier version: compressed (EXTENDED, the default)
                conn.execute(
                    text("ALTER TABLE harvest_keyed ALTER COLUMN data SET STORAGE EXTENDED")
                )
            engine.dispose()
            engine = make_engine(url)  # opened again: brought to the current storage
            with engine.connect() as conn:
                assert conn.execute(text(storage)).scalar_one() == "e"
        finally:
            engine.dispose()


def _staged_step(sim: NodeSimulator, home: Path, url: str) -> tuple[Any, Any]:
    ctx = build_context(make_settings(url, home, page_size=25, harvest_chunk=CHUNK))
    cat = Catalogue(ctx)
    cat.enrol(sim, sim.url)
    staged = cat.stage_whole(sim.origin)
    assert staged.final is not None
    return ctx, staged.final


@pytest.mark.postgres
def test_postgresql_read_ahead_thread_keys_the_batches_prepare_step_keys(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest, monkeypatch: Any
) -> None:
    """The final commit's batches made ready by `ReadAhead` (a thread, its own connection,
    at most two waiting) are those `prepare_step` makes, in order; and a step indexed so, in
    batches of 7 leaves, is what SQLite indexes (`tests/catalogue/dbdump.py`)."""
    monkeypatch.setattr(catalogue.harvest.index, "BATCH", 7)
    sim = _node()
    serve(sim)
    reference = _sqlite_reference(sim, tmp_path)
    with database("postgres", tmp_path, request) as url:
        ctx, final = _staged_step(sim, tmp_path / "home", url)
        try:
            node_id, start, end = final.position["node_id"], 0, int(final.state["size"])
            with ctx.engine.connect() as conn:
                whole = prepare_step(conn, node_id, start, end, budget=end).batches
            with ctx.engine.connect() as reader:
                prepared = prepare_step(reader, node_id, start, end, budget=0)
                assert prepared.batches == [] and prepared.upto == start
                ahead = ReadAhead(reader, prepared)
                try:
                    assert ahead.queue.maxsize == 2
                    assert list(ahead.batches()) == whole and len(whole) > 10
                finally:
                    ahead.close()
                assert not ahead.thread.is_alive() and prepared.ahead is None
            done = asyncio.run(guarded_final(final, Writer(ctx.engine, ctx.key), 20.0))
            assert done.error is None
            assert dump(ctx.engine) == reference
        finally:
            ctx.engine.dispose()


@pytest.mark.postgres
def test_postgresql_read_ahead_failure_fails_the_final_commit_and_indexes_nothing(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest, monkeypatch: Any
) -> None:
    """A read that fails in the `ReadAhead` thread (its backend ended) is raised in the
    final commit's transaction, which rolls back: the step stays staged, nothing indexed,
    and the next attempt accepts it."""
    monkeypatch.setattr(catalogue.harvest.index, "BATCH", 7)
    sim = _node()
    serve(sim)
    with database("postgres", tmp_path, request) as url:
        ctx, final = _staged_step(sim, tmp_path / "home", url)
        try:
            started = ReadAhead.__init__

            def end_its_backend(self: ReadAhead, conn: Any, prepared: Any, depth: int = 2) -> None:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                with ctx.engine.connect() as other:
                    other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                started(self, conn, prepared, depth)

            with monkeypatch.context() as m:
                m.setattr(ReadAhead, "__init__", end_its_backend)
                failed = asyncio.run(guarded_final(final, Writer(ctx.engine, ctx.key), 20.0))
            assert failed.error is not None
            assert "harvest-read-ahead" not in {t.name for t in threading.enumerate()}
            with ctx.engine.connect() as conn:
                assert conn.execute(select(nodes.c.tree_size)).scalar_one() == 0
                assert conn.execute(select(func.count()).select_from(sample_groups)).scalar() == 0
            done = asyncio.run(guarded_final(final, Writer(ctx.engine, ctx.key), 20.0))
            assert done.error is None
            with ctx.engine.connect() as conn:
                assert conn.execute(select(nodes.c.tree_size)).scalar_one() == len(sim.leaves)
        finally:
            ctx.engine.dispose()


@pytest.mark.postgres
def test_postgresql_keyed_staging_is_unlogged_and_a_crash_emptying_it_still_indexes_the_step(
    tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    """`harvest_keyed` is written to no WAL: after a crash PostgreSQL empties it (as TRUNCATE
    does here), the staged leaves stay, and the final commit keys the step's groups from
    them: the same index as SQLite's. A catalogue whose table is logged is brought to
    UNLOGGED when opened."""
    persistence = "SELECT relpersistence FROM pg_class WHERE oid = 'harvest_keyed'::regclass"
    sim = _node()
    serve(sim)
    reference = _sqlite_reference(sim, tmp_path)
    with database("postgres", tmp_path, request) as url:
        ctx, final = _staged_step(sim, tmp_path / "home", url)
        try:
            with ctx.engine.begin() as conn:
                assert conn.execute(text(persistence)).scalar_one() == "u"
                assert conn.execute(select(func.count()).select_from(harvest_keyed)).scalar()
                conn.execute(text("TRUNCATE harvest_keyed"))  # what crash recovery leaves
                conn.execute(text("ALTER TABLE harvest_keyed SET LOGGED"))  # an earlier version
            make_engine(url).dispose()
            with ctx.engine.connect() as conn:
                assert conn.execute(text(persistence)).scalar_one() == "u"
            done = asyncio.run(guarded_final(final, Writer(ctx.engine, ctx.key), 20.0))
            assert done.error is None
            assert dump(ctx.engine) == reference
        finally:
            ctx.engine.dispose()
