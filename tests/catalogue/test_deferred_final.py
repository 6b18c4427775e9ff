"""Deferred final commits: a lane verifies and stages a step whole and leaves its final commit
(index, accept) to whichever lane is free. Nothing of the step is visible before that commit,
the commit indexes what a one-lane harvest indexes, and a step staged whole whose final
commit never ran (killed) is accepted by the next harvest without fetching its leaves again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from catalogue.context import build_context
from catalogue.harvest import Harvester
from catalogue.harvest.harvester import guarded_final
from catalogue.harvest.stream import Writer
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator
from tests.catalogue.test_streaming import CHUNK, facts

SIZE = 3 * CHUNK + 50  # three stored chunks and a last one


@pytest.fixture
def chunked(db_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    settings = make_settings(
        db_url, tmp_path / "home", page_size=50, harvest_chunk=CHUNK, harvest_chunk_growth=1
    )  # chunks of exactly CHUNK entries (growth: test_chunk_growth.py)
    ctx = build_context(settings)
    try:
        yield Catalogue(ctx)
    finally:
        ctx.engine.dispose()


def _clean_dump(sim: NodeSimulator, tmp_path: Path, db_url: str, request: Any) -> dict[str, Any]:
    kind = "postgres" if "postgresql" in db_url else "sqlite"
    (tmp_path / "clean").mkdir()
    with database(kind, tmp_path / "clean", request) as clean_url:
        ctx = build_context(
            make_settings(clean_url, tmp_path / "clean-home", page_size=50, harvest_chunk=CHUNK)
        )
        try:
            clean = Catalogue(ctx)
            clean.enrol(sim, sim.url)
            assert clean.harvest()[sim.origin].ok
            return dump(clean.engine)
        finally:
            ctx.engine.dispose()


def test_deferred_final_commit_keeps_a_staged_step_invisible_then_indexes_it_whole(
    chunked: Catalogue, serve: Any, db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sim = NodeSimulator()
    sim.populate(SIZE - 2)
    serve(sim)
    chunked.enrol(sim, sim.url)
    staged = chunked.stage_whole(sim.origin)
    assert staged.error is None and staged.final is not None and staged.added == SIZE
    # verified (root matched) and staged whole, yet nothing accepted, indexed or mirrored
    seen = facts(chunked, sim.origin)
    assert (seen["tree_size"], seen["staged"], seen["stored"]) == (0, SIZE, SIZE)
    assert (seen["live"], seen["mirrored"]) == (0, 0)

    done = asyncio.run(guarded_final(staged.final, Writer(chunked.engine, chunked.ctx.key), 20.0))
    assert done.error is None and done.added == SIZE
    after = facts(chunked, sim.origin)
    assert (after["tree_size"], after["staged"], after["live"]) == (SIZE, None, SIZE - 2)
    assert dump(chunked.engine) == _clean_dump(sim, tmp_path, db_url, request)


def test_step_staged_whole_without_its_final_commit_is_accepted_next_time_without_fetching(
    chunked: Catalogue, serve: Any
) -> None:
    sim = NodeSimulator()
    sim.populate(SIZE - 2)
    serve(sim)
    chunked.enrol(sim, sim.url)
    assert chunked.stage_whole(sim.origin).final is not None  # then "killed"
    sim.served.clear()
    out = chunked.harvest()[sim.origin]
    assert out.ok and out.added == SIZE and out.size == SIZE
    assert sim.served == []  # no entries page asked for again: only the checkpoint
    assert facts(chunked, sim.origin)["live"] == SIZE - 2


def test_deferred_final_commit_refused_when_the_node_moved_meanwhile(
    chunked: Catalogue, serve: Any
) -> None:
    """The final commit checks the node's position again: a step staged by one harvest and
    accepted by another before this final commit ran is not indexed twice."""
    sim = NodeSimulator()
    sim.populate(SIZE - 2)
    serve(sim)
    chunked.enrol(sim, sim.url)
    staged = chunked.stage_whole(sim.origin)
    assert chunked.harvest()[sim.origin].ok  # another harvest accepts the staged step
    before = dump(chunked.engine)
    late = asyncio.run(guarded_final(staged.final, Writer(chunked.engine, chunked.ctx.key), 20.0))
    assert late.error is not None and "changed by another harvester" in late.error
    assert dump(chunked.engine) == before


@pytest.mark.parametrize("inline", [False, True], ids=["processes", "inline"])
def test_lanes_with_deferred_final_commits_index_what_one_lane_indexes(
    db_url: str, tmp_path: Path, serve: Any, request: pytest.FixtureRequest, inline: bool
) -> None:
    sims = [NodeSimulator(f"d{i}.example/biobank-node", country="DE") for i in range(5)]
    for i, sim in enumerate(sims):
        sim.populate(60 + 10 * i)
        serve(sim)
    dumps = []
    for workers, lane_inline in ((2, inline), (0, False)):
        home = tmp_path / f"w{workers}"
        home.mkdir()
        kind = "postgres" if "postgresql" in db_url else "sqlite"
        with database(kind, home, request) as url:
            settings = make_settings(url, home / "home", harvest_workers=workers, harvest_chunk=20)
            ctx = build_context(settings)
            try:
                cat = Catalogue(ctx)
                for sim in sims:
                    cat.enrol(sim, sim.url)
                outcomes = Harvester(
                    engine=ctx.engine, settings=settings, key=ctx.key, inline=lane_inline
                ).run()
                assert [(o.ok, o.added) for o in outcomes] == [
                    (True, 62 + 10 * i) for i in range(5)
                ]
                dumps.append(dump(ctx.engine))
            finally:
                ctx.engine.dispose()
    # the catalogue's own log may list the nodes' checkpoints in another order; nothing else
    for d in dumps:
        d["own_log"] = sorted(orjson.dumps({**e, "index": 0}) for e in d["own_log"])
    assert dumps[0] == dumps[1]
