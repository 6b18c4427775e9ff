"""A lane keeps verifying while a chunk store waits (for the write lock another lane's final
commit holds): the next chunk keeps filling up to CATALOGUE_HARVEST_CHUNK_GROWTH times
CATALOGUE_HARVEST_CHUNK entries, and the step stored that way is the step a plain harvest
stores."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import catalogue.harvest.stream
from catalogue.context import build_context
from catalogue.harvest.stream import Writer
from catalogue.models import subtrees
from protocol.merkle import STRIDE, leaf_hash, list_perfect
from tests.catalogue.conftest import Catalogue, WriteLockHeld, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator

CHUNK = 100
SIZE = 1000


def _catalogue(db_url: str, home: Path, growth: int) -> Catalogue:
    return Catalogue(
        build_context(
            make_settings(
                db_url, home, page_size=50, harvest_chunk=CHUNK, harvest_chunk_growth=growth
            )
        )
    )


@pytest.fixture
def sim(serve: Any) -> NodeSimulator:
    node = NodeSimulator()
    node.populate(SIZE - 2)
    serve(node)
    return node


def _harvest_with_lock_held(
    cat: Catalogue, sim: NodeSimulator, monkeypatch: pytest.MonkeyPatch, release_at: int
) -> list[int]:
    """Harvest while the write lock is held until the node has served the page at
    `release_at` (the verifier went on past the blocked store; pages are asked at most two
    ahead of the one being verified); the staged size after each chunk store."""
    cat.enrol(sim, sim.url)
    staged: list[int] = []
    commit_chunk = catalogue.harvest.stream.commit_chunk  # SQLite and PostgreSQL stores

    def spy(*args: Any, **kwargs: Any) -> Any:
        pos = commit_chunk(*args, **kwargs)
        staged.append(kwargs["size"])
        return pos

    monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", spy)
    with WriteLockHeld(cat, sim.origin) as held:

        def release_late(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if sim.served[-1] >= release_at:
                held.release.set()
            return out

        sim.entries_hook = release_late
        out = cat.harvest()[sim.origin]
    assert out.ok and out.added == SIZE, out.error
    return staged


def test_chunk_keeps_filling_while_the_previous_store_waits_for_the_write_lock(
    db_url: str,
    tmp_path: Path,
    sim: NodeSimulator,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    cat = _catalogue(db_url, tmp_path / "home", growth=4)
    try:
        staged = _harvest_with_lock_held(cat, sim, monkeypatch, release_at=4 * CHUNK)
        grown = dump(cat.engine)
    finally:
        cat.engine.dispose()
    # while the lock was held the lane went on verifying into a chunk that grew past CHUNK
    # entries (on SQLite it waits to be stored until the lock is free; on PostgreSQL the
    # chunk before it was waiting), but never past 4 * CHUNK (memory stays bounded)
    sizes = [b - a for a, b in zip([0, *staged], staged, strict=False)]
    assert max(sizes) > CHUNK
    assert all(0 < n <= 4 * CHUNK for n in sizes)
    assert staged[-1] < SIZE  # the last chunk is stored by the final commit
    # what was accepted is exactly what a harvest in plain chunks accepts
    kind = "postgres" if "postgresql" in db_url else "sqlite"
    (tmp_path / "clean").mkdir()
    with database(kind, tmp_path / "clean", request) as clean_url:
        clean = _catalogue(clean_url, tmp_path / "clean-home", growth=1)
        try:
            clean.enrol(sim, sim.url)
            assert clean.harvest()[sim.origin].ok
            assert dump(clean.engine) == grown
        finally:
            clean.engine.dispose()


def test_chunk_growth_1_stores_chunks_of_exactly_harvest_chunk_even_when_a_store_waits(
    db_url: str, tmp_path: Path, sim: NodeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = _catalogue(db_url, tmp_path / "home", growth=1)
    try:
        # the verifier stops at the first (SQLite) or second full chunk; two pages past it
        # are asked ahead
        staged = _harvest_with_lock_held(cat, sim, monkeypatch, release_at=CHUNK + 50)
    finally:
        cat.engine.dispose()
    assert staged == list(range(CHUNK, SIZE, CHUNK))


def test_writer_lock_free_sees_another_writer_on_sqlite_only(
    db_url: str, tmp_path: Path, sim: NodeSimulator
) -> None:
    cat = _catalogue(db_url, tmp_path / "home", growth=4)
    try:
        cat.enrol(sim, sim.url)
        writer = Writer(cat.engine, cat.ctx.key)
        assert writer.lock_free()
        with WriteLockHeld(cat, sim.origin):
            # SQLite has one writer: a lane must not start a store it would wait on; on
            # PostgreSQL only the node's row is locked, and stores never wait on each other
            assert writer.lock_free() is ("postgresql" in db_url)
        assert writer.lock_free()
    finally:
        cat.engine.dispose()


def test_sqlite_chunk_store_runs_on_the_verifying_thread(
    db_url: str, tmp_path: Path, sim: NodeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store in a thread waits for the GIL after every row while the verifying thread
    runs, holding SQLite's write lock several times as long as its work."""
    cat = _catalogue(db_url, tmp_path / "home", growth=1)
    threads: set[int] = set()
    commit_chunk = catalogue.harvest.stream.commit_chunk

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return commit_chunk(*args, **kwargs)

    monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", spy)
    try:
        cat.enrol(sim, sim.url)
        assert cat.harvest()[sim.origin].ok
    finally:
        cat.engine.dispose()
    on_loop = threads == {threading.get_ident()}  # the harvest's event loop runs here
    assert threads and on_loop is ("postgresql" not in db_url)


