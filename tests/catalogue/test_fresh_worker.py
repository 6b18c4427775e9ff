"""A worker lane retires its process after a big final commit (issue 19 item 4: the heap a
big final commit leaves behind is not carried into the next node's verification)."""

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
    db_url: str, home: Path, sims: list[NodeSimulator]
) -> tuple[list[Any], set[int], dict[str, Any]]:
    """Harvest `sims` with two worker lanes; every child process seen meanwhile."""
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
            outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run()
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


def test_a_worker_lane_takes_a_fresh_process_after_a_big_final_commit(
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
    retired = [r for r in caplog.records if "worker retired" in r.getMessage()]
    assert retired  # at least one final commit was followed by more work for its lane
    # two lanes, and a new process for each retired one (a resource tracker may add one)
    assert len(workers) >= 2 + len(retired), (workers, len(retired))
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
