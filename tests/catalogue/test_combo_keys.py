"""A node's combos are unique by the SHA-256 of their key (`combos.khash`, indexed with the
node); the key is not stored as text (every part of it is a column). A database made before
is given the hashes at start, and loses the key's text (`combos.ckey`)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError

from catalogue.db import make_engine, write_tx
from catalogue.harvest.index import combo_hash
from catalogue.models import combos
from catalogue.search import CubeCache, Vocabulary, parse_filters, search
from tests.catalogue.conftest import Catalogue
from tests.catalogue.dbdump import key_of_row
from tests.catalogue.simulator import NodeSimulator

BB, COL = "bbmri-eric:ID:DE_K", "bbmri-eric:ID:DE_K:collection:main"


def _harvested(catalogue: Catalogue, serve: Any) -> NodeSimulator:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(4, biobank=BB, collection=COL)
    sim.populate(3, start=100, biobank=BB, collection=COL, sample_type="Serum")
    sim.populate(2, start=200, biobank=BB, collection=COL, use_conditions=["DUO:0000007"])
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    return sim


def _combos(catalogue: Catalogue) -> list[tuple[Any, ...]]:
    with catalogue.engine.connect() as conn:
        return [
            (r.id, key_of_row(r), bytes(r.khash), int(r.n_max))
            for r in conn.execute(select(combos).order_by(combos.c.id))
        ]


def _columns(catalogue: Catalogue) -> set[str]:
    with catalogue.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("combos")}


def _add_key_text(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Give `combos` the key's JSON text as the previous versions stored it (`ckey`, not null)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE combos ADD COLUMN ckey TEXT"))
    else:  # SQLite adds a NOT NULL column only with a default
        conn.execute(text("ALTER TABLE combos ADD COLUMN ckey TEXT NOT NULL DEFAULT ''"))
    conn.execute(
        text("UPDATE combos SET ckey = :k WHERE id = :i"),
        [{"k": orjson.dumps(key).decode(), "i": cid} for cid, key, _h, _n in rows],
    )
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE combos ALTER COLUMN ckey SET NOT NULL"))


def _total(catalogue: Catalogue) -> Any:
    vocab = Vocabulary.default()
    with catalogue.engine.connect() as conn:
        return search(conn, parse_filters({}, vocab), vocab, 3600.0, CubeCache())["total"]


def test_combos_are_keyed_by_the_hash_of_their_key(catalogue: Catalogue, serve: Any) -> None:
    _harvested(catalogue, serve)
    rows = _combos(catalogue)
    assert len(rows) == 3
    for _id, key, khash, _n in rows:
        assert khash == hashlib.sha256(orjson.dumps(key)).digest()
    with catalogue.engine.connect() as conn:
        indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("combos")}
    assert indexes["ix_combos_khash"]["column_names"] == ["node_id", "khash"]
    assert indexes["ix_combos_khash"]["unique"]
    assert "ix_combos_key" not in indexes, "no index of the key's text"
    # a second combo of the node with the same key is refused by the database
    first = rows[0]
    with pytest.raises(IntegrityError), write_tx(catalogue.engine) as conn:
        node_id = conn.execute(select(combos.c.node_id)).scalars().first()
        conn.execute(
            combos.insert().values(node_id=node_id, khash=first[2], biobank=BB, collection=COL)
        )


def test_an_old_database_gains_the_key_hashes_and_its_combos_are_found_again(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = _harvested(catalogue, serve)
    rows, total = _combos(catalogue), _total(catalogue)
    with write_tx(catalogue.engine) as conn:  # as the version before khash made it
        _add_key_text(conn, rows)
        conn.execute(text("DROP INDEX ix_combos_khash"))
        conn.execute(text("ALTER TABLE combos DROP COLUMN khash"))
        conn.execute(text("CREATE UNIQUE INDEX ix_combos_key ON combos (node_id, ckey)"))
    url = catalogue.engine.url.render_as_string(hide_password=False)
    catalogue.engine.dispose()
    make_engine(url, cache_mib=1).dispose()  # what a catalogue does when it starts
    assert _combos(catalogue) == rows
    with catalogue.engine.connect() as conn:
        names = {ix["name"] for ix in inspect(conn).get_indexes("combos")}
    assert "ix_combos_khash" in names and "ix_combos_key" not in names
    assert "ckey" not in _columns(catalogue), "the key's text went once it was hashed"
    assert _total(catalogue) == total
    # the next step adds groups to the known combos (found by their hash) and one new combo
    sim.populate(2, start=300, biobank=BB, collection=COL, sample_type="Serum")
    sim.populate(1, start=400, biobank=BB, collection=COL, sex="male")
    assert catalogue.harvest()[sim.origin].ok
    after = _combos(catalogue)
    assert [r[:3] for r in after[:3]] == [r[:3] for r in rows], "no combo written twice"
    assert [r[3] for r in after] == [4, 3 + 2, 2, 1]
    assert after[3][2] == combo_hash(after[3][1])


def test_combos_store_no_key_text(catalogue: Catalogue, serve: Any) -> None:
    _harvested(catalogue, serve)
    assert "ckey" not in _columns(catalogue)
    assert "khash" in _columns(catalogue)


def test_a_database_with_the_key_text_loses_it_and_takes_new_combos(
    catalogue: Catalogue, serve: Any
) -> None:
    """A database of the version that had both `khash` and `ckey` (not null): the catalogue
    drops `ckey` when it starts, and the next step writes new combos without it."""
    sim = _harvested(catalogue, serve)
    rows, total = _combos(catalogue), _total(catalogue)
    with write_tx(catalogue.engine) as conn:
        _add_key_text(conn, rows)
    assert "ckey" in _columns(catalogue)
    url = catalogue.engine.url.render_as_string(hide_password=False)
    catalogue.engine.dispose()
    make_engine(url, cache_mib=1).dispose()
    assert "ckey" not in _columns(catalogue)
    assert _combos(catalogue) == rows
    assert _total(catalogue) == total
    make_engine(url, cache_mib=1).dispose()  # idempotent
    sim.populate(1, start=400, biobank=BB, collection=COL, sex="male")
    assert catalogue.harvest()[sim.origin].ok
    after = _combos(catalogue)
    assert after[:3] == rows
    assert len(after) == 4 and after[3][2] == combo_hash(after[3][1])
