"""A consistent copy of a live SQLite database, for the node's and the catalogue's backups."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["copy_sqlite"]


def copy_sqlite(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` with SQLite's online backup API (readers and writers of
    ``src`` may go on; the copy is one consistent snapshot). ``dest`` is created (or left)
    with mode 0600: a backup is as private as the database."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(dest, 0o600)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(str(dest))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
