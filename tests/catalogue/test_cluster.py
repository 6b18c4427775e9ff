"""Two real `biobank-catalogue serve` processes on one PostgreSQL database: one harvests, both
search the same, and the other takes over when the leader is killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select

from catalogue.cluster import harvest_leader
from catalogue.context import build_context
from catalogue.enrol import enrol
from catalogue.models import nodes
from federation.servers import free_port
from tests.catalogue.conftest import ADMIN_TOKEN, database
from tests.catalogue.simulator import NodeSimulator

pytestmark = pytest.mark.postgres

CLI = str(Path(sys.executable).parent / "biobank-catalogue")
ORIGIN = "catalogue.test/biobank-catalogue"
BB, COL = "bbmri-eric:ID:DE_HA", "bbmri-eric:ID:DE_HA:collection:main"
START = 60.0  # seconds a server may take to start, or a harvest to come round, on a busy CI


class Server:
    """One `biobank-catalogue serve` subprocess, its output in a file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"serve-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def total(self) -> Any:
        """The search total (exact here: groups of one sample, k = 1), or the interval."""
        response = httpx.get(f"{self.url}/v1/search", timeout=5)
        response.raise_for_status()
        total = response.json()["total"]
        return total["min"] if total["min"] == total["max"] else total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def wait_for(what: str, check: Callable[[], bool], timeout: float, *servers: Server) -> None:
    """Poll `check` until it holds; fail naming `what` (with the servers' output) at the
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, KeyError):
            pass  # not serving yet
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.url} (pid {s.pid}):\n{s.output()[-3000:]}" for s in servers)
            pytest.fail(f"{what}: not within {timeout:g} s\n{logs}")
        time.sleep(0.05)


@contextmanager
def servers(env: dict[str, str], logs: Path) -> Iterator[Callable[[], Server]]:
    started: list[Server] = []

    def start() -> Server:
        started.append(Server(env, logs))
        return started[-1]

    try:
        yield start
    finally:
        for s in started:
            s.stop()


def committed(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(nodes.c.tree_size)).scalar_one())


def leader_name(engine: Engine) -> str:
    with engine.connect() as conn:
        leader = harvest_leader(conn)
    return leader["name"] if leader else ""


def grow(sim: NodeSimulator, n: int, start: int) -> int:
    """Publish `n` more samples; the checkpoint served stays the old one until they are all
    in (the simulator's lists are read by its server thread). Returns the new size."""
    sim.note = sim.sign()
    sim.populate(n, start=start, biobank=BB, collection=COL)
    sim.note = None
    return len(sim.leaves)


def test_two_servers_one_harvest_leader_fresh_search_everywhere_and_failover(
    tmp_path: Path, request: pytest.FixtureRequest, serve: Any
) -> None:
    sim = NodeSimulator("de.example/biobank-node", country="DE", k=1)
    sim.populate(20, biobank=BB, collection=COL)
    serve(sim)
    with database("postgres", tmp_path, request) as url:
        from tests.catalogue.conftest import make_settings

        home = tmp_path / "home"  # the catalogue key: every server signs the same own log
        ctx = build_context(make_settings(url, home, origin=ORIGIN))
        enrol(ctx.engine, ctx.key, sim.url, sim.verifier_key, sim.descriptor())
        ctx.engine.dispose()
        engine = create_engine(url)
        env = {
            **os.environ,
            "CATALOGUE_DATABASE_URL": url,
            "CATALOGUE_HOME": str(home),
            "CATALOGUE_ORIGIN": ORIGIN,
            "CATALOGUE_ADMIN_TOKEN": ADMIN_TOKEN,
            "CATALOGUE_HARVEST_INTERVAL": "0.3",
            "CATALOGUE_HARVEST_WORKERS": "0",
            "CATALOGUE_REQUEST_TIMEOUT": "5",
            "CATALOGUE_PAGE_SIZE": "100",
        }
        try:
            with servers(env, tmp_path) as start:
                a = start()
                wait_for("A leads", lambda: f"pid {a.pid}" in leader_name(engine), START, a)
                wait_for("A's first harvest", lambda: committed(engine) == 22, START, a)
                b = start()
                wait_for("B serves", lambda: b.total() == 20, START, a, b)

                # a harvest the leader commits shows in the other server's search within 2 s
                size = grow(sim, 5, start=20)
                wait_for("A harvests the new samples", lambda: committed(engine) == size, START)
                wait_for("B's search shows them", lambda: b.total() == 25, 2.0, a, b)
                assert a.total() == 25

                # only A harvests: it took the lock, B found it held and never harvested
                assert f"harvest leader: this server (pid {a.pid})" in a.output()
                assert "harvest follower" not in a.output()
                assert "harvest follower: biobank-catalogue harvest" in b.output()
                assert f"pid {a.pid} holds the harvest lock" in b.output()
                assert "harvest leader" not in b.output()
                assert f"pid {a.pid}" in leader_name(engine)

                # kill -9 the leader: its session ends, B takes the lock and harvests
                a.process.kill()
                a.process.wait(timeout=10)
                size = grow(sim, 5, start=25)
                wait_for("B takes over", lambda: f"pid {b.pid}" in leader_name(engine), START, b)
                wait_for("B harvests the node's new samples", lambda: b.total() == 30, START, b)
                assert committed(engine) == size
                assert f"harvest leader: this server (pid {b.pid})" in b.output()

                status = subprocess.run(
                    [CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
                )
                assert status.returncode == 0, status.stderr
                shown = json.loads(status.stdout)
                assert f"pid {b.pid}" in shown["harvest_leader"]["name"]
                assert shown["nodes"][0]["tree_size"] == size
                assert shown["nodes"][0]["last_error"] is None
        finally:
            engine.dispose()
