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
from catalogue.db import write_tx
from catalogue.models import nodes
from tests.catalogue.conftest import Catalogue, database, make_settings
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


class _Held:
    """Holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the node's row, which every
    chunk store locks) in a thread, as another lane's final commit would, until released."""

    def __init__(self, cat: Catalogue, origin: str) -> None:
        self.cat, self.origin = cat, origin
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with write_tx(self.cat.engine) as conn:
            conn.execute(select(nodes.c.id).where(nodes.c.origin == self.origin).with_for_update())
            self.locked.set()
            self.release.wait(10)

    def __enter__(self) -> _Held:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


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
    commit_chunk = catalogue.harvest.stream.commit_chunk

    def spy(*args: Any, **kwargs: Any) -> Any:
        pos = commit_chunk(*args, **kwargs)
        staged.append(kwargs["size"])
        return pos

    monkeypatch.setattr(catalogue.harvest.stream, "commit_chunk", spy)
    with _Held(cat, sim.origin) as held:

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
        staged = _harvest_with_lock_held(cat, sim, monkeypatch, release_at=5 * CHUNK)
        grown = dump(cat.engine)
    finally:
        cat.engine.dispose()
    # the first store waited for the lock; meanwhile the next chunk grew past CHUNK entries
    # (so verifying went on), but never past 4 * CHUNK (memory stays bounded)
    assert staged[0] == CHUNK
    assert CHUNK < staged[1] - staged[0] <= 4 * CHUNK
    assert all(b - a <= 4 * CHUNK for a, b in zip(staged, staged[1:], strict=False))
    assert staged == sorted(staged) and staged[-1] < SIZE  # the last chunk: final commit
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
        # the verifier stops at the second full chunk; two pages past it are asked ahead
        staged = _harvest_with_lock_held(cat, sim, monkeypatch, release_at=2 * CHUNK + 50)
    finally:
        cat.engine.dispose()
    assert staged == list(range(CHUNK, SIZE, CHUNK))
