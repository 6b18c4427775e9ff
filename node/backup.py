"""``biobank-node backup`` and ``restore``: node.db by SQLite's online backup API, no secrets.

A backup is a directory: ``node.db`` (a consistent copy taken while the node runs),
``node.toml``, ``policy.toml``, ``verifier.key`` (public) and ``BACKUP.json`` (origin, size,
time, and the secret files it does NOT hold). The signer keys (``node.key``,
``node.key.old-*``) and ``pseudonym.secret`` are never copied: they are kept separately
(a key safe), so a backup stolen from backup storage can neither sign nor re-identify.
``restore`` puts node.db back into a home that has those secrets and marks it as needing
``biobank-node recover`` unless the backup is exactly the last tree the node signed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node import highwater, store
from node.home import CONFIG, DB, KEY, POLICY, SECRET, VERIFIER, Home
from node.recover import own_keys
from protocol.entries import utc_now
from protocol.errors import ConfigError, SignatureError
from protocol.note import Verifier, verify_checkpoint
from service.sqlite_backup import copy_sqlite

MANIFEST = "BACKUP.json"
_PUBLIC = (CONFIG, POLICY, VERIFIER)


@dataclass(frozen=True)
class BackupInfo:
    """One backup: where it is, the tree it holds, the secret files it does not."""

    path: Path
    size: int
    not_included: list[str]


def backup(home_path: Path, dest: Path) -> BackupInfo:
    """Back up the node home ``home_path`` into the new directory ``dest``."""
    home = Home.open(home_path, restored_ok=True)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} exists and is not empty; give a new directory for the backup")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest.chmod(0o700)  # node.db links local ids to published group ids
    copy_sqlite(home.db_path, dest / DB)
    for name in _PUBLIC:
        shutil.copy2(home.path / name, dest / name)
    conn = store.connect(dest / DB, readonly=True)
    try:
        latest = store.latest_checkpoint(conn)
    finally:
        conn.close()
    size = latest[0] if latest else 0
    secrets = sorted(
        p.name for p in home.path.iterdir() if p.name in (KEY, SECRET) or p.name.startswith(KEY)
    )
    manifest = {
        "origin": home.config.origin,
        "size": size,
        "time": utc_now(),
        "not_included": secrets,
        "restore": "biobank-node restore BACKUP_DIR --home HOME (HOME must hold the files "
        "listed in not_included, from your key safe), then biobank-node recover --home HOME "
        "--from CATALOGUE_URL",
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return BackupInfo(dest, size, secrets)


def restore(backup_dir: Path, home_path: Path, *, replace: bool = False) -> int:
    """Put the backup's node.db into ``home_path``; return its size. Nothing changes on error.

    The home must already hold the secrets (node.key, pseudonym.secret); node.toml,
    policy.toml and verifier.key are taken from the backup when the home lacks them.
    """
    if not (backup_dir / MANIFEST).is_file() or not (backup_dir / DB).is_file():
        raise ConfigError(f"{backup_dir} is not a node backup (no {MANIFEST} and {DB})")
    missing = [n for n in (KEY, SECRET) if not (home_path / n).is_file()]
    if missing:
        raise ConfigError(
            f"{home_path} lacks {', '.join(missing)} (never in a backup): put them back from "
            "your key safe (mode 0600) first, then run restore again"
        )
    if (home_path / DB).exists() and not replace:
        raise ConfigError(
            f"{home_path / DB} exists; stop the node server and pass --replace to overwrite it"
        )
    for name in _PUBLIC:
        if not (home_path / name).exists():
            shutil.copy2(backup_dir / name, home_path / name)
    home = Home.open(home_path, restored_ok=True)
    check = sqlite3.connect(f"file:{backup_dir / DB}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ConfigError(f"{backup_dir / DB} fails SQLite's integrity check")
        latest = store.latest_checkpoint(check)
        keys = own_keys(home, check)
    finally:
        check.close()
    if latest is None:
        raise ConfigError(f"{backup_dir / DB} holds no signed checkpoint")
    try:
        verify_checkpoint(latest[2], [Verifier.from_key(k) for k in keys], home.config.origin)
    except SignatureError as exc:
        raise ConfigError(
            f"{backup_dir / DB} is not this node's: its checkpoint is signed by none of the "
            f"keys in {home.path} ({exc.message})"
        ) from exc
    tmp = home_path / f"{DB}.restoring"
    tmp.unlink(missing_ok=True)
    copy_sqlite(backup_dir / DB, tmp)
    # the old database's WAL would be replayed into the restored file: remove it first
    for suffix in ("-wal", "-shm"):
        (home_path / f"{DB}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, home_path / DB)
    mark = highwater.read(home_path)
    if mark is None or mark.size != latest[0] or mark.root != latest[1]:
        highwater.require_recover(home_path, latest[0], latest[1])
    return latest[0]
