"""Issue 16 item 10: node.db (which links LIMS ids to published pseudonyms), its WAL and SHM
files and its backups are the owner's alone (0600 in a 0700 home), and a node refuses to
start on a home that other users can read, the way it refuses an unreadable key."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.app import create_app
from node.backup import backup
from node.cli import app as cli
from node.home import Home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from protocol.errors import ConfigError
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _published_home(tmp_path: Path) -> Home:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "m.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(6))], mapping=mapping)
    return home


def test_node_db_wal_shm_and_backup_are_created_0600_in_a_0700_home(tmp_path: Path) -> None:
    home = _published_home(tmp_path)
    assert _mode(home.path) == 0o700
    created = [p for p in home.path.iterdir() if p.name.startswith("node.db")]
    assert {p.name for p in created} >= {"node.db"}
    for path in created:
        assert _mode(path) == 0o600, path
    # a live reader keeps the WAL and SHM files around: they are private too
    conn = sqlite3.connect(home.db_path)
    try:
        conn.execute("SELECT count(*) FROM leaves").fetchone()
        for suffix in ("-wal", "-shm"):
            side = home.path / f"node.db{suffix}"
            assert side.exists() and _mode(side) == 0o600, side
    finally:
        conn.close()
    info = backup(home.path, tmp_path / "backup")
    assert _mode(info.path) == 0o700
    assert _mode(info.path / "node.db") == 0o600


def test_init_makes_an_existing_empty_home_0700(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o755)
    (tmp_path / "home").chmod(0o755)
    home, _ = make_home(tmp_path)
    assert _mode(home.path) == 0o700


@pytest.mark.parametrize("name", ["node.db", "node.db-wal", "node.key", "pseudonym.secret"])
def test_start_refuses_a_private_file_others_can_read(tmp_path: Path, name: str) -> None:
    home = _published_home(tmp_path)
    target = home.path / name
    if not target.exists():
        target.touch(mode=0o600)
    target.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        Home.open(home.path)
    assert str(target) in err.value.message and "0644" in err.value.message
    assert f"chmod 600 {target}" in err.value.message
    with pytest.raises(ConfigError):  # the server does not start either
        create_app(NodeSettings(home=home.path))


def test_start_refuses_a_home_directory_others_can_enter(tmp_path: Path) -> None:
    home = _published_home(tmp_path)
    home.path.chmod(0o755)
    result = CliRunner().invoke(cli, ["status", "--home", str(home.path)])
    assert result.exit_code != 0
    assert f"chmod 700 {home.path}" in result.output
    assert "Traceback" not in result.output
    home.path.chmod(0o700)
    assert Home.open(home.path).path == home.path
