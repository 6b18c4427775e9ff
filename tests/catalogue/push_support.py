"""Push, then pull test helpers: a real node home served on loopback and a real catalogue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from catalogue.app import create_app
from catalogue.enrol import enrol, fetch_descriptor
from catalogue.models import nodes
from federation.servers import LiveServer, live_server
from node import notify, store
from node.app import create_app as create_node_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from tests.catalogue.conftest import make_settings
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


class Site:
    """A node (its home, served) and a catalogue app (served or not), both real."""

    def __init__(self, tmp: Path, db_url: str, stack: ExitStack, **overrides: Any) -> None:
        self.tmp = tmp
        self.home, self.vkey = make_home(tmp, k=2)
        self.mapping = Mapping.load(write_mapping(tmp / "map.toml"))
        self.rows = 0
        self.imported(30)
        self.node = stack.enter_context(
            live_server(create_node_app(NodeSettings(home=self.home.path, notify_poll=0.05)))
        )
        self.settings = make_settings(
            db_url, tmp / "cat-home", harvest_interval=3600.0, **overrides
        )
        self.stack = stack

    def imported(self, n: int) -> int:
        """Import ``n`` samples of new donors; the log size after."""
        rows = sample_rows(n, start=self.rows)
        self.rows += n
        path = write_csv(self.tmp / f"s{self.rows}.csv", rows)
        report = run_import(self.home, [path], mapping=self.mapping)
        assert report.applied and not report.problems
        return report.size_after

    def catalogue(self, *, schedule: bool, port: int | None = None) -> tuple[Any, LiveServer]:
        app = create_app(self.settings, schedule_harvest=schedule)
        ctx = app.state.ctx
        with ctx.engine.connect() as conn:
            known = conn.execute(select(nodes.c.origin)).first()
        if known is None:
            descriptor = asyncio.run(fetch_descriptor(self.node.url))
            enrol(ctx.engine, ctx.key, self.node.url, self.vkey, descriptor)
        return app, self.stack.enter_context(live_server(app, port))

    def note(self) -> str:
        conn = store.connect(self.home.db_path)
        try:
            latest = store.latest_checkpoint(conn)
        finally:
            conn.close()
        assert latest is not None
        return latest[2]

    def add_target(self, url: str) -> None:
        conn = store.connect(self.home.db_path)
        try:
            notify.add_target(conn, url)
        finally:
            conn.close()

    def targets(self) -> list[notify.Target]:
        conn = store.connect(self.home.db_path)
        try:
            return notify.targets(conn)
        finally:
            conn.close()


def total(url: str) -> int:
    return int(httpx.get(f"{url}/v1/search", timeout=10).json()["total"]["max"])


def tree_size(app: Any) -> int:
    with app.state.ctx.engine.connect() as conn:
        return int(conn.execute(select(nodes.c.tree_size)).scalar() or 0)
