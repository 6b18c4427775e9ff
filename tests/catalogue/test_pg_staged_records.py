"""PostgreSQL's final commit made shorter (issue 19 item 7: PostgreSQL's harvest at least as
fast as SQLite's).

On PostgreSQL a chunk stores its leaves' `leaf_records` rows with them, copied from the rows
in hand while the lane verifies the next chunk, and marks its `harvest_keyed` row so; the final
commit then inserts only the rows of chunks staged without them (by an earlier version, before
a resumed step). What a harvest indexes must not change: the erasing of a withdrawn record's
earlier leaves reads these rows. The staged keyed groups are stored uncompressed (pglz cost a
backend 11-12 ms a chunk)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select, text, update

import catalogue.harvest.index
from catalogue.context import build_context
from catalogue.db import make_engine
from catalogue.harvest.apply import record_failure
from catalogue.harvest.harvester import guarded_final
from catalogue.harvest.index import (
    RECORDED_FORMAT,
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


@pytest.mark.postgres
def test_postgresql_chunks_stage_their_leaf_records_and_the_final_commit_adds_only_the_missing(
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
    for resumed in (False, True):
        home = tmp_path / f"pg-{resumed}"
        home.mkdir()
        with database("postgres", home, request) as url:
            settings = make_settings(
                url, home / "home", page_size=25, harvest_chunk=CHUNK, harvest_chunk_growth=1
            )
            ctx = build_context(settings)
            try:
                cat = Catalogue(ctx)
                cat.enrol(sim, sim.url)
                staged = cat.stage_whole(sim.origin)
                assert staged.error is None and staged.final is not None
                with ctx.engine.begin() as conn:
                    assert conn.execute(select(nodes.c.tree_size)).scalar_one() == 0
                    marked = conn.execute(select(harvest_keyed.c.lo, harvest_keyed.c.data)).all()
                    # every chunk marked, its rows stored with it, before the final commit
                    assert len(marked) >= len(sim.leaves) // CHUNK
                    assert all(bytes(d).startswith(RECORDED_FORMAT) for _lo, d in marked)
                    assert _records_in(conn) == sorted(expected)
                    if resumed:  # every other chunk as an earlier version staged it
                        for lo, data in marked[::2]:
                            _as_earlier_version(conn, int(lo), bytes(data))
                        assert len(_records_in(conn)) < len(expected)
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


def _records_in(conn: Any) -> list[tuple[Any, ...]]:
    rows = select(leaf_records.c.kind, leaf_records.c.record_id, leaf_records.c.idx)
    return sorted(tuple(r) for r in conn.execute(rows))


def _as_earlier_version(conn: Any, lo: int, data: bytes) -> None:
    """The chunk staged at `lo` as the version before this one left it: no `leaf_records`
    rows, its keyed groups in the previous format."""
    hi = conn.execute(select(harvest_keyed.c.hi).where(harvest_keyed.c.lo == lo)).scalar_one()
    conn.execute(leaf_records.delete().where(leaf_records.c.idx >= lo, leaf_records.c.idx < hi))
    keyed = unpack_keyed(data)
    assert keyed is not None
    conn.execute(
        update(harvest_keyed).where(harvest_keyed.c.lo == lo).values(data=pack_keyed(keyed))
    )


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
    (tmp_path / "sqlite").mkdir()
    reference, _records_ = _harvested(
        sim, tmp_path / "sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'catalogue.db'}"
    )
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
