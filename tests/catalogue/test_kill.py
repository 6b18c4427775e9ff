"""SIGKILL the catalogue midway through a harvest, run it again: same as a clean harvest.

The node serves its pages slowly, so the first kill always lands mid-step, after a chunk was
stored (the rerun must resume from it); the second lands late, possibly in the final commit
(or after the harvest ended, which must change nothing either).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalogue.context import build_context
from catalogue.models import harvest_staging, nodes
from tests.catalogue.conftest import Catalogue, database, make_settings
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator

pytestmark = pytest.mark.slow


def _env(settings: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CATALOGUE_DATABASE_URL=settings.database_url,
        CATALOGUE_HOME=str(settings.home),
        CATALOGUE_ORIGIN=settings.origin,
        CATALOGUE_PAGE_SIZE=str(settings.page_size),
        CATALOGUE_HARVEST_CHUNK=str(settings.harvest_chunk),
        CATALOGUE_ADMIN_TOKEN="",
    )
    return env


def _harvest_cmd() -> list[str]:
    return [sys.executable, "-c", "from catalogue.cli import main; main()", "harvest"]


def _children(pid: int) -> set[int]:
    """Direct children of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(x) for x in task.read_text().split())
    return found


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] not in ("Z", "X")


def _staged(cat: Catalogue, origin: str) -> tuple[int, int | None]:
    """(accepted size, staged size) of a node."""
    with cat.engine.connect() as conn:
        row = conn.execute(
            select(nodes.c.id, nodes.c.tree_size).where(nodes.c.origin == origin)
        ).one()
        staged = conn.execute(
            select(harvest_staging.c.size).where(harvest_staging.c.node_id == row.id)
        ).scalar()
    return int(row.tree_size), staged


def _kill(proc: subprocess.Popen[bytes], ready: Any) -> set[int]:
    """SIGKILL the harvest once `ready()` holds; return its worker processes."""
    deadline = time.monotonic() + 60
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = _children(proc.pid)
    proc.kill()
    proc.wait()
    return workers


def logical(cat: Catalogue) -> dict[str, Any]:
    d = dump(cat.engine)
    # Nodes are harvested concurrently, so checkpoint leaves of different nodes may commit in
    # either order, so their leaves (and indexes) are compared as a set.
    d["own_log"] = sorted(
        str(sorted((k, v) for k, v in e.items() if k != "index")) for e in d["own_log"]
    )
    return d


def test_sigkill_midway_then_rerun_equals_clean_harvest(
    db_url: str, tmp_path: Path, serve: Any, request: pytest.FixtureRequest
) -> None:
    sims = [NodeSimulator("big.example/biobank-node"), NodeSimulator("small.example/biobank-node")]
    sims[0].populate(3000)
    sims[0].page_delay = 0.1  # 12 pages: well over a second, so the first kill lands midway
    sims[1].populate(300)
    sims[1].withdraw("sample-group", sims[1].contents[5]["id"])  # type: ignore[index]
    for sim in sims:
        serve(sim)
    settings = make_settings(db_url, tmp_path / "home", page_size=250, harvest_chunk=500)
    ctx = build_context(settings)
    cat = Catalogue(ctx)
    try:
        for sim in sims:
            cat.enrol(sim, sim.url)
        big = sims[0]
        # killed between stored chunks: the step is staged, nothing of it accepted
        proc = subprocess.Popen(
            _harvest_cmd(), env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        orphans = _kill(proc, lambda: _staged(cat, big.origin)[1] is not None)
        assert proc.returncode == -9
        accepted, staged = _staged(cat, big.origin)
        # staged at a chunk's end: at least one chunk, in whole pages (a chunk grows by
        # pages while the store before it waits, CATALOGUE_HARVEST_CHUNK_GROWTH)
        assert accepted == 0 and staged is not None and staged >= 500 and staged % 250 == 0
        # the rerun resumes from the last stored chunk; killed late (possibly while the
        # final commit runs, or not at all if it already ended)
        big.served.clear()
        proc = subprocess.Popen(
            _harvest_cmd(), env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        orphans |= _kill(proc, lambda: len(big.served) >= 2 and big.served[-1] >= 2750)
        assert min(big.served) >= staged
        assert proc.returncode in (-9, 0)
        done = subprocess.run(
            _harvest_cmd(), env=_env(settings), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "big.example/biobank-node: ok, size 3002" in done.stdout
        killed_then_rerun = logical(cat)
        # the killed harvests' worker processes ended with them
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in orphans) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphans and not [p for p in orphans if _alive(p)]
    finally:
        ctx.engine.dispose()

    kind = "postgres" if "postgresql" in db_url else "sqlite"
    with database(kind, tmp_path / "clean", request) as clean_url:
        (tmp_path / "clean").mkdir(exist_ok=True)
        clean_ctx = build_context(make_settings(clean_url, tmp_path / "home", page_size=250))
        clean = Catalogue(clean_ctx)
        try:
            for sim in sims:
                clean.enrol(sim, sim.url)
            assert all(o.ok for o in clean.harvest().values())
            assert logical(clean) == killed_then_rerun
        finally:
            clean_ctx.engine.dispose()
