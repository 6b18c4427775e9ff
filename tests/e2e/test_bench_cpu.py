"""The benchmark's CPU accounting (`bench.timeline`): a process tree's CPU counts its running
and its ended children, and a PostgreSQL server on this machine is found behind an engine, so
that a PostgreSQL harvest's timeline says what the server's backends cost on the same cores
(issue 19, items 7 and 8)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy

from bench.pg import fresh_database
from bench.timeline import cpu_seconds, database_server, tree_cpu_seconds

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_a_process_trees_cpu_counts_its_running_and_its_ended_children() -> None:
    me = os.getpid()
    own, tree = cpu_seconds(me), tree_cpu_seconds(me)
    assert own is not None and tree is not None and tree >= own
    # a child that burns 0.3 s and ends: reaped, it is in the tree's CPU, not in ours
    subprocess.run([sys.executable, "-c", BURN], check=True)
    own_after, tree_after = cpu_seconds(me), tree_cpu_seconds(me)
    assert own_after is not None and tree_after is not None
    assert (tree_after - tree) - (own_after - own) >= 0.25
    # a child that burns 0.3 s and waits: running, it is in the tree's CPU too
    child = subprocess.Popen(
        [sys.executable, "-c", BURN + "import sys\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE,
    )
    try:
        while (cpu_seconds(child.pid) or 0) < 0.25:
            assert child.poll() is None, "the burning child ended early"
            time.sleep(0.01)
        running = tree_cpu_seconds(me)
        assert running is not None and running - tree_after >= 0.25
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert tree_cpu_seconds(2**22 + 7) is None  # no such process


def test_the_postgresql_server_behind_an_engine_is_found_on_this_machine(
    pg_url: str, tmp_path: Path
) -> None:
    with fresh_database(pg_url, "biobank_bench_cpu") as url:
        engine = sqlalchemy.create_engine(url)
        try:
            server = database_server(engine)
            assert server is not None
            assert Path(f"/proc/{server}/comm").read_text().startswith("postgres")
            before = tree_cpu_seconds(server)
            with engine.begin() as conn:  # work for the server's backend
                conn.exec_driver_sql("SELECT count(*) FROM generate_series(1, 3000000)")
            after = tree_cpu_seconds(server)
            assert before is not None and after is not None and after - before > 0.05
        finally:
            engine.dispose()
    sqlite = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    assert database_server(sqlite) is None  # its work is the harvesting process's own
    sqlite.dispose()
