"""Harvest: enrol simulated nodes, harvest incrementally, withdraw, reject bad records, and
keep each combo's interval sums over its sample groups."""

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
    sample_groups,
)
from catalogue.status import rejection_report
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator, bounded_group, exact_group, group, group_id


def node(cat: Catalogue, origin: str) -> Any:
    with cat.engine.connect() as conn:
        return conn.execute(select(nodes).where(nodes.c.origin == origin)).one()


BB, COL = "bbmri-eric:ID:DE_SIM", "bbmri-eric:ID:DE_SIM:collection:main"


def live_groups(cat: Catalogue) -> int:
    """The live groups indexed, checked against the combos' sample sums (k samples each)."""
    with cat.engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(sample_groups)).scalar_one())
        total = conn.execute(
            select(func.coalesce(func.sum(combos.c.n_min), 0), func.sum(combos.c.n_max))
        ).one()
    assert (int(total[0]), int(total[1] or 0)) == (10 * n, 10 * n)
    return n


def combo_counts(cat: Catalogue) -> dict[str | None, tuple[int, int, int, int]]:
    """(n_min, n_max, d_min, d_max) of each combo that counts a group, by sample type."""
    with cat.engine.connect() as conn:
        return {
            r.sample_type: (int(r.n_min), int(r.n_max), int(r.d_min), int(r.d_max))
            for r in conn.execute(select(combos).where(combos.c.n_max > 0))
        }


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
    assert live_groups(catalogue) == 250
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
    assert live_groups(catalogue) == 50
    again = catalogue.harvest()[sim.origin]
    assert again.ok and again.added == 0
    assert own_ops(catalogue) == ["enrol", "checkpoint", "checkpoint"]


