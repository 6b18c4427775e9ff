"""A harvest's chunk store stores the subtree hashes its leaves complete, from the leaf hashes
in hand (the final commit no longer reads every leaf hash back): the same hashes as the
reference, across chunk boundaries that cut a subtree; those of a discarded step go with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.context import build_context
from catalogue.db import write_tx
from catalogue.harvest.apply import discard_staging
from catalogue.models import harvest_staging, nodes, subtrees
from catalogue.subtrees import perfect
from protocol.merkle import inclusion_proof_from, leaf_hash, list_perfect
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.simulator import NodeSimulator
from tests.catalogue.test_streaming import fail_from
from tests.protocol.reference import reference_inclusion_proof

CHUNK = 37  # chunks that end inside a level-4 subtree


@pytest.fixture
def chunked(db_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    settings = make_settings(
        db_url, tmp_path / "home", page_size=50, harvest_chunk=CHUNK, harvest_chunk_growth=1
    )
    ctx = build_context(settings)
    try:
        yield Catalogue(ctx)
    finally:
        ctx.engine.dispose()


def _stored(catalogue: Catalogue, node_id: int) -> dict[tuple[int, int], bytes]:
    with catalogue.engine.connect() as conn:
        return {
            (int(r.level), int(r.idx)): bytes(r.hash)
            for r in conn.execute(select(subtrees).where(subtrees.c.log_id == node_id))
        }


def _node(catalogue: Catalogue) -> tuple[int, int, int | None]:
    with catalogue.engine.connect() as conn:
        node_id, size = conn.execute(select(nodes.c.id, nodes.c.tree_size)).one()
        staged = conn.execute(select(harvest_staging.c.size)).scalar()
    return int(node_id), int(size), staged


def _reference(hashes: list[bytes], size: int) -> dict[tuple[int, int], bytes]:
    ref = list_perfect(hashes[:size])
    return {
        (level, i): ref(level, i)
        for level in range(4, size.bit_length() + 1, 4)
        for i in range(size >> level)
    }


def test_chunk_stores_store_the_subtree_hashes_of_their_leaves(
    chunked: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(300)  # 302 leaves: level-4 and level-8 subtrees, chunks of 37
    serve(sim)
    chunked.enrol(sim, sim.url)
    hashes = [leaf_hash(x) for x in sim.leaves]
    chunked.stage_whole(sim.origin)  # staged whole, its final commit deferred
    node_id, size, staged = _node(chunked)
    assert (size, staged) == (0, len(hashes))
    assert _stored(chunked, node_id) == _reference(hashes, len(hashes))

    with write_tx(chunked.engine) as conn:  # a discarded step: its subtree hashes go too
        discard_staging(conn, node_id)
    assert _stored(chunked, node_id) == {}

    assert chunked.harvest()[sim.origin].ok
    sim.populate(90, start=300)  # the next step starts inside a subtree
    assert chunked.harvest()[sim.origin].ok
    hashes = [leaf_hash(x) for x in sim.leaves]
    node_id, size, staged = _node(chunked)
    assert (size, staged) == (len(hashes), None)
    assert _stored(chunked, node_id) == _reference(hashes, len(hashes))
    with chunked.engine.connect() as conn:
        stored = perfect(conn, node_id)
        for index, at in ((0, 1), (17, 300), (301, 302), (389, len(hashes))):
            assert inclusion_proof_from(stored, index, at) == reference_inclusion_proof(
                hashes, index, at
            )


def test_discarding_a_step_keeps_the_subtree_hashes_of_accepted_leaves(
    chunked: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(40)  # 42 accepted leaves: two level-4 subtrees, one cut by the next step
    serve(sim)
    chunked.enrol(sim, sim.url)
    assert chunked.harvest()[sim.origin].ok
    accepted = _stored(chunked, _node(chunked)[0])
    assert set(accepted) == {(4, 0), (4, 1)}
    sim.populate(100, start=40)
    fail_from(sim, 90)  # the node breaks down mid-step: what was verified stays staged
    assert not chunked.harvest()[sim.origin].ok
    node_id, size, staged = _node(chunked)
    assert size == 42 and staged is not None and 42 < staged < 142
    hashes = [leaf_hash(x) for x in sim.leaves]
    assert _stored(chunked, node_id) == _reference(hashes, staged)
    with write_tx(chunked.engine) as conn:
        discard_staging(conn, node_id)
    assert _stored(chunked, node_id) == accepted
