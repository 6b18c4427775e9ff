"""The largest tree this node ever signed, kept OUTSIDE node.db (``signed-size.json``).

A database restored from an old backup holds a shorter log than the node has published;
signing on from there would sign a second, different tree of a size already published
(equivocation). The mark beside the key remembers the largest signed size and its root:
it is raised after every commit that signs a checkpoint and before the server serves one,
and a database whose latest checkpoint is smaller than the mark (or that ``restore`` put
in place) refuses to serve or sign until ``biobank-node recover`` has brought it back.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node import store
from protocol.errors import ConfigError

MARK = "signed-size.json"
_LOCK = ".signed-size.lock"


class RecoveryRequired(ConfigError):
    """node.db is behind what this node has signed: run ``biobank-node recover``."""


@dataclass(frozen=True)
class Mark:
    """The largest signed tree (size, root) and whether a restore awaits ``recover``."""

    size: int
    root: bytes
    recover_required: bool = False


def read(home: Path) -> Mark | None:
    """The mark of the node home ``home``, or None when there is none yet."""
    path = home / MARK
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Mark(
            int(raw["size"]), base64.b64decode(raw["root"]), bool(raw.get("recover_required"))
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is damaged ({exc}); it records the largest tree this node signed: "
            "restore it from your key safe or run 'biobank-node recover --from CATALOGUE_URL'"
        ) from exc


def _write(home: Path, mark: Mark) -> None:
    body = {
        "size": mark.size,
        "root": base64.b64encode(mark.root).decode("ascii"),
        "recover_required": mark.recover_required,
    }
    tmp = home / f"{MARK}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(body) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, home / MARK)


class _locked:
    """An exclusive lock on the mark, so that two writers never lower it."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __enter__(self) -> None:
        self.fd = os.open(self.home / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def raise_to(home: Path, size: int, root: bytes) -> None:
    """Raise the mark to ``(size, root)`` if that is larger (never lowers it)."""
    with _locked(home):
        mark = read(home)
        if mark is None or size > mark.size:
            _write(home, Mark(size, root, mark.recover_required if mark else False))


def record_latest(home: Path) -> None:
    """Raise the mark to the latest checkpoint in node.db (after a signing commit)."""
    conn = store.connect(home / "node.db", readonly=True)
    try:
        latest = store.latest_checkpoint(conn)
    finally:
        conn.close()
    if latest is not None:
        raise_to(home, latest[0], latest[1])


def require_recover(home: Path, size: int, root: bytes) -> None:
    """After a restore: refuse to serve or sign until ``recover`` (keeps a larger mark)."""
    with _locked(home):
        mark = read(home)
        keep = mark if mark is not None and mark.size > size else Mark(size, root)
        _write(home, Mark(keep.size, keep.root, True))


def recovered(home: Path, size: int, root: bytes) -> None:
    """``recover`` brought node.db to ``(size, root)``: the mark is that, no longer pending."""
    with _locked(home):
        mark = read(home)
        if mark is not None and mark.size > size:
            raise ConfigError(f"internal: recovered size {size} is below the mark {mark.size}")
        _write(home, Mark(size, root))


def home_of(conn: sqlite3.Connection) -> Path | None:
    """The node home holding the database ``conn`` is open on (None: not a file)."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).parent
    return None


def check_conn(conn: sqlite3.Connection) -> None:
    """:func:`check` for the home of ``conn``'s database (run by every log writer)."""
    home = home_of(conn)
    if home is not None:
        check(home, store.latest_checkpoint(conn))


def check(home: Path, latest: tuple[int, bytes, str, str] | None) -> None:
    """Refuse (RecoveryRequired, one line) when node.db is behind the mark or awaits recover.

    A home without a mark (made before marks existed) gets one from its database.
    """
    mark = read(home)
    size = latest[0] if latest else 0
    if latest is not None and (mark is None or latest[0] > mark.size):
        raise_to(home, latest[0], latest[1])  # signed, committed, not yet marked (a crash)
    if mark is None:
        return
    if mark.recover_required or size < mark.size:
        why = (
            "node.db was restored from a backup"
            if mark.recover_required
            else f"node.db holds a signed tree of size {size} but this node has signed "
            f"size {mark.size} ({home / MARK}): node.db is from an older backup"
        )
        raise RecoveryRequired(
            f"{why}; it must not sign or serve until its log is recovered: run "
            f"'biobank-node recover --home {home} --from CATALOGUE_URL'"
        )
