"""SQLite harvest lanes never copy the write-ahead log into the database themselves (a lane
would wait for the disk in its commit): their connections have no automatic checkpoint,
and the harvest's `WalCheckpointer` thread checkpoints instead (issue 19 item 4)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import catalogue.harvest.harvester as harvester_module
from catalogue.context import build_context
from catalogue.db import WalCheckpointer, make_engine
from catalogue.harvest import Harvester
from catalogue.harvest.harvester import WriteTarget, lane_engine
from tests.catalogue.conftest import Catalogue, make_settings
from tests.catalogue.simulator import NodeSimulator


def _autocheckpoint(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar())


def test_a_lanes_connections_leave_checkpoints_to_the_harvest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    default = make_engine(url)
    lane = lane_engine(WriteTarget(url, str(tmp_path), "catalogue.test/c"))
    try:
        assert _autocheckpoint(default) == 1000  # SQLite's own, everywhere else
        assert _autocheckpoint(lane) == 0
    finally:
        default.dispose()
        lane.dispose()


def _unchecked(path: Path) -> sqlite3.Connection:
    """A new database in WAL mode whose connection makes no checkpoint of its own (as a
    harvest lane's), with a table `t` of blobs."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (b BLOB)")
    return conn


def _write_and_watch(path: Path, checkpoint: Any = None) -> int:
    """Write 30 MB in 150 transactions through a connection without automatic checkpoints,
    calling `checkpoint()` after every tenth; the largest the log file grew meanwhile."""
    conn = _unchecked(path)
    largest = 0
    blob = os.urandom(200_000)
    try:
        for i in range(150):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (blob,))
            conn.execute("COMMIT")
            largest = max(largest, os.path.getsize(f"{path}-wal"))
            if checkpoint is not None and i % 10 == 9:
                checkpoint()
    finally:
        conn.close()
    return largest


def test_a_passive_checkpoint_lets_the_log_restart_from_its_head(tmp_path: Path) -> None:
    unchecked = _write_and_watch(tmp_path / "a.db")
    assert unchecked > 30_000_000  # nothing copies it back: the log holds every write
    checkpointer = WalCheckpointer(str(tmp_path / "b.db"))
    other = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    try:
        checked = _write_and_watch(tmp_path / "b.db", lambda: checkpointer._checkpoint(other))
    finally:
        other.close()
    assert checkpointer.checkpoints == 15
    assert checked < 4_000_000, checked  # about ten transactions' worth, then from the head


def test_the_checkpointer_thread_checkpoints_as_writes_come_and_once_more_at_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    conn = _unchecked(path)
    checkpointer = WalCheckpointer(str(path), interval=0.01).start()
    try:
        for _ in range(20):
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        deadline = time.monotonic() + 30
        while checkpointer.checkpoints == 0:  # one ran meanwhile, from its own thread
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
            time.sleep(0.01)
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    finally:
        checkpointer.stop()
    # the last checkpoint ran after the last write: the database file alone (a copy without
    # its log) holds every row
    shutil.copy(path, tmp_path / "alone.db")
    conn.close()
    alone = sqlite3.connect(tmp_path / "alone.db")
    try:
        assert alone.execute("SELECT count(*) FROM t").fetchone() == (21,)
    finally:
        alone.close()


def test_the_checkpointer_never_blocks_a_writer(tmp_path: Path) -> None:
    """A PASSIVE checkpoint: a writer holding the write lock goes on meanwhile."""
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (b BLOB)")
    conn.execute("INSERT INTO t VALUES (zeroblob(1000000))")
    checkpointer = WalCheckpointer(str(path), interval=0.01).start()
    try:
        for _ in range(40):
            conn.execute("BEGIN IMMEDIATE")  # would raise `database is locked` after 0.1 s
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
            conn.execute("COMMIT")
    finally:
        checkpointer.stop()
        conn.close()


def test_a_sqlite_lanes_harvest_runs_one_checkpointer_and_stops_it(
    db_url: str, tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []

    class Watched(WalCheckpointer):
        def __init__(self, path: str, **kwargs: Any) -> None:
            super().__init__(path, **kwargs)
            made.append(self)

    monkeypatch.setattr(harvester_module, "WalCheckpointer", Watched)
    sims = [NodeSimulator(f"ck{i}.example/biobank-node", country="IE") for i in range(2)]
    for i, sim in enumerate(sims):
        sim.populate(25, biobank=f"bbmri-eric:ID:IE_CK{i}", collection=f"c{i}")
        serve(sim)
    settings = make_settings(db_url, tmp_path / "h", harvest_workers=2)
    ctx = build_context(settings)
    try:
        cat = Catalogue(ctx)
        for sim in sims:
            cat.enrol(sim, sim.url)
        outcomes = Harvester(engine=ctx.engine, settings=settings, key=ctx.key).run()
        assert [(o.ok, o.added) for o in outcomes] == [(True, 27), (True, 27)]
    finally:
        ctx.engine.dispose()
    if db_url.startswith("sqlite"):
        (checkpointer,) = made
        assert checkpointer.path == str(tmp_path / "catalogue.db")
        assert not checkpointer._thread.is_alive()  # stopped with the harvest
        assert not [t for t in threading.enumerate() if t.name == "wal-checkpoint"]
    else:  # PostgreSQL has no such log to copy
        assert made == []