def test_withdraw_removes_group_and_erases_mirrored_content(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(12)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    sim.withdraw("sample-group", group_id(3))
    assert catalogue.harvest()[sim.origin].ok
    assert live_groups(catalogue) == 11
    with catalogue.engine.connect() as conn:
        erased = conn.execute(
            select(leaves.c.idx, leaves.c.content)
            .where(leaves.c.record_id == group_id(3))
            .order_by(leaves.c.idx)
        ).all()
        assert [c for _i, c in erased] == [None, None]
        assert (
            conn.execute(
                select(func.count())
                .select_from(sample_groups)
                .where(sample_groups.c.group_id == group_id(3))
            ).scalar_one()
            == 0
        )


def test_database_of_an_earlier_version_is_upgraded(catalogue: Catalogue, serve: Any) -> None:
    """Before `leaf_records`, `leaves` had a (node_id, kind, record_id) index: opening such a
    database fills `leaf_records` from the accepted leaves (SQLite; on PostgreSQL it is a
    view over an index of the leaves, made then), so erasure still finds them."""
    sim = NodeSimulator()
    sim.populate(12)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    with catalogue.engine.begin() as conn:
        before = conn.execute(select(leaf_records)).all()
        assert len(before) == 14  # every record leaf (biobank, collection, 12 groups)
        if conn.dialect.name == "postgresql":  # neither the view nor its index then
            conn.execute(text("DROP VIEW leaf_records"))
            conn.execute(text("DROP INDEX ix_leaves_records"))
        else:
            conn.execute(leaf_records.delete())
        conn.execute(text("DROP INDEX ix_leaves_rotations"))
        conn.execute(text("CREATE INDEX ix_leaves_record ON leaves (node_id, kind, record_id)"))
    make_engine(catalogue.engine.url.render_as_string(hide_password=False)).dispose()
    with catalogue.engine.connect() as conn:
        assert sorted(conn.execute(select(leaf_records)).all()) == sorted(before)
        names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
    assert "ix_leaves_record" not in names and "ix_leaves_rotations" in names
    sim.withdraw("sample-group", group_id(3))
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        assert conn.execute(
            select(leaves.c.content).where(leaves.c.record_id == group_id(3))
        ).scalars().all() == [None, None]


def test_withdraw_in_same_step_never_stores_content(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(5)
    sim.withdraw("sample-group", group_id(1))
    sim.contents[3] = sim.contents[3]  # node already erased it; catalogue must store null too
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    assert live_groups(catalogue) == 4
    with catalogue.engine.connect() as conn:
        contents = (
            conn.execute(select(leaves.c.content).where(leaves.c.record_id == group_id(1)))
            .scalars()
            .all()
        )
    assert contents == [None, None]


def test_republished_group_moves_between_combos(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(3)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    assert combo_counts(catalogue) == {"Plasma": (30, 30, 10, 30)}
    changed = exact_group(0, biobank=BB, collection=COL, samples=14, donors=11, sample_type="Serum")
    sim.publish("sample-group", changed)
    assert catalogue.harvest()[sim.origin].ok
    assert combo_counts(catalogue) == {"Plasma": (20, 20, 10, 20), "Serum": (14, 14, 11, 11)}


def test_combos_sum_the_intervals_of_bounded_groups(catalogue: Catalogue, serve: Any) -> None:
    """A bound {lt: B} counts as [1, B - 1]; donors: largest lower bound, sum of upper bounds."""
    sim = NodeSimulator()
    sim.populate(1)  # 10 samples of 10 donors
    sim.publish("sample-group", bounded_group(1, biobank=BB, collection=COL, samples=3, k=10))
    sim.publish("sample-group", bounded_group(2, biobank=BB, collection=COL, samples=15, k=10))
    sim.publish(
        "sample-group",
        exact_group(3, biobank=BB, collection=COL, samples=12, donors=11, sex="male"),
    )
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        got = {
            (r.sex, int(r.n_min), int(r.n_max), int(r.d_min), int(r.d_max))
            for r in conn.execute(select(combos).where(combos.c.n_max > 0))
        }
    # female: 10 + [1, 9] + [1, 19] samples; donors 10 .. 10 + 9 + 9
    assert got == {("female", 12, 38, 10, 28), ("male", 12, 12, 11, 11)}
    sim.withdraw("sample-group", group_id(0))
    assert catalogue.harvest()[sim.origin].ok
    with catalogue.engine.connect() as conn:
        female = conn.execute(select(combos).where(combos.c.sex == "female")).one()
    assert (female.n_min, female.n_max, female.d_min, female.d_max) == (2, 28, 1, 18)


@pytest.mark.parametrize(
    ("samples", "donors", "problem"),
    [(20, 9, "exact donors 9 below the node's k = 10"), (9, 12, "exact samples 9 fewer")],
)
def test_a_group_breaking_the_declared_policy_is_rejected(
    catalogue: Catalogue, serve: Any, samples: int, donors: int, problem: str
) -> None:
    """Exact donors below the node's k, or fewer exact samples than donors: kept out of the
    index, listed in the rejection report, and the harvest goes on."""
    sim = NodeSimulator()
    sim.populate(2)
    sim.publish(
        "sample-group",
        group(7, biobank=BB, collection=COL, samples=samples, donors=donors, sex="male"),
    )
    sim.populate(1, start=2)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 6
    assert live_groups(catalogue) == 3
    with catalogue.engine.connect() as conn:
        report = rejection_report(conn, node(catalogue, sim.origin).id)
    assert [(r["index"], r["id"]) for r in report] == [(4, group_id(7))]
    assert problem in str(report[0]["problems"])


def test_schema_failure_is_rejected_and_does_not_stall(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(4)
    bad = exact_group(99, biobank=BB, collection=COL, samples=10, donors=10, sample_type="Blut")
    sim.publish("sample-group", bad)
    sim.populate(2, start=4)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 9
    assert live_groups(catalogue) == 6
    with catalogue.engine.connect() as conn:
        rej = conn.execute(select(rejections)).one()
    assert rej.idx == 6 and rej.record_id == group_id(99)
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
    assert live_groups(catalogue) == n
