"""A combo's country: its biobank record's country, else the node's; new combos are written
with it (and with their counts and stamp) once, and existing ones follow a changed record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from catalogue.models import combos
from tests.catalogue.conftest import Catalogue
from tests.catalogue.simulator import NodeSimulator, exact_group

BB, COL = "bbmri-eric:ID:DE_C", "bbmri-eric:ID:DE_C:collection:main"
AT, AT_COL = "bbmri-eric:ID:AT_C", "bbmri-eric:ID:AT_C:collection:main"
NOREC = "bbmri-eric:ID:XX_NO_RECORD"  # groups name it, no biobank record is published


def _biobank(bid: str, country: str) -> dict[str, Any]:
    return {
        "id": bid,
        "name": f"Biobank {bid}",
        "country": country,
        "contact": {"email": "biobank@example.org"},
        "description": "A simulated biobank",
    }


def _combos(cat: Catalogue) -> dict[str, list[tuple[Any, ...]]]:
    """biobank -> [(sex, country, samples at most, changed)] of its combos."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with cat.engine.connect() as conn:
        for r in conn.execute(select(combos).order_by(combos.c.sex)):
            out.setdefault(r.biobank, []).append((r.sex, r.country, int(r.n_max), r.changed))
    return out


def test_combos_take_their_biobank_records_country_and_follow_its_change(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator("country.example/biobank-node", country="DE", k=5)
    sim.populate(0, biobank=BB, collection=COL)  # a biobank record stating DE
    sim.publish("biobank", _biobank(AT, "AT"))
    for n, (bid, col) in enumerate([(BB, COL), (AT, AT_COL), (NOREC, f"{NOREC}:main")]):
        sim.publish(
            "sample-group",
            exact_group(n, biobank=bid, collection=col, samples=7, donors=6, sex="female"),
        )
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    first = _combos(catalogue)
    # written once with country, counts and stamp: none waits for a later update
    assert {b: [(c[1], c[2]) for c in cs] for b, cs in first.items()} == {
        BB: [("DE", 7)],
        AT: [("AT", 7)],
        NOREC: [("DE", 7)],  # no record: the node's country
    }
    stamp1 = {c[3] for cs in first.values() for c in cs}
    assert len(stamp1) == 1 and None not in stamp1

    # the AT record now says CH; a new group in BB: only those combos are stamped anew
    sim.publish("biobank", _biobank(AT, "CH"))
    sim.publish(
        "sample-group",
        exact_group(9, biobank=BB, collection=COL, samples=8, donors=6, sex="male"),
    )
    assert catalogue.harvest()[sim.origin].ok
    second = _combos(catalogue)
    (stamp2,) = {second[AT][0][3]}
    assert stamp2 > min(stamp1)
    assert second[AT] == [("female", "CH", 7, stamp2)]
    assert second[BB] == [("female", "DE", 7, min(stamp1)), ("male", "DE", 8, stamp2)]
    assert second[NOREC] == first[NOREC]  # unchanged, not stamped again

    # the AT record is withdrawn: its combos fall back to the node's country
    sim.withdraw("biobank", AT)
    assert catalogue.harvest()[sim.origin].ok
    third = _combos(catalogue)
    assert [(c[1], c[2]) for c in third[AT]] == [("DE", 7)] and third[AT][0][3] > stamp2
    assert third[BB] == second[BB] and third[NOREC] == first[NOREC]
