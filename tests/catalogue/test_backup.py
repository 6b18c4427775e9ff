"""``biobank-catalogue backup`` / ``restore`` on SQLite and on the real PostgreSQL.

Each restored catalogue is served by a real server and passes the auditor.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from typer.testing import CliRunner

from catalogue.app import create_app
from catalogue.cli import app as catalogue_cli
from catalogue.settings import Settings
from federation import CATALOGUE_ORIGIN, DemoCatalogue, Federation, build_federation, live_server
from federation.build import enrol_all
from tests.audit.helpers import audit, failed

runner = CliRunner()
TOKEN = secrets.token_hex(16)


def _env(url: str, home: Path) -> dict[str, str]:
    return {
        "CATALOGUE_DATABASE_URL": url,
        "CATALOGUE_HOME": str(home),
        "CATALOGUE_ORIGIN": CATALOGUE_ORIGIN,
        "CATALOGUE_ADMIN_TOKEN": TOKEN,
    }


def _cli(env: dict[str, str], *args: str | Path) -> Any:
    return runner.invoke(catalogue_cli, [str(a) for a in args], env=env)


def _audit_ok(url: str, home: Path, state: Path) -> None:
    settings = Settings(database_url=url, home=home, origin=CATALOGUE_ORIGIN, admin_token=TOKEN)
    app = create_app(settings)
    try:
        with live_server(app) as server:
            code, report = audit("--catalogue", server.url, "--state", state)
        assert code == 0, failed(report)
    finally:
        app.state.ctx.engine.dispose()


def _pg_tools() -> None:
    if shutil.which("pg_dump") and shutil.which("pg_restore"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but pg_dump/pg_restore are not on PATH (.ci/run installs postgresql)")
    pytest.skip("pg_dump/pg_restore not on PATH (Debian: apt-get install postgresql-client)")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("catalogue-backup")
    with build_federation(work, ("IT",), samples=300, seed=4, serve_catalogue=False) as built:
        yield built


def test_sqlite_backup_restore_serves_and_audits(fed: Federation, tmp_path: Path) -> None:
    settings = fed.catalogue.settings
    env = _env(settings.database_url, settings.home)
    result = _cli(env, "backup", tmp_path / "cat.backup")
    assert result.exit_code == 0, result.output
    assert "catalogue.key" in result.output  # the key is NOT in the backup: said so
    # restore on a "new machine": the key comes from the key safe, the database from backup
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(settings.home / "catalogue.key", home / "catalogue.key")
    url = f"sqlite:///{tmp_path / 'restored.db'}"
    result = _cli(_env(url, home), "restore", tmp_path / "cat.backup")
    assert result.exit_code == 0, result.output
    _audit_ok(url, home, tmp_path / "state.json")


def test_restore_refuses_without_the_catalogue_key(fed: Federation, tmp_path: Path) -> None:
    settings = fed.catalogue.settings
    assert _cli(_env(settings.database_url, settings.home), "backup", tmp_path / "b").exit_code == 0
    url = f"sqlite:///{tmp_path / 'restored.db'}"
    result = _cli(_env(url, tmp_path / "empty-home"), "restore", tmp_path / "b")
    assert result.exit_code == 1
    assert "catalogue.key is missing (never in a backup)" in result.output
    assert not (tmp_path / "restored.db").exists()


def test_restore_refuses_to_overwrite_without_replace(fed: Federation, tmp_path: Path) -> None:
    settings = fed.catalogue.settings
    env = _env(settings.database_url, settings.home)
    assert _cli(env, "backup", tmp_path / "b").exit_code == 0
    result = _cli(env, "restore", tmp_path / "b")
    assert result.exit_code == 1
    assert "exists; stop the catalogue and pass --replace" in result.output


def test_restore_refuses_a_backup_signed_by_another_key(fed: Federation, tmp_path: Path) -> None:
    settings = fed.catalogue.settings
    assert _cli(_env(settings.database_url, settings.home), "backup", tmp_path / "b").exit_code == 0
    other = tmp_path / "other-home"
    # a key of the same origin that did not sign this log
    from catalogue.ownlog import CatalogueKey

    CatalogueKey.load_or_create(other, CATALOGUE_ORIGIN)
    result = _cli(_env(f"sqlite:///{tmp_path / 'r.db'}", other), "restore", tmp_path / "b")
    assert result.exit_code == 1
    assert "is not signed by" in result.output


def test_backup_refuses_to_overwrite(fed: Federation, tmp_path: Path) -> None:
    settings = fed.catalogue.settings
    (tmp_path / "b").write_text("keep me")
    result = _cli(_env(settings.database_url, settings.home), "backup", tmp_path / "b")
    assert result.exit_code == 1
    assert "exists; give a new file name" in result.output
    assert (tmp_path / "b").read_text() == "keep me"


def test_pg_backup_without_pg_dump_is_one_clear_line(pg_url: str, tmp_path: Path) -> None:
    env = {**_env(pg_url, tmp_path), "PATH": str(tmp_path)}
    result = _cli(env, "backup", tmp_path / "b")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: pg_dump not found on PATH: install PostgreSQL's client programs "
        "(Debian: apt-get install postgresql-client) or add their directory to PATH"
    )


@pytest.fixture
def pg_databases(pg_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh databases on the test server (dropped afterwards)."""
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    names = [f"backup_{uuid.uuid4().hex[:10]}_{n}" for n in ("a", "b")]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = make_url(pg_url)
    try:
        yield tuple(  # type: ignore[misc]
            base.set(database=n).render_as_string(hide_password=False) for n in names
        )
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_pg_backup_restore_serves_and_audits(
    fed: Federation, pg_databases: tuple[str, str], tmp_path: Path
) -> None:
    _pg_tools()
    source, target = pg_databases
    home = tmp_path / "home"
    settings = Settings(database_url=source, home=home, origin=CATALOGUE_ORIGIN, admin_token=TOKEN)
    app = create_app(settings)
    ctx = app.state.ctx
    try:
        catalogue = DemoCatalogue(settings=settings, engine=ctx.engine, key=ctx.key, app=app)
        enrol_all(catalogue, fed.nodes)
        assert all(o.ok for o in catalogue.harvest())
    finally:
        ctx.engine.dispose()
    result = _cli(_env(source, home), "backup", tmp_path / "pg.dump")
    assert result.exit_code == 0, result.output
    assert "pg_dump --format=custom" in result.output
    assert (tmp_path / "pg.dump").read_bytes()[:5] == b"PGDMP"  # custom format
    result = _cli(_env(target, home), "restore", tmp_path / "pg.dump")
    assert result.exit_code == 0, result.output
    # a second restore into the now non-empty database needs --replace
    result = _cli(_env(target, home), "restore", tmp_path / "pg.dump")
    assert result.exit_code == 1 and "is not empty" in result.output
    _audit_ok(target, home, tmp_path / "state.json")
