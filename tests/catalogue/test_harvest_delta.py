"""Combo counts kept by delta (combos that only gained groups) equal a recount from the groups,
and the step keyed before its write transaction indexes what one keyed inside it would."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator, bounded_group, exact_group

BB, COL = "bbmri-eric:ID:DE_D", "bbmri-eric:ID:DE_D:collection:main"
RECOUNT = """SELECT c.id, c.n_min, c.n_max, c.d_min, c.d_max,
  COALESCE(SUM(g.s_min), 0), COALESCE(SUM(g.s_max), 0),
  COALESCE(MAX(g.d_min), 0), COALESCE(SUM(g.d_max), 0)
FROM combos c LEFT JOIN sample_groups g ON g.combo_id = c.id
GROUP BY c.id, c.n_min, c.n_max, c.d_min, c.d_max ORDER BY c.id"""


def _combos(cat: Catalogue) -> list[tuple[Any, ...]]:
    with cat.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(RECOUNT))]


def _assert_counts_equal_a_recount(cat: Catalogue) -> list[tuple[Any, ...]]:
    rows = _combos(cat)
    assert rows
    for cid, *kept, n_min, n_max, d_min, d_max in rows:
        assert kept == [n_min, n_max, d_min, d_max], f"combo {cid}"
    return rows


def test_combo_counts_kept_by_delta_equal_a_recount_from_the_groups(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator("delta.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=BB, collection=COL)
    for n in range(12):  # two combos (by sex), exact and bounded groups in each
        sex = ("female", "male")[n % 2]
        if n % 3:
            sim.publish(
                "sample-group",
                exact_group(
                    n, biobank=BB, collection=COL, samples=5 + n, donors=5 + n % 4, sex=sex
                ),
            )
        else:
            sim.publish(
                "sample-group",
                bounded_group(n, biobank=BB, collection=COL, samples=3, k=5, sex=sex),
            )
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    first = _assert_counts_equal_a_recount(catalogue)
    # female: bounded groups 0, 6 ([1, 4] samples, [1, 4] donors each), exact 2, 4, 8, 10
    female = {"min": 2 + 7 + 9 + 13 + 15, "max": 8 + 7 + 9 + 13 + 15}
    assert {(r[1], r[2]) for r in first} >= {(female["min"], female["max"])}

    # a second step: the female combo only gains (delta, with a larger donor lower bound),
    # the male one loses a group and gains another (recounted), a third combo is new
    sim.publish(
        "sample-group",
        exact_group(20, biobank=BB, collection=COL, samples=30, donors=25, sex="female"),
    )
    sim.withdraw(
        "sample-group", exact_group(1, biobank=BB, collection=COL, samples=1, donors=1)["id"]
    )
    sim.publish(
        "sample-group",
        exact_group(21, biobank=BB, collection=COL, samples=6, donors=6, sex="male"),
    )
    sim.publish(
        "sample-group",
        exact_group(22, biobank=BB, collection=COL, samples=7, donors=7, sex="other"),
    )
    assert catalogue.harvest()[sim.origin].ok
    second = {r[0]: r[1:5] for r in _assert_counts_equal_a_recount(catalogue)}
    before = {r[0]: r[1:5] for r in first}
    gained = [cid for cid in before if second[cid][0] == before[cid][0] + 30]
    assert len(gained) == 1, "the female combo gained the 30 samples of group 20"
    assert second[gained[0]][2] == 25, "its donor lower bound rose to the new group's"
    assert len(second) == len(before) + 1, "one new combo (sex other)"
