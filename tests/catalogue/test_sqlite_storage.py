"""How a harvest writes to SQLite, for less CPU an entry: a new catalogue is made with 16 KiB
pages (`catalogue.db.SQLITE_PAGE_SIZE`), and a catalogue made before keeps its own page size
(in WAL mode it cannot change) and harvests, withdraws and serves proofs as a new one does;
the rows a harvest inserts carry their BLOBs as bytearray (`catalogue.db.bulk_insert`), which
are stored as the same bytes, as BLOBs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalogue.context import build_context
from catalogue.db import SQLITE_PAGE_SIZE, make_engine
from catalogue.harvest.apply import LEAF_COLUMNS, Chunk
from catalogue.models import combos, leaves, nodes
from catalogue.subtrees import perfect
from protocol.merkle import inclusion_proof_from, leaf_hash
from protocol.verify import VerifiedEntry
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator, group_id
from tests.protocol.reference import reference_inclusion_proof


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def _made_with_4k_pages(path: Path) -> None:
    """An (empty) catalogue database as earlier versions made it: SQLite's 4 KiB pages, WAL."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE made_before (x INTEGER)")
    conn.commit()
    conn.close()


def test_new_sqlite_catalogue_is_made_with_16k_pages(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    assert SQLITE_PAGE_SIZE == 16384
    assert _page_size(tmp_path / "c.db") == SQLITE_PAGE_SIZE


def test_harvest_rows_carry_blobs_as_bytearray_and_store_the_same_bytes(
    catalogue: Catalogue, serve: Any
) -> None:
    entry = VerifiedEntry(3, {"kind": "biobank", "id": "b"}, b"leaf", {"id": "b"}, (), b"h" * 32)
    chunk = Chunk(1)
    chunk.add(entry)
    row = dict(zip(LEAF_COLUMNS, chunk.rows[0], strict=True))
    assert type(row["leaf"]) is bytearray and row["leaf"] == b"leaf"
    assert type(row["hash"]) is bytearray and row["hash"] == b"h" * 32

    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(30)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        stored = conn.execute(
            select(leaves.c.idx, leaves.c.leaf, leaves.c.hash).order_by(leaves.c.idx)
        ).all()
        hashes = conn.execute(select(combos.c.khash)).scalars().all()
        if conn.dialect.name == "sqlite":  # BLOBs, not text
            kinds = conn.exec_driver_sql(
                "SELECT DISTINCT typeof(leaf), typeof(hash) FROM leaves"
                " UNION SELECT DISTINCT typeof(khash), 'blob' FROM combos"
            ).all()
            assert kinds == [("blob", "blob")]
    assert [(i, bytes(x), bytes(h)) for i, x, h in stored] == [
        (i, x, leaf_hash(x)) for i, x in enumerate(sim.leaves)
    ]
    assert hashes and all(type(h) is bytes and len(h) == 32 for h in hashes)


def _harvest(path: Path, sim: NodeSimulator) -> Catalogue:
    catalogue = Catalogue(build_context(make_settings(f"sqlite:///{path}", path.parent / "home")))
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    return catalogue


def test_sqlite_catalogue_made_with_4k_pages_keeps_them_and_harvests_alike(
    tmp_path: Path, serve: Any
) -> None:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(40)
    sim.populate(20, start=100, sample_type="Serum", use_conditions=["DUO:0000007"])
    serve(sim)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    _made_with_4k_pages(tmp_path / "old" / "c.db")
    old = _harvest(tmp_path / "old" / "c.db", sim)
    new = _harvest(tmp_path / "new" / "c.db", sim)
    try:
        for n in (1, 5, 33, 120, 101):  # erased contents, recounted combos
            sim.withdraw("sample-group", group_id(n))
        sim.populate(5, start=300)
        for catalogue in (old, new):
            assert catalogue.harvest()[sim.origin].ok
        assert _page_size(tmp_path / "old" / "c.db") == 4096
        assert _page_size(tmp_path / "new" / "c.db") == SQLITE_PAGE_SIZE
        assert dump(old.engine) == dump(new.engine)
        hashes = [leaf_hash(x) for x in sim.leaves]
        for catalogue in (old, new):  # proofs from the stored leaf and subtree hashes
            with catalogue.engine.connect() as conn:
                node_id = conn.execute(select(nodes.c.id)).scalar_one()
                stored = perfect(conn, node_id)
                for index, size in ((17, len(hashes)), (0, 40), (65, 66)):
                    got = inclusion_proof_from(stored, index, size)
                    assert got == reference_inclusion_proof(hashes, index, size)
    finally:
        old.ctx.engine.dispose()
        new.ctx.engine.dispose()
