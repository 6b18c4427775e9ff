"""Harvest: enrol simulated nodes, harvest incrementally, withdraw, reject bad records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import func, inspect, select, text

from catalogue.db import make_engine
from catalogue.models import (
    combos,
    leaf_records,
    leaves,
    nodes,
    own_leaves,
    rejections,
    samples,
)
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator, sample, sample_id


def node(cat: Catalogue, origin: str) -> Any:
    with cat.engine.connect() as conn:
        return conn.execute(select(nodes).where(nodes.c.origin == origin)).one()


def live_samples(cat: Catalogue) -> int:
    with cat.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(combos.c.n), 0))).scalar_one())


def own_ops(cat: Catalogue) -> list[str]:
    with cat.engine.connect() as conn:
        return [
            orjson.loads(r.leaf)["op"]
            for r in conn.execute(select(own_leaves.c.leaf).order_by(own_leaves.c.idx))
        ]


def test_first_harvest_mirrors_and_indexes_every_record(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(250)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.added == 252 and out.size == 252
    row = node(catalogue, sim.origin)
    assert row.tree_size == 252 and row.checkpoint == sim.checkpoint()
    assert live_samples(catalogue) == 250
    assert own_ops(catalogue) == ["enrol", "checkpoint"]
    with catalogue.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(leaves)).scalar_one() == 252


def test_incremental_harvest_adds_only_new_entries(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(30)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    sim.populate(20, start=30)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.added == 20 and out.size == 52
    assert live_samples(catalogue) == 50
    again = catalogue.harvest()[sim.origin]
    assert again.ok and again.added == 0
    assert own_ops(catalogue) == ["enrol", "checkpoint", "checkpoint"]


def test_withdraw_removes_sample_and_erases_mirrored_content(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(12)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    sim.withdraw("sample", sample_id(3))
    assert catalogue.harvest()[sim.origin].ok
    assert live_samples(catalogue) == 11
    with catalogue.engine.connect() as conn:
        erased = conn.execute(
            select(leaves.c.idx, leaves.c.content)
            .where(leaves.c.record_id == sample_id(3))
            .order_by(leaves.c.idx)
        ).all()
        assert [c for _i, c in erased] == [None, None]
        assert (
            conn.execute(
                select(func.count()).select_from(samples).where(samples.c.sample_id == sample_id(3))
            ).scalar_one()
            == 0
        )


def test_database_of_an_earlier_version_is_upgraded(catalogue: Catalogue, serve: Any) -> None:
    """Before `leaf_records`, `leaves` had a (node_id, kind, record_id) index: opening such a
    database fills `leaf_records` from the accepted leaves, so erasure still finds them."""
    sim = NodeSimulator()
    sim.populate(12)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    with catalogue.engine.begin() as conn:
        before = conn.execute(select(leaf_records)).all()
        assert len(before) == 14  # every record leaf (biobank, collection, 12 samples)
        conn.execute(leaf_records.delete())
        conn.execute(text("DROP INDEX ix_leaves_rotations"))
        conn.execute(text("CREATE INDEX ix_leaves_record ON leaves (node_id, kind, record_id)"))
    make_engine(catalogue.engine.url.render_as_string(hide_password=False)).dispose()
    with catalogue.engine.connect() as conn:
        assert sorted(conn.execute(select(leaf_records)).all()) == sorted(before)
        names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
    assert "ix_leaves_record" not in names and "ix_leaves_rotations" in names
    sim.withdraw("sample", sample_id(3))
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        assert conn.execute(
            select(leaves.c.content).where(leaves.c.record_id == sample_id(3))
        ).scalars().all() == [None, None]


def test_withdraw_in_same_step_never_stores_content(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(5)
    sim.withdraw("sample", sample_id(1))
    sim.contents[3] = sim.contents[3]  # node already erased it; catalogue must store null too
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    assert live_samples(catalogue) == 4
    with catalogue.engine.connect() as conn:
        contents = (
            conn.execute(select(leaves.c.content).where(leaves.c.record_id == sample_id(1)))
            .scalars()
            .all()
        )
    assert contents == [None, None]


def test_republished_sample_moves_between_combos(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(3)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    changed = sample(
        0,
        biobank="bbmri-eric:ID:DE_SIM",
        collection="bbmri-eric:ID:DE_SIM:collection:main",
        sample_type="Serum",
    )
    sim.publish("sample", changed)
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        by_type = dict(
            conn.execute(
                select(combos.c.sample_type, func.sum(combos.c.n)).group_by(combos.c.sample_type)
            ).all()
        )
    assert {k: int(v) for k, v in by_type.items()} == {"Plasma": 2, "Serum": 1}


def test_schema_failure_is_rejected_and_does_not_stall(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(4)
    bad = sample(
        99,
        biobank="bbmri-eric:ID:DE_SIM",
        collection="bbmri-eric:ID:DE_SIM:collection:main",
        sample_type="Blut",
    )
    sim.publish("sample", bad)
    sim.populate(2, start=4)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 9
    assert live_samples(catalogue) == 6
    with catalogue.engine.connect() as conn:
        rej = conn.execute(select(rejections)).one()
    assert rej.idx == 6 and rej.record_id == sample_id(99)
    assert "sample_type" in rej.problems and "Blut" in rej.problems


def test_node_down_or_hanging_does_not_stop_the_others(catalogue: Catalogue, serve: Any) -> None:
    good, hanging, down = (
        NodeSimulator(f"{n}.example/biobank-node") for n in ("good", "hanging", "down")
    )
    for sim in (good, hanging, down):
        sim.populate(10)
        serve(sim)
        catalogue.enrol(sim, sim.url)
    hanging.hang.set()
    down_url = down.url
    with catalogue.engine.begin() as conn:
        conn.execute(
            nodes.update().where(nodes.c.origin == down.origin).values(url="http://127.0.0.1:9")
        )
    outs = catalogue.harvest()
    assert outs[good.origin].ok and outs[good.origin].size == 12
    assert not outs[hanging.origin].ok and "no complete answer within 2 s" in (
        outs[hanging.origin].error or ""
    )
    assert not outs[down.origin].ok and "FetchError" in (outs[down.origin].error or "")
    assert node(catalogue, hanging.origin).tree_size == 0
    assert node(catalogue, down.origin).last_error == outs[down.origin].error
    assert down_url


@pytest.mark.parametrize("n", [1, 1001])
def test_page_boundaries(catalogue: Catalogue, serve: Any, n: int) -> None:
    sim = NodeSimulator()
    sim.populate(n)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].size == n + 2
    assert live_samples(catalogue) == n
