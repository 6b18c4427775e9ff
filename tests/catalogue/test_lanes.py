"""Harvest lanes: worker processes, and this process as one of them for one-shot harvests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import catalogue.harvest.harvester
from catalogue.context import build_context
from catalogue.harvest import Harvester
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator


@pytest.mark.parametrize("inline", [False, True], ids=["processes", "inline"])
def test_lanes_harvest_every_node_once(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    sims = [NodeSimulator(f"n{i}.example/biobank-node") for i in range(3)]
    for i, sim in enumerate(sims):
        sim.populate(40 * (i + 1))
        serve(sim)
    in_process: list[str] = []
    real = catalogue.harvest.harvester.guarded_job

    async def spy(job: Any, *args: Any, **kwargs: Any) -> Any:  # jobs of this process only
        in_process.append(job.origin)
        return await real(job, *args, **kwargs)

    monkeypatch.setattr(catalogue.harvest.harvester, "guarded_job", spy)
    settings = make_settings(db_url, tmp_path / "home", harvest_workers=2)
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key, inline=inline).run()
        assert [o.origin for o in outcomes] == sorted(s.origin for s in sims)
        assert [(o.ok, o.added) for o in outcomes] == [(True, 42), (True, 82), (True, 122)]
        # each page was asked for once: no node was harvested twice
        assert all(len(s.served) == len(set(s.served)) for s in sims)
        if inline:  # one lane is this process, the other a worker process
            assert 1 <= len(in_process) <= 2 and len(set(in_process)) == len(in_process)
        else:
            assert in_process == []
        harvested = dump(ctx.engine)
    finally:
        ctx.engine.dispose()
    assert harvested["groups"] and len(harvested["groups"]) == 240


def test_one_worker_process_harvests_node_after_node_completely(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    """A worker is reused for the next node (no fresh spawn per node): each node's step is
    still stored, indexed and accepted whole, with nothing carried from the node before."""
    sims = [NodeSimulator(f"w{i}.example/biobank-node", country="DE") for i in range(3)]
    for i, sim in enumerate(sims):
        sim.populate(30 + 10 * i, biobank=f"bbmri-eric:ID:DE_W{i}", collection=f"c{i}")
        serve(sim)
    settings = make_settings(db_url, tmp_path / "home", harvest_workers=1)
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run()
        assert [(o.ok, o.added, o.error) for o in outcomes] == [
            (True, 32, None),
            (True, 42, None),
            (True, 52, None),
        ]
        harvested = dump(ctx.engine)
    finally:
        ctx.engine.dispose()
    assert len(harvested["groups"]) == 30 + 40 + 50


def test_inline_lane_takes_a_fresh_engine_per_job(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each job (a node's verification, or a final commit) the lane drops its engine:
    what that engine cached during a final commit (compiled statements) would keep arenas
    of the step's freed memory resident (bench/README.md "Memory")."""
    sims = [NodeSimulator(f"f{i}.example/biobank-node") for i in range(2)]
    for i, sim in enumerate(sims):
        sim.populate(30 * (i + 1))
        serve(sim)
    engines: list[Any] = []  # kept alive, so that no two share an id by reuse
    real_job = catalogue.harvest.harvester.guarded_job
    real_final = catalogue.harvest.harvester.guarded_final

    async def spy_job(job: Any, client: Any, writer: Any, *args: Any, **kwargs: Any) -> Any:
        engines.append(writer.engine)
        return await real_job(job, client, writer, *args, **kwargs)

    async def spy_final(final: Any, writer: Any, *args: Any) -> Any:
        engines.append(writer.engine)
        return await real_final(final, writer, *args)

    monkeypatch.setattr(catalogue.harvest.harvester, "guarded_job", spy_job)
    monkeypatch.setattr(catalogue.harvest.harvester, "guarded_final", spy_final)
    settings = make_settings(db_url, tmp_path / "home", harvest_workers=1)
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key, inline=True).run()
        assert [(o.ok, o.added) for o in outcomes] == [(True, 32), (True, 62)]
        harvested = dump(ctx.engine)
    finally:
        ctx.engine.dispose()
    # two nodes, each verified then committed in this process: four jobs, four engines
    assert len(engines) == 4
    assert len({id(e) for e in engines}) == 4
    assert all(e is not ctx.engine for e in engines)
    assert harvested["groups"] and len(harvested["groups"]) == 90
