"""Appending to the node log inside the caller's transaction, and signing the checkpoint."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import orjson

from node import highwater, pages, store
from protocol.canonical import canonical
from protocol.entries import make_entry, utc_now
from protocol.errors import ConfigError
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint, Signer, sign_checkpoint

BATCH = 5000
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _text(content: bytes | str) -> str:
    return content if isinstance(content, str) else content.decode("utf-8")


def entry_leaf(
    origin: str, index: int, kind: str, id: str, schema: str, time: str, digest: str
) -> bytes:
    """Canonical bytes of a ``publish`` entry like one :func:`make_entry` made and checked.

    Given such an entry, the others of a run differ only in ASCII strings and the index:
    no floats, no other types, so orjson's sorted bytes ARE the canonical bytes; anything
    non-ASCII (an origin, say) takes ``canonical()`` (NFC, UTF-16 key order).
    """
    entry = {
        "digest": digest,
        "id": id,
        "index": index,
        "kind": kind,
        "log": origin,
        "op": "publish",
        "schema": schema,
        "time": time,
    }
    leaf = orjson.dumps(entry, option=_SORTED)
    return leaf if leaf.isascii() else canonical(entry)


class LogWriter:
    """Buffers new leaves and contents; :meth:`finish` writes them and signs a checkpoint.

    The caller owns the transaction (BEGIN IMMEDIATE ... COMMIT), so a crash anywhere
    leaves the log, the contents, the record state and the checkpoint as they were.
    """

    def __init__(
        self, conn: sqlite3.Connection, origin: str, signer: Signer | Sequence[Signer]
    ) -> None:
        self.conn = conn
        self.origin = origin
        # several signers only for the checkpoint that first covers a rotate-key entry
        self.signers = [signer] if isinstance(signer, Signer) else list(signer)
        in_force = store.get_meta(conn, "verifier_key")  # set by the last key rotation
        if in_force is not None and in_force not in {s.vkey for s in self.signers}:
            raise ConfigError(
                "the node key was rotated while this command ran (or node.key is an old "
                "key); run the command again"
            )
        highwater.check_conn(conn)  # never sign on from a database restored from a backup
        self.start = store.log_size(conn)
        self.size = self.start
        saved = store.get_meta(conn, "compact_range")
        self.compact = CompactRange.from_json(json.loads(saved)) if saved else CompactRange()
        if self.compact.size != self.size:
            raise RuntimeError(
                f"node.db is inconsistent: compact range has size "
                f"{self.compact.size}, log has {self.size} leaves"
            )
        self.time = utc_now()
        self._leaves: list[tuple[int, bytes, bytes, str, str, str, str]] = []
        self._contents: list[tuple[int, str | None]] = []
        self._kind = self._schema = ""

    @property
    def appended(self) -> int:
        return self.size - self.start

    def publish(
        self,
        kind: str,
        id: str,
        schema: str,
        content_bytes: bytes | str,
        digest: str,
    ) -> int:
        """Append a ``publish`` entry whose content is ``content_bytes`` (canonical JSON)."""
        if (
            self.size == self.start
            or kind != self._kind
            or schema != self._schema
            or not (type(id) is str and id.isascii() and type(digest) is str and digest.isascii())
        ):
            # checked construction (make_entry, canonical()) for the first entry, a new kind
            # or schema, and any unusual id; the rest differ from it only in ASCII strings
            # and the index (see entry_leaf)
            self._kind, self._schema = kind, schema
            entry = make_entry(
                log=self.origin,
                index=self.size,
                op="publish",
                kind=kind,
                id=id,
                time=self.time,
                schema=schema,
                digest=digest,
            )
            return self._append(entry, kind, id, "publish", _text(content_bytes))
        leaf = entry_leaf(self.origin, self.size, kind, id, schema, self.time, digest)
        return self._add(leaf, kind, id, "publish", _text(content_bytes))

    def withdraw(self, kind: str, id: str) -> int:
        """Append a ``withdraw`` entry and erase every stored content of the record."""
        self.flush()
        self.conn.execute(
            "UPDATE contents SET content = NULL WHERE idx IN "
            "(SELECT idx FROM leaves WHERE kind = ? AND id = ?)",
            (kind, id),
        )
        entry = make_entry(
            log=self.origin, index=self.size, op="withdraw", kind=kind, id=id, time=self.time
        )
        return self._append(entry, kind, id, "withdraw", None)

    def rotate_key(self, vkey: str) -> int:
        """Append a ``rotate-key`` entry naming the new verifier key ``vkey``."""
        self.flush()
        entry = make_entry(
            log=self.origin, index=self.size, op="rotate-key", key=vkey, time=self.time
        )
        store.set_meta(self.conn, "verifier_key", vkey)
        keys = json.loads(store.get_meta(self.conn, "key_history") or "[]")
        keys = keys or [self.signers[0].vkey]  # the key in force before the first rotation
        store.set_meta(self.conn, "key_history", json.dumps([*keys, vkey]))
        # kind/id columns: "key" and the new verifier key (status counts, key history)
        return self._append(entry, "key", vkey, "rotate-key", None)

    def _append(
        self, entry: dict[str, object], kind: str, id: str, op: str, content: str | None
    ) -> int:
        return self._add(canonical(entry), kind, id, op, content)

    def _add(self, leaf: bytes, kind: str, id: str, op: str, content: str | None) -> int:
        lh = leaf_hash(leaf)
        self.compact.append(lh)
        index = self.size
        self._leaves.append((index, leaf, lh, kind, id, op, self.time))
        self._contents.append((index, content))
        self.size += 1
        if len(self._leaves) >= BATCH:
            self.flush()
        return index

    def flush(self) -> None:
        if self._leaves:
            self.conn.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)", self._leaves)
            self.conn.executemany("INSERT INTO contents VALUES (?, ?)", self._contents)
            self._leaves.clear()
            self._contents.clear()

    def finish(self) -> str | None:
        """Write what is buffered and the full pages it completes (or an erasure cleared);
        sign and store a checkpoint if anything was appended."""
        self.flush()
        pages.write_pages(self.conn, self.size)
        if self.appended == 0:
            return None
        store.set_meta(self.conn, "compact_range", json.dumps(self.compact.to_json()))
        return sign_and_store(self.conn, self.origin, self.signers, self.compact, self.time)


def sign_and_store(
    conn: sqlite3.Connection,
    origin: str,
    signer: Signer | Sequence[Signer],
    compact: CompactRange,
    time: str,
) -> str:
    """Sign a checkpoint for the tree ``compact`` describes and record it."""
    checkpoint = Checkpoint(origin=origin, size=compact.size, root=compact.root())
    store.extend_subtrees(conn, compact.size)  # proofs read O(log n) stored subtree hashes
    note = sign_checkpoint(checkpoint, [signer] if isinstance(signer, Signer) else signer)
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
        (compact.size, checkpoint.root, note, time),
    )
    return note


def ensure_checkpoint(conn: sqlite3.Connection, origin: str, signer: Signer) -> None:
    """Sign the empty tree (size 0) once, so a fresh node serves a checkpoint."""
    if store.latest_checkpoint(conn) is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            sign_and_store(conn, origin, signer, CompactRange(), utc_now())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
