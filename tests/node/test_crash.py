"""SIGKILL in the middle of a big import leaves the log and database exactly as before."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import store
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from tests.node.node_support import RECORD_ENTRIES, make_home, sample_rows, write_csv, write_mapping

SCRIPT = """
import sys
from pathlib import Path
from node.cli import main
sys.argv = ["biobank-node", "import", "--home", sys.argv[1], "--mapping", sys.argv[2], sys.argv[3]]
main()
"""


def _state(db: Path) -> tuple[object, ...]:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone(),
            conn.execute("SELECT count(*), max(idx) FROM leaves").fetchone(),
            conn.execute("SELECT count(*), sum(live) FROM records").fetchone(),
            conn.execute(
                "SELECT count(*), count(published_group), count(target_group) FROM holding"
            ).fetchone(),
            conn.execute("SELECT value FROM meta WHERE key = 'compact_range'").fetchone(),
            conn.execute("PRAGMA integrity_check").fetchone(),
        )
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_mid_import_changes_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping_path = write_mapping(tmp_path / "map.toml")
    run_import(
        home,
        [write_csv(tmp_path / "small.csv", sample_rows(10))],
        mapping=Mapping.load(mapping_path),
    )
    before = _state(home.db_path)
    big = write_csv(tmp_path / "big.csv", sample_rows(60000, start=10, donors=20000))
    wal = Path(str(home.db_path) + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    log = tmp_path / "stderr.txt"
    with log.open("wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(home.path), str(mapping_path), str(big)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        # the import's transaction has started writing pages once the WAL grows
        if wal.exists() and wal.stat().st_size > wal_before + 256 * 1024:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert killed, f"import finished before it could be killed: {log.read_text()!r}"
    assert proc.returncode == -signal.SIGKILL
    after = _state(home.db_path)
    assert after == before
    assert after[-1] == ("ok",)
    conn = store.connect(home.db_path)
    try:
        assert store.log_size(conn) == 1 + RECORD_ENTRIES
    finally:
        conn.close()
    # and the node still imports normally afterwards
    report = run_import(
        home,
        [write_csv(tmp_path / "next.csv", sample_rows(12))],
        mapping=Mapping.load(mapping_path),
    )
    assert report.appended == 1 and report.published == {"sample-group": 1}
