"""A big step's final commit runs in a fresh worker process that ends after it (issue 19
item 4: a final commit neither starts on the heap a verification left nor leaves its own
under the next node's), and a one-shot harvest's own lane leaves such commits to the
worker lanes."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import catalogue.harvest.harvester
from catalogue.context import build_context
from catalogue.harvest import Harvester
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            found.update(
                int(p) for p in Path(f"/proc/self/task/{task}/children").read_text().split()
            )
        except OSError:
            continue
    return found


def _harvest_watching_workers(
    db_url: str, home: Path, sims: list[NodeSimulator], *, inline: bool = False
) -> tuple[list[Any], set[int], dict[str, Any]]:
    """Harvest `sims` with two lanes; every child process seen meanwhile."""
    settings = make_settings(db_url, home, harvest_workers=2)
    ctx = build_context(settings)
    before = _children()
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(_children())
            stop.wait(0.005)

    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            outcomes = Harvester(
                engine=ctx.engine, settings=settings, key=ctx.key, inline=inline
            ).run()
        finally:
            stop.set()
            watcher.join()
        harvested = dump(ctx.engine)
    finally:
        ctx.engine.dispose()
    return outcomes, seen - before, harvested


def _nodes(serve: Any, prefix: str) -> list[NodeSimulator]:
    sims = [NodeSimulator(f"{prefix}{i}.example/biobank-node", country="DE") for i in range(4)]
    for i, sim in enumerate(sims):
        sim.populate(30 + 10 * i, biobank=f"bbmri-eric:ID:DE_F{prefix}{i}", collection=f"c{i}")
        serve(sim)
    return sims


def test_a_big_final_commit_runs_in_a_fresh_worker_process_that_ends_after_it(
    db_url: str,
    tmp_path: Path,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(catalogue.harvest.harvester, "FRESH_WORKER_STEP", 1)  # every step big
    sims = _nodes(serve, "big")
    with caplog.at_level(logging.INFO, logger="catalogue.harvest.harvester"):
        outcomes, workers, harvested = _harvest_watching_workers(db_url, tmp_path / "h", sims)
    assert [(o.ok, o.added, o.error) for o in outcomes] == [
        (True, 32, None),
        (True, 42, None),
        (True, 52, None),
        (True, 62, None),
    ]
    retired = [r.getMessage() for r in caplog.records if "worker retired" in r.getMessage()]
    # each of the four final commits ends its process; each one after a verification in the
    # same process starts on a fresh one too
    assert sum("retired after" in m for m in retired) == 4, retired
    assert sum("retired before" in m for m in retired) >= 1, retired
    # the two lanes' first processes, and a new one for each final commit retired before
    # (a pool retired after a lane's last commit never starts its process)
    before = sum("retired before" in m for m in retired)
    assert len(workers) >= 2 + before, (workers, retired)
    # each node's step still stored, indexed and accepted whole
    assert len(harvested["groups"]) == 30 + 40 + 50 + 60


def test_a_worker_lane_keeps_its_process_after_a_small_final_commit(
    db_url: str,
    tmp_path: Path,
    serve: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert catalogue.harvest.harvester.FRESH_WORKER_STEP >= 100_000  # a 1M node's step: kept
    sims = _nodes(serve, "small")
    with caplog.at_level(logging.INFO, logger="catalogue.harvest.harvester"):
        outcomes, workers, harvested = _harvest_watching_workers(db_url, tmp_path / "h", sims)
    assert all(o.ok for o in outcomes), outcomes
    assert not [r for r in caplog.records if "worker retired" in r.getMessage()]
    assert len(workers) <= 3, workers  # the two lanes' processes (and a resource tracker)
    assert len(harvested["groups"]) == 30 + 40 + 50 + 60


def test_a_one_shot_harvest_leaves_big_final_commits_to_the_worker_lane(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process as a lane: it only verifies while a worker lane runs (at most the last
    node's final commit is its own, if the worker lane had ended by then)."""
    monkeypatch.setattr(catalogue.harvest.harvester, "FRESH_WORKER_STEP", 1)
    in_process: list[str] = []
    real = catalogue.harvest.harvester.guarded_final

    async def spy(final: Any, *args: Any, **kwargs: Any) -> Any:  # this process's only
        in_process.append(final.position["origin"])
        return await real(final, *args, **kwargs)

    monkeypatch.setattr(catalogue.harvest.harvester, "guarded_final", spy)
    sims = _nodes(serve, "inl")
    outcomes, _, harvested = _harvest_watching_workers(db_url, tmp_path / "h", sims, inline=True)
    assert [(o.ok, o.added) for o in outcomes] == [(True, 32), (True, 42), (True, 52), (True, 62)]
    assert len(in_process) <= 1, in_process
    assert len(harvested["groups"]) == 30 + 40 + 50 + 60
