"""The search index refreshed with only the combos a harvest changed equals one loaded afresh."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from catalogue.cluster import ChangeListener
from catalogue.db import make_engine, write_tx
from catalogue.models import combos
from catalogue.ownlog import append
from catalogue.search import CubeCache, Vocabulary, parse_filters, search
from tests.catalogue.conftest import Catalogue, database
from tests.catalogue.simulator import NodeSimulator, bounded_group, group_id

BB, COL = "bbmri-eric:ID:DE_R", "bbmri-eric:ID:DE_R:collection:main"
QUERIES: list[dict[str, list[str]]] = [
    {},
    {"sample_type": ["Serum"]},
    {"sex": ["female"], "country": ["DE", "FR"]},
    {"icd10": ["C50"]},
    {"duo": ["DUO:0000006"]},
]


def _results(cat: Catalogue, cache: CubeCache) -> list[dict[str, Any]]:
    vocab = Vocabulary.default()
    with cat.engine.connect() as conn:
        return [search(conn, parse_filters(q, vocab), vocab, 3600.0, cache) for q in QUERIES]


def test_refresh_reads_only_what_changed_and_equals_a_full_load(
    catalogue: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(40, biobank=BB, collection=COL)
    sim.populate(15, start=100, biobank=BB, collection=COL, sample_type="Serum", sex="male")
    sim.populate(5, start=500, biobank=BB + "2", collection=COL + "2", sex="other")  # untouched
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].ok
    cache = CubeCache()
    first = _results(catalogue, cache)
    assert cache.last is not None and cache.last.full
    assert first[0]["total"] == {"min": 60, "max": 60}  # groups of 1 sample (k = 1)

    # a step that adds groups to a known combo (one bounded) and a new one, withdraws every
    # group of another (its combo counts 0), and moves the biobank to another country
    sim.populate(3, start=40, biobank=BB, collection=COL)
    sim.publish("sample-group", bounded_group(43, biobank=BB, collection=COL, samples=3, k=5))
    sim.populate(
        4,
        start=300,
        biobank=BB,
        collection=COL,
        diagnoses=[{"system": "ICD-10", "code": "E11.9"}],
        use_conditions=["DUO:0000006"],
    )
    for n in range(100, 115):
        sim.withdraw("sample-group", group_id(n))
    biobank = next(c for c in sim.contents if c and c.get("id") == BB)
    sim.publish("biobank", {**biobank, "country": "FR"})
    assert catalogue.harvest()[sim.origin].ok

    refreshed = _results(catalogue, cache)
    fresh = _results(catalogue, CubeCache())
    assert refreshed == fresh
    assert refreshed[0]["total"] == {"min": 53, "max": 56}  # 52 exact and one of [1, 4]
    assert refreshed[0]["donors"] == {"min": 1, "max": 56}
    assert refreshed[1]["total"] == {"min": 0, "max": 0}, "the withdrawn Serum combo counts nowhere"
    assert [c["code"] for c in refreshed[2]["counts"]["country"]] == ["FR"]
    assert cache.last is not None and not cache.last.full
    with catalogue.engine.connect() as conn:
        every = conn.execute(select(func.count()).select_from(combos)).scalar_one()
    assert 0 < cache.last.combos < every, "the refresh read only the combos the step changed"


def test_an_old_database_gains_the_changed_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:  # as an earlier version made it
        conn.execute(text("DROP INDEX ix_combos_changed"))
        conn.execute(text("ALTER TABLE combos DROP COLUMN changed"))
    engine.dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "changed" in {c["name"] for c in inspect(conn).get_columns("combos")}
        assert "ix_combos_changed" in {ix["name"] for ix in inspect(conn).get_indexes("combos")}
    engine.dispose()


@pytest.mark.postgres
def test_the_listener_refreshes_on_connecting_and_on_each_commit(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from catalogue.context import build_context
    from tests.catalogue.conftest import make_settings

    with database("postgres", tmp_path, request) as url:
        ctx = build_context(make_settings(url, tmp_path / "home"))
        heard: list[int] = []
        got = threading.Event()

        def changed() -> None:
            heard.append(len(heard))
            got.set()

        listener = ChangeListener(url, changed).start()
        try:
            assert listener.connected.wait(10), "the listener did not connect"
            assert got.wait(10), "no refresh after connecting"
            with write_tx(ctx.engine) as conn:
                append(conn, ctx.key, "retire", node="nobody.example/biobank-node")
            deadline = time.monotonic() + 10
            while len(heard) < 2 and time.monotonic() < deadline:
                got.wait(0.1)
            assert len(heard) == 2, "one refresh on connecting, one for the commit"
        finally:
            listener.stop()
            ctx.engine.dispose()
