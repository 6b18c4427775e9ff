"""A step's index within memory budgets: beyond `PREPARE_BUDGET` leaves the rest is keyed
inside the write transaction batch by batch, beyond `NEW_COMBO_BUDGET` new combos are
written at once and counted at the end by delta; the index is the same either way."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import catalogue.harvest.index
from catalogue.context import build_context
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator, bounded_group, exact_group

BB, COL = "bbmri-eric:ID:DE_B", "bbmri-eric:ID:DE_B:collection:main"


def _node() -> NodeSimulator:
    sim = NodeSimulator("budget.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=BB, collection=COL)
    for n in range(260):  # many combos (by age), some shared (by sex), exact and bounded
        age = {"min": 5 * (n % 20), "max": 5 * (n % 20) + 4}
        sex = ("female", "male", "other")[n % 3]
        group = (
            exact_group(n, biobank=BB, collection=COL, samples=6 + n, donors=5, sex=sex, age=age)
            if n % 4
            else bounded_group(n, biobank=BB, collection=COL, samples=3, k=5, sex=sex, age=age)
        )
        sim.publish("sample-group", group)
    return sim


def _second_step(sim: NodeSimulator) -> None:
    """Withdraw some groups, publish others, change the biobank's country."""
    for n in range(0, 40, 3):
        sim.withdraw(
            "sample-group", exact_group(n, biobank=BB, collection=COL, samples=1, donors=1)["id"]
        )
    for n in range(300, 380):
        sim.publish(
            "sample-group",
            exact_group(n, biobank=BB, collection=COL, samples=9, donors=7, sex="unknown"),
        )
    sim.publish(
        "biobank",
        {
            "id": BB,
            "name": "Renamed",
            "country": "AT",
            "contact": {"email": "biobank@example.org"},
        },
    )


def test_a_step_beyond_the_memory_budgets_indexes_what_one_within_them_does(
    db_url: str,
    tmp_path: Path,
    serve: Any,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = _node()
    serve(sim)
    kind = "postgres" if "postgresql" in db_url else "sqlite"
    dumps: dict[str, list[dict[str, Any]]] = {"within": [], "beyond": []}
    with ExitStack() as stack:
        cats = {}
        for name in dumps:
            (tmp_path / name).mkdir()
            url = stack.enter_context(database(kind, tmp_path / name, request))
            ctx = build_context(make_settings(url, tmp_path / name / "home"))
            stack.callback(ctx.engine.dispose)
            cats[name] = Catalogue(ctx)
            cats[name].enrol(sim, sim.url)

        def harvest_both() -> None:
            for name, cat in cats.items():
                with monkeypatch.context() as m:
                    if name == "beyond":
                        m.setattr(catalogue.harvest.index, "BATCH", 30)
                        m.setattr(catalogue.harvest.index, "PREPARE_BUDGET", 60)
                        m.setattr(catalogue.harvest.index, "NEW_COMBO_BUDGET", 10)
                        # SQLite: new combos and their gains written three rows at a time
                        m.setattr(catalogue.harvest.index, "INSERT_SLICE", 3)
                    assert cat.harvest()[sim.origin].ok
                dumps[name].append(dump(cat.engine))

        harvest_both()
        _second_step(sim)
        harvest_both()
    got = dumps["beyond"]
    assert got[0]["combos"] and got[1]["combos"] != got[0]["combos"]
    assert {c[2] for c in got[1]["combos"]} == {"AT"}  # the changed record's country
    assert got == dumps["within"]
