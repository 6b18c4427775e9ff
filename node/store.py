"""The node database (SQLite, WAL): log leaves, erasable contents, record state, checkpoints.

Tables:

- ``leaves``: one row per log entry (index, canonical leaf bytes, leaf hash, kind, id, op).
- ``contents``: index -> record content JSON (canonical text) or NULL once erased.
- ``records``: current state per published (kind, id): digest and nonce of the live
  version, last index, live flag (the ``local_id``/``donor_hash`` columns are unused).
- ``holding``: one row per sample the node holds (local id, HMAC of the donor id, never the
  donor id itself, and the raw attributes privacy needs), with the group it is counted in
  on the published log (``published_group``) and the group it belongs to now
  (``target_group``); ``live = 0`` marks a removed sample kept until its removal is
  published (see ``node/groups.py``).
- ``erased``: local sample ids and donor hashes withdrawn by consent; imports skip them.
- ``subtrees``: hashes of the perfect subtrees every ``protocol.merkle.STRIDE`` levels
  (16, 256, ... leaves), so that a proof reads O(log n) rows instead of every leaf hash.
- ``checkpoints``: every signed checkpoint (size, root, note text, time).
- ``notify_targets``: catalogues told of each new checkpoint, and how that went
  (``node/notify.py``).
- ``pages``: every full page of entries as the bytes it is served as (``node/pages.py``).
- ``meta``: the compact range of the tree (O(log n) frontier) and other small values.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from node import pages
from protocol.merkle import STRIDE, Perfect, stored_perfect, subtree_updates

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (
    idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, hash BLOB NOT NULL,
    kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contents (idx INTEGER PRIMARY KEY, content TEXT);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, biobank TEXT, local_id TEXT, donor_hash TEXT,
    digest TEXT, nonce TEXT, last_index INTEGER NOT NULL, live INTEGER NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS holding (
    local_id TEXT PRIMARY KEY, donor_hash TEXT, biobank TEXT NOT NULL, collection TEXT,
    sample_type TEXT, storage_temperature TEXT, sex TEXT, age INTEGER, year INTEGER,
    diagnoses TEXT NOT NULL DEFAULT '[]', use_conditions TEXT NOT NULL DEFAULT '[]',
    dataset_types TEXT NOT NULL DEFAULT '[]', live INTEGER NOT NULL DEFAULT 1,
    published_group TEXT, target_group TEXT);
CREATE TABLE IF NOT EXISTS erased (what TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (what, key));
CREATE TABLE IF NOT EXISTS subtrees (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notify_targets (
    url TEXT PRIMARY KEY, source TEXT NOT NULL, added TEXT NOT NULL,
    delivered_size INTEGER NOT NULL DEFAULT -1, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0, last_attempt TEXT, last_delivered TEXT,
    last_error TEXT);
"""


#: Secondary indexes: nothing writes through them, so a bulk append may drop them and build
#: them again afterwards (sorting once is cheaper than a random B-tree insert per row).
INDEXES: dict[str, str] = {
    "leaves_record": "leaves(kind, id)",
    "holding_published": "holding(published_group)",
    "holding_donor": "holding(donor_hash)",
}


def create_indexes(conn: sqlite3.Connection) -> None:
    """Create the secondary indexes that are missing (idempotent)."""
    for name, on in INDEXES.items():
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")


def drop_indexes(conn: sqlite3.Connection) -> None:
    """Drop the secondary indexes, inside the caller's transaction (see :data:`INDEXES`).

    The caller MUST call :func:`create_indexes` before it commits; a crash or rollback in
    between restores them with everything else.
    """
    for name in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the node database in WAL mode with autocommit off only where we say BEGIN."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        create_private(Path(path))
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is atomic and a crash (of the process or the
        # machine) never leaves a half transaction; only a power loss may forget the last
        # commits, which the next import re-creates (imports are idempotent diffs)
        conn.execute("PRAGMA synchronous=NORMAL")
        # bounded 64 MiB page caches (the database and the TEMP staging tables): index
        # inserts of big imports stay in memory, memory does not grow with the export
        conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA busy_timeout=10000")
    # TEMP tables (an import's staging rows) live in a file behind a bounded 128 MiB page
    # cache. The order matters: setting temp_store resets the temp database's cache size.
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA temp.cache_size=-131072")

    return conn


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists: SQLite gives its -wal and -shm
    files the database file's mode, so they are the owner's alone too."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes (idempotent)."""
    conn.executescript(SCHEMA + pages.SCHEMA)
    create_indexes(conn)


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def log_size(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(idx) FROM leaves").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def latest_checkpoint(conn: sqlite3.Connection) -> tuple[int, bytes, str, str] | None:
    """(size, root, note, time) of the newest checkpoint, or None before the first."""
    row = conn.execute(
        "SELECT size, root, note, time FROM checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]), str(row[3]))


def leaf_hashes(conn: sqlite3.Connection, size: int) -> list[bytes]:
    """The first ``size`` leaf hashes, in index order (for proofs)."""
    return [
        bytes(r[0])
        for r in conn.execute("SELECT hash FROM leaves WHERE idx < ? ORDER BY idx", (size,))
    ]


def read_hashes(conn: sqlite3.Connection, level: int, first: int, count: int) -> list[bytes]:
    """Stored hashes ``first .. first+count-1`` of a stored level (0: the leaf hashes)."""
    if level == 0:
        q = "SELECT hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
        rows = conn.execute(q, (first, first + count))
    else:
        q = "SELECT hash FROM subtrees WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx"
        rows = conn.execute(q, (level, first, first + count))
    return [bytes(r[0]) for r in rows]


def proof_subtrees(conn: sqlite3.Connection) -> Perfect:
    """Perfect subtree hashes for proofs, from the stored ones (O(log n) reads a proof)."""
    return stored_perfect(lambda level, first, count: read_hashes(conn, level, first, count))


def extend_subtrees(conn: sqlite3.Connection, size: int) -> None:
    """Store the subtree hashes the first ``size`` leaves complete (idempotent; inside the
    caller's transaction, or its own when there is none)."""
    row = conn.execute("SELECT max(idx) FROM subtrees WHERE level = ?", (STRIDE,)).fetchone()
    done = 0 if row[0] is None else (int(row[0]) + 1) << STRIDE
    if size >> STRIDE <= done >> STRIDE:
        return
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        read = lambda level, first, count: read_hashes(conn, level, first, count)  # noqa: E731
        for batch in subtree_updates(read, done, size):
            conn.executemany("INSERT OR REPLACE INTO subtrees VALUES (?, ?, ?)", batch)
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        raise


def entries_page(conn: sqlite3.Connection, start: int, stop: int) -> list[tuple[bytes, str | None]]:
    """(leaf bytes, content JSON text or None) for indexes start..stop-1."""
    return [
        (bytes(r[0]), r[1])
        for r in conn.execute(
            "SELECT l.leaf, c.content FROM leaves l LEFT JOIN contents c ON c.idx = l.idx "
            "WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx",
            (start, stop),
        )
    ]


def counts(conn: sqlite3.Connection) -> dict[str, object]:
    """Counts for ``status``: entries by kind and op, live records by kind."""
    by_op = {
        f"{k}/{o}": n
        for k, o, n in conn.execute(
            "SELECT kind, op, count(*) FROM leaves GROUP BY kind, op ORDER BY kind, op"
        )
    }
    live = {
        k: n
        for k, n in conn.execute(
            "SELECT kind, count(*) FROM records WHERE live = 1 GROUP BY kind ORDER BY kind"
        )
    }
    return {"entries": by_op, "live": live}
