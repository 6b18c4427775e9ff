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