def test_chunks_verified_while_the_write_lock_stays_held_are_spilled_then_stored_in_order(
    tmp_path: Path,
    sim: NodeSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite only (PostgreSQL has no single write lock: its stores never wait on a lane):
    the lock is held until the node has served its LAST page, far more than a grown chunk:
    the lane verified the whole step meanwhile (chunks past the growth limit went to disk),
    then stored every chunk in order; the result is a plain harvest's."""
    cat = _catalogue(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "home", growth=2)
    served_at_first_store: list[int] = []
    commit_chunk = catalogue.harvest.stream.commit_chunk

    def first(*args: Any, **kwargs: Any) -> Any:
        if not served_at_first_store:
            served_at_first_store.append(max(sim.served))
        return commit_chunk(*args, **kwargs)

    try:
        monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", first)
        staged = _harvest_with_lock_held(cat, sim, monkeypatch, release_at=SIZE - 50)
        spilled = dump(cat.engine)
        with cat.engine.connect() as conn:  # not in `dump`: spilled chunks store them computed
            stored = {
                (int(r.level), int(r.idx)): bytes(r.hash) for r in conn.execute(select(subtrees))
            }
    finally:
        cat.engine.dispose()
    assert served_at_first_store == [SIZE - 50]  # verifying never waited for the lock
    sizes = [b - a for a, b in zip([0, *staged], staged, strict=False)]
    assert all(0 < n <= 2 * CHUNK for n in sizes) and staged == sorted(staged)
    assert staged[-1] >= SIZE - 2 * CHUNK  # every chunk but the final commit's
    reference = list_perfect([leaf_hash(x) for x in sim.leaves])
    size = len(sim.leaves)
    assert stored == {
        (level, i): reference(level, i)
        for level in range(STRIDE, size.bit_length() + 1, STRIDE)
        for i in range(size >> level)
    }
    assert _plain_dump(tmp_path, sim) == spilled


def test_spill_file_written_over_after_a_drain_stores_the_second_spill_as_a_plain_harvest(
    tmp_path: Path, sim: NodeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the lock is held twice, each time longer than a chunk takes to fill, so the lane
    spills, drains the spill file, then spills again over the file's first bytes (written
    over, not truncated: the old chunks' bytes lie past the new ones) in pieces of at most
    `SPILL_ROWS` rows; what is stored is a plain harvest's."""
    cat = _catalogue(f"sqlite:///{tmp_path / 'catalogue.db'}", tmp_path / "home", growth=1)
    cat.enrol(sim, sim.url)
    stores: list[tuple[int, int]] = []  # (highest page start served, staged size) per store
    commit_chunk = catalogue.harvest.stream.commit_chunk

    def spy(*args: Any, **kwargs: Any) -> Any:
        stores.append((max(sim.served), kwargs["size"]))
        return commit_chunk(*args, **kwargs)

    monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", spy)
    assert catalogue.harvest.stream.SPILL_ROWS < CHUNK  # a chunk is several pieces
    holds = [WriteLockHeld(cat, sim.origin)]

    def hook(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
        top = sim.served[-1]
        if top >= 350:  # verified past 200 entries under the first hold: spilled
            holds[0].release.set()
        if top >= 500 and len(holds) == 1:
            holds[0].thread.join(10)
            holds.append(WriteLockHeld(cat, sim.origin).__enter__())
        if top >= SIZE - 50:
            holds[-1].release.set()
        return out

    sim.entries_hook = hook
    try:
        with holds[0]:
            out = cat.harvest()[sim.origin]
        for held in holds[1:]:
            held.__exit__()
        assert out.ok and out.added == SIZE, out.error
        spilled = dump(cat.engine)
    finally:
        cat.engine.dispose()
    assert len(holds) == 2
    # nothing past 650 was stored before the node served its last page: the lane verified
    # on (more than a chunk) under the second hold, so that chunk went to the spill file
    assert min(top for top, size in stores if size > 650) >= SIZE - 50
    assert [size for _top, size in stores] == sorted(size for _top, size in stores)
    assert _plain_dump(tmp_path, sim) == spilled


def _plain_dump(tmp_path: Path, sim: NodeSimulator) -> Any:
    """What a plain harvest of the node (no lock held, chunks of their size) stores."""
    (tmp_path / "clean").mkdir()
    clean = _catalogue(
        f"sqlite:///{tmp_path / 'clean' / 'catalogue.db'}", tmp_path / "clean-home", growth=1
    )
    try:
        clean.enrol(sim, sim.url)
        assert clean.harvest()[sim.origin].ok
        return dump(clean.engine)
    finally:
        clean.engine.dispose()
