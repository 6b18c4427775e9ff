"""Catalogue fixtures: a database per test (SQLite file, PostgreSQL), a catalogue, simulators."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from catalogue.context import Context, build_context
from catalogue.db import write_tx
from catalogue.enrol import enrol
from catalogue.harvest import Harvester, Outcome
from catalogue.harvest.harvester import guarded_job
from catalogue.harvest.keys import load_history
from catalogue.harvest.stream import NodeJob, Writer
from catalogue.models import nodes
from catalogue.settings import Settings
from federation.servers import LiveServer, live_server
from tests.catalogue.simulator import NodeSimulator

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # noqa: S105 - a test-only token


DB_PARAMS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database(kind: str, tmp: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty catalogue database: a SQLite file, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'catalogue.db'}"
        return
    server = request.getfixturevalue("pg_url")
    name = f"cat_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path, request) as url:
        yield url


@dataclass
class Catalogue:
    """A catalogue under test: its context (engine, key, settings) and a harvester."""

    ctx: Context

    @property
    def engine(self) -> Any:
        return self.ctx.engine

    def enrol(self, sim: NodeSimulator, url: str) -> dict[str, Any]:
        return enrol(self.engine, self.ctx.key, url, sim.verifier_key, sim.descriptor())

    def harvest(self) -> dict[str, Outcome]:
        outcomes = Harvester(engine=self.engine, settings=self.ctx.settings, key=self.ctx.key).run()
        return {o.origin: o for o in outcomes}

    def first_job(self, origin: str, **extra: Any) -> NodeJob:
        """The job of a node's first step (nothing accepted or staged before), as a lane
        gets it; `extra`: more `NodeJob` fields (a tail or split directory)."""
        s = self.ctx.settings
        with self.engine.connect() as conn:
            row = conn.execute(select(nodes).where(nodes.c.origin == origin)).one()
            keys = load_history(conn, row)
        return NodeJob(
            node_id=row.id,
            origin=row.origin,
            url=row.url,
            country=row.country,
            state=None,
            staged=None,
            keys=keys.to_json(),
            request_timeout=s.request_timeout,
            max_bytes=s.max_response_bytes,
            page_size=s.page_size,
            max_step=s.max_step,
            chunk_size=s.harvest_chunk,
            **extra,
        )

    def stage_whole(self, origin: str, tail_dir: str | None = None) -> Any:
        """One lane's part of a harvest: fetch, verify and stage the node's whole step (nothing
        accepted or staged before), its final commit deferred; the job's result (`tail_dir`:
        a `TailDir` for what the write lock keeps from being stored at the step's end)."""
        job = self.first_job(origin, tail_dir=tail_dir)

        async def go() -> Any:
            async with httpx.AsyncClient() as client:
                writer = Writer(self.engine, self.ctx.key)
                return await guarded_job(job, client, writer, 20.0, defer_final=True)

        return asyncio.run(go())


class WriteLockHeld:
    """Holds the write lock in a thread, as another lane's final commit would, until the
    block ends: SQLite's (BEGIN IMMEDIATE) and, given a node's origin, that node's row too
    (PostgreSQL: every chunk store of the node locks it)."""

    def __init__(self, cat: Catalogue, origin: str | None = None) -> None:
        self.cat, self.origin = cat, origin
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with write_tx(self.cat.engine) as conn:
            if self.origin is None:
                conn.execute(text("SELECT 1"))
            else:
                query = select(nodes.c.id).where(nodes.c.origin == self.origin)
                conn.execute(query.with_for_update())
            self.locked.set()
            self.release.wait(30)

    def __enter__(self) -> WriteLockHeld:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def make_settings(db_url: str, home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=db_url,
        home=home,
        admin_token=ADMIN_TOKEN,
        origin="catalogue.test/biobank-catalogue",
        request_timeout=2.0,
        node_deadline=20.0,
        page_size=100,
        stale_after=3600.0,
        harvest_workers=0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def catalogue(db_url: str, tmp_path: Path) -> Iterator[Catalogue]:
    ctx = build_context(make_settings(db_url, tmp_path / "home"))
    try:
        yield Catalogue(ctx)
    finally:
        ctx.engine.dispose()


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start simulators on loopback; all are stopped (and released if hanging) at the end."""
    stack = ExitStack()
    sims: list[NodeSimulator] = []

    def start(sim: NodeSimulator) -> LiveServer:
        server = stack.enter_context(live_server(sim.app()))
        sim.url = server.url
        sims.append(sim)
        return server

    try:
        yield start
    finally:
        for sim in sims:
            sim.release.set()
        stack.close()
