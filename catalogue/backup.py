"""``biobank-catalogue backup`` and ``restore``: SQLite's online backup API, or ``pg_dump -Fc``.

A backup is one file: a SQLite database, or a PostgreSQL custom-format dump. The catalogue's
signing key (``CATALOGUE_HOME/catalogue.key``) is never in it: keep it separately. A restore
refuses to run without that key (the catalogue would otherwise make a new one on start and
sign its own log on with a key auditors do not know) and checks after restoring that the
restored log is signed by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import make_url

from catalogue.ownlog import KEY_FILE, CatalogueKey
from catalogue.settings import Settings
from protocol.errors import ConfigError, VerificationError
from protocol.note import Verifier, verify_checkpoint
from service.sqlite_backup import copy_sqlite

__all__ = ["backup", "restore"]


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("CATALOGUE_DATABASE_URL names an in-memory database: nothing to back up")
    return Path(parsed.database)


def _pg(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and an environment carrying it (not on argv)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise ConfigError(
            f"CATALOGUE_DATABASE_URL: backup supports sqlite and postgresql, not "
            f"{parsed.drivername}"
        )
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} not found on PATH: install PostgreSQL's client programs "
            "(Debian: apt-get install postgresql-client) or add their directory to PATH"
        )
    return found


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"{Path(argv[0]).name} failed (exit {done.returncode}): " + (lines[-1] if lines else "")
        )


def backup(settings: Settings, dest: Path) -> str:
    """Back up the catalogue database to the new file ``dest``; return what was used."""
    if dest.exists():
        raise ConfigError(f"{dest} exists; give a new file name for the backup")
    path = _sqlite_path(settings.database_url)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"CATALOGUE_DATABASE_URL: {path} does not exist")
        copy_sqlite(path, dest)
        return "sqlite online backup"
    url, env = _pg(settings.database_url)
    _run([_program("pg_dump"), "--format=custom", "--file", str(dest), "--dbname", url], env)
    return "pg_dump --format=custom"


def restore(settings: Settings, source: Path, *, replace: bool = False) -> None:
    """Restore ``source`` (a backup file) into CATALOGUE_DATABASE_URL, then check its key."""
    if not source.is_file():
        raise ConfigError(f"{source}: no such backup file")
    key_path = settings.home / KEY_FILE
    if not key_path.is_file():
        raise ConfigError(
            f"{key_path} is missing (never in a backup): put the catalogue key back from your "
            "key safe first, or the catalogue would sign its log on with a new key"
        )
    path = _sqlite_path(settings.database_url)
    if path is not None:
        if path.exists() and not replace:
            raise ConfigError(f"{path} exists; stop the catalogue and pass --replace")
        tmp = path.with_name(path.name + ".restoring")
        tmp.unlink(missing_ok=True)
        copy_sqlite(source, tmp)
        for suffix in ("-wal", "-shm"):  # a stale WAL would be replayed into the restored file
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, path)
    else:
        url, env = _pg(settings.database_url)
        argv = [_program("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", url]
        if replace:
            argv += ["--clean", "--if-exists"]
        elif _has_tables(settings.database_url):
            raise ConfigError(
                "the database in CATALOGUE_DATABASE_URL is not empty; restore into a new "
                "database, or stop the catalogue and pass --replace"
            )
        _run([*argv, "--single-transaction", str(source)], env)
    _check_key(settings)


def _has_tables(url: str) -> bool:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _check_key(settings: Settings) -> None:
    """The restored catalogue log must be signed by the key in CATALOGUE_HOME."""
    from catalogue.db import make_engine
    from catalogue.mirror import own_checkpoint

    key = CatalogueKey.load_or_create(settings.home, settings.origin)
    engine = make_engine(settings.database_url, create=False)
    try:
        with engine.connect() as conn:
            note = own_checkpoint(conn)
    finally:
        engine.dispose()
    try:
        verify_checkpoint(note, [Verifier.from_key(key.verifier_key)], settings.origin)
    except VerificationError as exc:
        raise ConfigError(
            f"the restored database's log is not signed by {settings.home / KEY_FILE} "
            f"({exc.message}): put the key that belongs to this backup into CATALOGUE_HOME"
        ) from exc
