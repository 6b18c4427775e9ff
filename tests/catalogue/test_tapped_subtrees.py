"""The chunk stores take the stored levels' subtree hashes from the verifier's compact range
(`subtrees.TappedRange`), which computes each of them once as it appends the leaves, instead
of computing them again from the leaf hashes: the same hashes as the reference, whatever the
step's start and the chunks' cuts; stored as given only where the stored ones end where the
chunk's first subtree begins, else computed as before."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from catalogue.context import build_context
from catalogue.db import bulk_insert, write_tx
from catalogue.models import leaves, nodes, subtrees
from catalogue.subtrees import TappedRange, extend
from protocol.merkle import STRIDE, CompactRange, leaf_hash, list_perfect
from tests.catalogue.conftest import make_settings


def _hashes(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _reference(hashes: list[bytes], start: int, end: int) -> set[tuple[int, int, bytes]]:
    """Every stored level's subtree that leaves start .. end - 1 complete, by the list."""
    ref = list_perfect(hashes[:end])
    return {
        (level, i, ref(level, i))
        for level in range(STRIDE, end.bit_length() + 1, STRIDE)
        for i in range(end >> level)
        if ((i + 1) << level) > start
    }


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 700),
    added=st.integers(0, 900),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=8),
)
def test_tapped_range_keeps_the_subtree_hashes_the_reference_computes(
    start: int, added: int, cuts: list[int]
) -> None:
    hashes = _hashes(start + added)
    plain = CompactRange()
    plain.extend(hashes[:start])
    tapped = TappedRange.of(plain)
    taken: list[tuple[int, int, bytes]] = []
    at, cut = start, 0
    while at < start + added:  # chunks of the given sizes, taken in order
        end = min(start + added, at + cuts[cut % len(cuts)])
        tapped.extend(hashes[at:end])
        taken += tapped.take(at, end)
        at, cut = end, cut + 1
    plain.extend(hashes[start:])
    assert (tapped.size, tapped.root()) == (plain.size, plain.root())
    assert len(taken) == len(set(taken))
    assert set(taken) == _reference(hashes, start, start + added)
    assert not tapped.tap


def test_tapped_range_lets_go_of_hashes_nobody_took() -> None:
    hashes = _hashes(100)
    tapped = TappedRange()
    tapped.extend(hashes[:50])  # a chunk stored without the tap (spilled): 0 .. 49
    tapped.extend(hashes[50:])
    assert set(tapped.take(50, 100)) == _reference(hashes, 50, 100)
    assert not tapped.tap


def _catalogue_with_leaves(tmp_path: Path, hashes: list[bytes]) -> tuple[Engine, int]:
    ctx = build_context(make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "home"))
    with write_tx(ctx.engine) as conn:
        node_id = conn.execute(
            nodes.insert().values(
                origin="de.example/biobank-node",
                url="http://127.0.0.1:9",
                key="k",
                descriptor="{}",
                enrolled_at="2026-01-01T00:00:00Z",
            )
        ).inserted_primary_key[0]
        bulk_insert(
            conn,
            leaves,
            ("node_id", "idx", "leaf", "hash", "kind", "record_id"),
            [(node_id, i, b"x", h, "", "") for i, h in enumerate(hashes)],
        )
    return ctx.engine, int(node_id)


def _stored(engine: Engine, node_id: int) -> set[tuple[int, int, bytes]]:
    with engine.connect() as conn:
        rows = conn.execute(select(subtrees).where(subtrees.c.log_id == node_id))
        return {(int(r.level), int(r.idx), bytes(r.hash)) for r in rows}


def test_chunk_store_stores_the_verifiers_subtree_hashes_where_the_stored_ones_end(
    tmp_path: Path,
) -> None:
    hashes = _hashes(300)
    engine, node_id = _catalogue_with_leaves(tmp_path, hashes)
    tapped = TappedRange()
    tapped.extend(hashes[:100])
    with write_tx(engine) as conn:  # the stored ones end where 100's subtree begins (96)
        extend(conn, node_id, 100, hashes[:100], 0, tapped.take(0, 100))
    assert _stored(engine, node_id) == _reference(hashes, 0, 100)
    tapped.extend(hashes[100:200])
    computed = tapped.take(100, 200)
    marked = [(level, i, b"\0" * 32) for level, i, _h in computed]  # what was given is stored
    with write_tx(engine) as conn:
        extend(conn, node_id, 200, hashes[100:200], 100, marked)
    assert _stored(engine, node_id) == _reference(hashes, 0, 100) | set(marked)
    engine.dispose()


def test_chunk_store_computes_the_subtree_hashes_when_earlier_ones_are_missing(
    tmp_path: Path,
) -> None:
    hashes = _hashes(300)
    engine, node_id = _catalogue_with_leaves(tmp_path, hashes)
    tapped = TappedRange()
    tapped.extend(hashes)
    wrong = [(level, i, b"\0" * 32) for level, i, _h in tapped.take(200, 300)]
    with write_tx(engine) as conn:  # none stored for leaves 0 .. 199: all computed
        extend(conn, node_id, 300, hashes[200:], 200, wrong)
    assert _stored(engine, node_id) == _reference(hashes, 0, 300)
    engine.dispose()
