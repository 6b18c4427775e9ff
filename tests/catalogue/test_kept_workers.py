"""The catalogue server keeps its harvest workers between harvests (issue 19 items 3 and 4:
a pushed or scheduled harvest verifies from its first moment, not after a process start, its
imports and the schemas): `KeptWorkers`, CATALOGUE_HARVEST_KEEP_WORKERS."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import catalogue.harvest.harvester
from catalogue.app import create_app
from catalogue.context import build_context
from catalogue.harvest import Harvester, KeptWorkers
from catalogue.harvest.stream import harvest_schemas
from federation.servers import live_server
from tests.catalogue.conftest import ADMIN_TOKEN, Catalogue, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator


def schemas_compiled() -> tuple[int, int]:
    """In a worker: the schema sets made in this process, and the validators compiled."""
    made = harvest_schemas.cache_info().currsize
    return made, len(harvest_schemas()._rs) if made else 0


def _pids(pools: list[ProcessPoolExecutor]) -> list[int]:
    return [pid for pool in pools for pid in (pool._processes or {})]


def _idle(kept: KeptWorkers) -> list[ProcessPoolExecutor]:
    assert kept._idle is not None, "no idle workers kept"
    return kept._idle


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _nodes(serve: Any, prefix: str, n: int = 3) -> list[NodeSimulator]:
    sims = [NodeSimulator(f"{prefix}{i}.example/biobank-node", country="DK") for i in range(n)]
    for i, sim in enumerate(sims):
        sim.populate(20 + 10 * i, biobank=f"bbmri-eric:ID:DK_K{prefix}{i}", collection=f"c{i}")
        serve(sim)
    return sims


def _wait(check: Any, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def _kept_catalogue(
    db_url: str, home: Path, sims: list[NodeSimulator], **options: Any
) -> Iterator[tuple[Any, Any, KeptWorkers]]:
    """A catalogue with `sims` enrolled, two lanes, and two kept workers up and warm."""
    settings = make_settings(db_url, home, harvest_workers=2)
    ctx = build_context(settings)
    kept = KeptWorkers(2, **options).start()
    try:
        kept.ready()
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        yield ctx, settings, kept
    finally:
        kept.close()
        ctx.engine.dispose()


def _harvest(ctx: Any, settings: Any, kept: KeptWorkers) -> list[Any]:
    return Harvester(engine=ctx.engine, settings=settings, key=ctx.key, kept=kept).run()


def test_kept_workers_are_warm_before_their_first_job() -> None:
    kept = KeptWorkers(2).start()
    try:
        kept.ready()
        pools = _idle(kept)
        assert len(_pids(pools)) == 2
        # what the floor prepares before its clock starts, each worker has before its job
        seen = [pool.submit(schemas_compiled).result() for pool in pools]
        assert all(made == 1 and validators >= 3 for made, validators in seen), seen
        # a worker spawned per harvest has none of it yet
        with catalogue.harvest.harvester.worker_pool(1) as cold:
            assert cold.submit(schemas_compiled).result() == (0, 0)
    finally:
        kept.close()


def test_harvests_reuse_the_kept_processes_and_store_what_a_cold_harvest_stores(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    sims = _nodes(serve, "keep")
    with _kept_catalogue(db_url, tmp_path / "kept", sims) as (ctx, settings, kept):
        before = _pids(_idle(kept))
        first = _harvest(ctx, settings, kept)
        assert [(o.ok, o.added, o.error) for o in first] == [
            (True, 22, None),
            (True, 32, None),
            (True, 42, None),
        ]
        assert _pids(_idle(kept)) == before  # handed back, the same processes
        sims[1].populate(7, biobank="bbmri-eric:ID:DK_Kkeep1", collection="c1", start=30)
        second = {o.origin: o for o in _harvest(ctx, settings, kept)}
        assert second[sims[1].origin].added == 7 and all(o.ok for o in second.values())
        assert _pids(_idle(kept)) == before
        kept_dump = dump(ctx.engine)
    assert not any(_alive(pid) for pid in before)  # close ends them
    # the same nodes harvested in this process alone (SQLite) store the same groups
    cold = build_context(make_settings(f"sqlite:///{tmp_path / 'cold.db'}", tmp_path / "cold"))
    try:
        cat = Catalogue(cold)
        for sim in sims:
            cat.enrol(sim, sim.url)
        assert all(o.ok for o in cat.harvest().values())
        assert dump(cold.engine)["groups"] == kept_dump["groups"]
    finally:
        cold.engine.dispose()
    assert len(kept_dump["groups"]) == 20 + 37 + 40


def test_a_worker_that_died_while_idle_is_replaced_before_the_next_harvest(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    sims = _nodes(serve, "died", n=2)
    with _kept_catalogue(db_url, tmp_path / "h", sims) as (ctx, settings, kept):
        victim, other = _pids(_idle(kept))
        os.kill(victim, signal.SIGKILL)  # out of memory, an operator's kill
        _wait(lambda: catalogue.harvest.harvester._broken(_idle(kept)[0]), "the pool to notice")
        outcomes = _harvest(ctx, settings, kept)
        assert [(o.ok, o.added, o.error) for o in outcomes] == [(True, 22, None), (True, 32, None)]
        now = _pids(_idle(kept))
        assert other in now and victim not in now and len(now) == 2


def test_a_harvest_while_the_kept_workers_are_taken_starts_its_own(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    sims = _nodes(serve, "busy", n=2)
    with _kept_catalogue(db_url, tmp_path / "h", sims) as (ctx, settings, kept):
        held = kept.take()  # another harvest holds them
        assert held is not None and kept.take() is None
        assert all(o.ok for o in _harvest(ctx, settings, kept))
        assert kept._idle is None and kept._taken  # not handed to this harvest, nor back
        assert all(_alive(pid) for pid in _pids(held))
        kept.give_back(held)
        assert _pids(_idle(kept)) == _pids(held)


def test_a_lane_that_retires_its_worker_gets_a_warm_one_that_is_kept(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalogue.harvest.harvester, "FRESH_WORKER_STEP", 1)  # every step big
    sims = _nodes(serve, "retire")
    with _kept_catalogue(db_url, tmp_path / "h", sims) as (ctx, settings, kept):
        before = _pids(_idle(kept))
        assert all(o.ok for o in _harvest(ctx, settings, kept))
        _replaced_by_warm_workers(kept, before)


def test_the_server_keeps_its_workers_between_harvests_and_ends_them_when_it_stops(
    tmp_path: Path, serve: Any
) -> None:
    sims = _nodes(serve, "srv", n=2)
    settings = make_settings(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "h", harvest_workers=2)
    app = create_app(settings)
    ctx = app.state.ctx
    assert isinstance(ctx.workers, KeptWorkers) and ctx.workers._idle is None  # not yet spawned
    cat = Catalogue(ctx)
    for sim in sims:
        cat.enrol(sim, sim.url)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        first = client.post("/v1/admin/harvest", headers=auth)
        assert first.status_code == 200, first.text
        assert [n["added"] for n in first.json()["nodes"]] == [22, 32]
        pids = _pids(_idle(ctx.workers))
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        sims[0].populate(3, biobank="bbmri-eric:ID:DK_Ksrv0", collection="c0", start=20)
        second = client.post("/v1/admin/harvest", headers=auth)
        assert [n["added"] for n in second.json()["nodes"]] == [3, 0]
        assert _pids(_idle(ctx.workers)) == pids
    _wait(lambda: not any(_alive(p) for p in pids), "the kept workers to end with the server")


def test_keeping_workers_can_be_switched_off(tmp_path: Path) -> None:
    off = make_settings(
        f"sqlite:///{tmp_path / 'c.db'}",
        tmp_path / "h",
        harvest_workers=2,
        harvest_keep_workers=False,
    )
    assert create_app(off).state.ctx.workers is None
    none = make_settings(f"sqlite:///{tmp_path / 'd.db'}", tmp_path / "i", harvest_workers=0)
    assert create_app(none).state.ctx.workers is None


def test_a_worker_holding_more_than_recycle_mb_after_a_harvest_is_replaced(
    tmp_path: Path, serve: Any
) -> None:
    """After a big step a worker keeps what its heap cannot give back; handed back over
    `recycle_mb`, it is ended and a fresh warm worker takes its place (at 0 MB: every one)."""
    sims = _nodes(serve, "recy", n=2)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with _kept_catalogue(url, tmp_path / "h", sims, recycle_mb=0) as (ctx, settings, kept):
        before = _pids(_idle(kept))
        outcomes = _harvest(ctx, settings, kept)
        assert [(o.ok, o.added) for o in outcomes] == [(True, 22), (True, 32)]
        _replaced_by_warm_workers(kept, before)


def _replaced_by_warm_workers(kept: KeptWorkers, before: list[int]) -> None:
    """Every worker of `before` ended; as many new ones kept, and warm."""
    kept.ready()
    after = _pids(_idle(kept))
    assert len(after) == 2 and not set(after) & set(before)
    assert not any(_alive(pid) for pid in before)
    seen = [pool.submit(schemas_compiled).result() for pool in _idle(kept)]
    assert all(made == 1 for made, _ in seen), seen  # warmed, not left cold
