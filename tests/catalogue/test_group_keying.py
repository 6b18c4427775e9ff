"""Keying a step's groups before the write transaction (`prepare_step`) is written for speed:
`combo_key` in one pass, the node's k asked only of exact donors, the count intervals
inline. These hold it to the reference definitions: the key as first defined, the combo hash
of that key, `count_interval` of each count, and `group_problems` for what is refused. New
combos are written with the hash their step computed (not encoded again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from catalogue.db import make_engine, write_tx
from catalogue.harvest.index import (
    GROUP,
    REJECTION_COLUMNS,
    ComboIds,
    combo_hash,
    combo_key,
    count_interval,
    group_problems,
    prepare_step,
)
from catalogue.models import combos, leaves, nodes, rejections
from catalogue.search import Vocabulary
from tests.catalogue.conftest import Catalogue
from tests.catalogue.dbdump import key_of_row
from tests.catalogue.simulator import NodeSimulator

BB, COL = "bbmri-eric:ID:DE_G", "bbmri-eric:ID:DE_G:collection:main"
K = 5


def reference_key(s: dict[str, Any]) -> tuple[Any, ...]:
    """`combo_key` as first written (the definition the stored hashes were made by)."""
    age = s.get("age") or {}
    per = s.get("period") or {}
    diags = tuple(sorted((d["system"], d["code"]) for d in s.get("diagnoses") or ()))
    return (
        s["biobank"],
        s["collection"],
        s.get("sample_type"),
        s.get("storage_temperature"),
        s.get("sex"),
        age.get("min"),
        age.get("max"),
        per.get("from"),
        per.get("to"),
        diags,
        tuple(sorted(s.get("use_conditions") or ())),
        tuple(sorted(s.get("dataset_types") or ())),
    )


def _awkward() -> list[dict[str, Any]]:
    base = {"biobank": BB, "collection": COL, "samples": 9, "donors": 9}
    out: list[dict[str, Any]] = [base]
    for diags in (
        [],
        [{"system": "ORPHA", "code": "ORPHA:558"}, {"system": "ICD-10", "code": "C50.9"}],
        [{"system": "ICD-10", "code": "E11.9"}, {"system": "ICD-10", "code": "C18"}] * 2,
    ):
        out.append({**base, "diagnoses": diags})
    for codes in ([], ["DUO:0000042", "DUO:0000007", "DUO:0000042"]):
        out.append({**base, "use_conditions": codes, "dataset_types": list(reversed(codes))})
    out.append({**base, "age": {"min": 40}, "period": {"to": 2010}, "sex": "female"})
    out.append({**base, "age": {}, "period": None, "sample_type": "Serum"})
    out.append({**base, "storage_temperature": "-80", "age": {"min": 0, "max": 9}})
    return out


def test_combo_key_equals_the_reference_definition() -> None:
    for g in _awkward():
        assert combo_key(g) == reference_key(g), g
        assert combo_hash(combo_key(g)) == combo_hash(reference_key(g))


def _node(catalogue: Catalogue, serve: Any) -> NodeSimulator:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=K)
    sim.populate(3, biobank=BB, collection=COL)  # exact, at k
    sim.populate(2, start=10, biobank=BB, collection=COL, samples=2, donors=2)  # below k
    sim.populate(2, start=20, biobank=BB, collection=COL, samples=6, donors=7)  # samples < donors
    sim.populate(
        3,
        start=30,
        biobank=BB,
        collection=COL,
        samples={"lt": 20},
        donors={"lt": 10},
        diagnoses=[
            {"system": "ORPHA", "code": "ORPHA:558"},
            {"system": "ICD-10", "code": "C50.9"},
        ],
        use_conditions=["DUO:0000042", "DUO:0000007"],
    )
    sim.populate(2, start=40, biobank=BB, collection=COL, samples={"lt": 20}, donors=K + 1)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    return sim


def test_prepared_groups_hold_the_reference_key_hash_intervals_and_refusals(
    catalogue: Catalogue, serve: Any
) -> None:
    _node(catalogue, serve)
    with catalogue.engine.connect() as conn, conn.begin() as tx:
        node_id, size = conn.execute(select(nodes.c.id, nodes.c.tree_size)).one()
        stored = {
            r.record_id: (r.idx, r.content)
            for r in conn.execute(select(leaves).where(leaves.c.kind == GROUP))
        }
        conn.execute(rejections.delete())  # keyed afresh: the refusals come from the policy
        prepared = prepare_step(conn, node_id, 0, int(size))
        tx.rollback()
    ready = {rid: ch for b in prepared.batches for rid, ch in b.changes[GROUP].items()}
    refused = {
        dict(zip(REJECTION_COLUMNS, r, strict=True))["record_id"]
        for b in prepared.batches
        for r in b.refused
    }
    assert set(ready) == set(stored)
    want_refused = set()
    for rid, (idx, content) in stored.items():
        g = orjson.loads(content)
        if group_problems(g, K):
            want_refused.add(rid)
            assert ready[rid] is None
            continue
        key = reference_key(g)
        # (a Ready change's last two values are the exact counts its keying asked k of, which
        # `apply_groups` ignores)
        assert ready[rid][:5] == (
            idx,
            combo_hash(key),
            key,
            count_interval(g["samples"]),
            count_interval(g["donors"]),
        )
    assert refused == want_refused
    assert len(want_refused) == 4 and len(stored) - len(want_refused) == 8


def test_new_combos_are_written_with_the_hash_their_step_computed(tmp_path: Path) -> None:
    """`insert_new` writes the hash `ensure` was given (the step's), the key's parts as columns
    and no key text: a hash that is not the key's own is stored as given."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    key = combo_key({"biobank": BB, "collection": COL, "sex": "male", "use_conditions": ["B", "A"]})
    given = b"\x01" * 32  # not combo_hash(key): shows nothing hashes the key again
    try:
        with write_tx(engine) as conn:
            ids = ComboIds(conn, 1)
            ids.ensure(conn, {given: key, combo_hash(key): key})
            ids.encode_new(Vocabulary.default())
            written = ids.insert_new(conn, {}, set(), 7, node_country="DE")
        assert len(written) == 2
        with engine.connect() as conn:
            rows = conn.execute(select(combos).order_by(combos.c.id)).all()
        assert [bytes(r.khash) for r in rows] == [given, combo_hash(key)]
        assert all(key_of_row(r) == key for r in rows)
        assert all((r.country, r.changed, r.use_conditions) == ("DE", 7, '["A","B"]') for r in rows)
    finally:
        engine.dispose()
