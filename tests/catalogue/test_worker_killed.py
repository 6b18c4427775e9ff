"""A harvest worker process killed midway (the kernel's OOM killer, an operator's kill -9).

The harvester's shared runner (`Harvester._guarded`) turns a crashed worker into a failed
outcome for the nodes it took: the run still ends and records every node, nothing of a
half-harvested step is accepted, and the next harvest completes every node from where the
staging left off.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.context import build_context
from catalogue.harvest import Harvester
from catalogue.models import nodes
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.simulator import NodeSimulator

pytestmark = pytest.mark.slow


def _workers() -> set[int]:
    """This process's children that are spawned multiprocessing workers (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmd:  # not the resource tracker
                found.add(int(pid))
    return found


def test_worker_killed_midway_fails_its_nodes_alone_and_the_next_harvest_completes(
    db_url: str, tmp_path: Path, serve: Any
) -> None:
    sims = [NodeSimulator(f"slow{i}.example/biobank-node") for i in range(2)]
    for sim in sims:
        sim.populate(2000)
        sim.page_delay = 0.1  # 20 pages each: both lanes are still busy when the worker dies
        serve(sim)
    settings = make_settings(db_url, tmp_path / "home", harvest_workers=2, harvest_chunk=400)
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        before = _workers()
        outcomes: list[Any] = []
        # two lanes: one worker process and this process, like a one-shot `catalogue harvest`
        run = threading.Thread(
            target=lambda: outcomes.extend(
                Harvester(engine=ctx.engine, settings=settings, key=ctx.key, inline=True).run()
            )
        )
        run.start()
        deadline = time.monotonic() + 60
        while min(len(s.served) for s in sims) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        spawned = _workers() - before
        assert len(spawned) == 1, spawned
        os.kill(spawned.pop(), signal.SIGKILL)
        run.join(120)
        assert not run.is_alive()

        # the run ended and recorded both nodes: the killed worker's node failed with a named
        # internal error, the other lane's node was harvested whole
        assert sorted(o.origin for o in outcomes) == sorted(s.origin for s in sims)
        failed = [o for o in outcomes if not o.ok]
        assert len(failed) == 1 and "internal error" in (failed[0].error or "")
        whole = next(o for o in outcomes if o.ok)
        assert whole.added == 2002
        with ctx.engine.connect() as conn:
            sizes = dict(conn.execute(select(nodes.c.origin, nodes.c.tree_size)).all())
            errors = dict(conn.execute(select(nodes.c.origin, nodes.c.last_error)).all())
        assert sizes == {failed[0].origin: 0, whole.origin: 2002}  # nothing half accepted
        assert "internal error" in (errors[failed[0].origin] or "")

        # the next harvest (a fresh pool) completes the failed node; the other has nothing new
        for sim in sims:
            sim.page_delay = 0.0
        again = {
            o.origin: o
            for o in Harvester(engine=ctx.engine, settings=settings, key=ctx.key, inline=True).run()
        }
        assert again[failed[0].origin].ok, again[failed[0].origin].error
        assert again[failed[0].origin].size == 2002
        assert again[whole.origin].ok and again[whole.origin].added == 0
        with ctx.engine.connect() as conn:
            sizes = dict(conn.execute(select(nodes.c.origin, nodes.c.tree_size)).all())
            errors = dict(conn.execute(select(nodes.c.origin, nodes.c.last_error)).all())
        assert sizes == {s.origin: 2002 for s in sims}
        assert set(errors.values()) == {None}
    finally:
        ctx.engine.dispose()
