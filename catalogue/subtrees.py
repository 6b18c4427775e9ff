"""Stored perfect-subtree hashes of the mirrored node logs and of the catalogue's own log, so
that a proof reads O(log n) rows (protocol.merkle.STRIDE levels; table ``subtrees``)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from hashlib import sha256

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from catalogue.db import bulk_insert, write_tx
from catalogue.models import nodes, subtrees
from protocol.merkle import STRIDE, CompactRange, Perfect, stored_perfect, subtree_updates

__all__ = ["OWN_LOG", "TappedRange", "drop_above", "extend", "fill_all", "perfect"]

log = logging.getLogger(__name__)

OWN_LOG = 0  # log_id of the catalogue's own log (node ids start at 1)


_SQL = {
    "leaves": "SELECT hash FROM leaves WHERE node_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
    "own": "SELECT hash FROM own_leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
    "subtrees": "SELECT hash FROM subtrees WHERE log_id = ? AND level = ? AND idx >= ? "
    "AND idx < ? ORDER BY idx",
}


def _read(conn: Connection, log_id: int, level: int, first: int, count: int) -> Sequence[bytes]:
    # plain SQL: a proof makes ~2 log2(n) of these small reads, and building each as a
    # SQLAlchemy expression cost more than the read itself
    params: tuple[int, ...]
    if level == 0 and log_id == OWN_LOG:
        sql, params = _SQL["own"], (first, first + count)
    elif level == 0:
        sql, params = _SQL["leaves"], (log_id, first, first + count)
    else:
        sql, params = _SQL["subtrees"], (log_id, level, first, first + count)
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return [bytes(h) for (h,) in cursor.fetchall()]
    finally:
        cursor.close()


def perfect(conn: Connection, log_id: int) -> Perfect:
    """Perfect subtree hashes of log ``log_id`` for proofs (missing ones from below)."""
    return stored_perfect(lambda level, first, count: _read(conn, log_id, level, first, count))


class TappedRange(CompactRange):
    """A compact range that keeps the stored levels' subtree hashes its appends compute.

    Appending leaf ``n`` merges the perfect subtrees that end with it, level by level: the
    hash of every perfect subtree is computed once, there. A harvest's verifier appends
    each leaf so (`StepVerifier.compact`); kept from it, the subtree hashes every
    :data:`~protocol.merkle.STRIDE`-th level (``subtrees``) need not be computed again from
    the leaf hashes when the chunk is stored (`extend`'s ``computed``; about 15 SHA-256 per
    16 leaves). `take` hands them over by the leaves that complete them, in order."""

    __slots__ = ("tap",)

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        super().__init__(size, hashes)
        # (level, index, hash) in the order computed: by the leaf that ends the subtree
        self.tap: deque[tuple[int, int, bytes]] = deque()

    @classmethod
    def of(cls, compact: CompactRange) -> TappedRange:
        return cls(compact.size, compact.hashes)

    def append(self, leaf_hash: bytes) -> None:
        n = self.size
        hashes = self.hashes
        h = leaf_hash
        if n & _LOW != _LOW:  # fewer than STRIDE merges: no stored level (15 leaves of 16)
            while n & 1:  # (CompactRange.append, inline: a call more cost 0.1 µs a leaf)
                h = sha256(b"\x01" + hashes.pop() + h).digest()
                n >>= 1
            hashes.append(h)
            self.size += 1
            return
        tap = self.tap
        end, level = n + 1, 0
        while n & 1:
            h = sha256(b"\x01" + hashes.pop() + h).digest()
            n >>= 1
            level += 1
            if not level % STRIDE:
                tap.append((level, (end >> level) - 1, h))
        hashes.append(h)
        self.size += 1

    def take(self, start: int, end: int) -> list[tuple[int, int, bytes]]:
        """The kept subtree hashes that leaves ``start .. end - 1`` complete (those that
        earlier leaves completed and nobody took are let go: the caller stores in order)."""
        tap, out = self.tap, []
        while tap:
            level, index, h = tap[0]
            last = ((index + 1) << level) - 1  # the leaf that completes it
            if last >= end:
                break
            tap.popleft()
            if last >= start:
                out.append((level, index, h))
        return out


_LOW = (1 << STRIDE) - 1


def extend(
    conn: Connection,
    log_id: int,
    size: int,
    known: Sequence[bytes] = (),
    start: int = 0,
    computed: Sequence[tuple[int, int, bytes]] | None = None,
) -> None:
    """Store the subtree hashes the first ``size`` leaves of the log complete, in the
    caller's transaction (idempotent: it starts where the stored ones end).

    ``known``: the hashes of leaves ``start .. start + len(known) - 1``, already in hand
    (a harvest's chunk, as it is stored): those are not read back from the database.
    ``computed``: with ``known`` (``start + len(known) == size``), the (level, index, hash)
    of every stored level's subtree those leaves complete, as the verifier computed them
    (`TappedRange.take`): stored as they are when the stored ones end where ``start``'s
    subtree begins; otherwise (an earlier step's hashes missing) they are computed."""
    top = conn.execute(
        select(func.max(subtrees.c.idx)).where(
            subtrees.c.log_id == log_id, subtrees.c.level == STRIDE
        )
    ).scalar()
    done = 0 if top is None else (int(top) + 1) << STRIDE
    if size >> STRIDE <= done >> STRIDE:
        return
    if computed is not None and done == start >> STRIDE << STRIDE:
        bulk_insert(
            conn,
            subtrees,
            ("log_id", "level", "idx", "hash"),
            sorted((log_id, level, i, bytearray(h)) for level, i, h in computed),
        )
        return
    stop = start + len(known)

    def read(level: int, first: int, count: int) -> Sequence[bytes]:
        if level or first + count <= start or first >= stop:
            return _read(conn, log_id, level, first, count)
        head = _read(conn, log_id, 0, first, start - first) if first < start else []
        tail = _read(conn, log_id, 0, stop, first + count - stop) if first + count > stop else []
        lo = max(first, start) - start
        return [*head, *known[lo : min(first + count, stop) - start], *tail]

    for batch in subtree_updates(read, done, size):
        bulk_insert(
            conn, subtrees, ("log_id", "level", "idx", "hash"), [(log_id, *r) for r in batch]
        )


def drop_above(conn: Connection, log_id: int, size: int) -> None:
    """Forget the stored subtree hashes over leaves at or beyond ``size`` (a harvest's
    staged leaves, discarded: their hashes are stored with them, `harvest.apply`)."""
    levels = conn.execute(
        select(subtrees.c.level).where(subtrees.c.log_id == log_id).distinct()
    ).scalars()
    for level in list(levels):  # a subtree [i << level, (i + 1) << level) within size: kept
        conn.execute(
            subtrees.delete().where(
                subtrees.c.log_id == log_id,
                subtrees.c.level == level,
                subtrees.c.idx >= size >> level,
            )
        )


def fill_all(engine: Engine) -> None:
    """Store what is missing for every mirrored log (mirrors kept before these hashes were);
    another server filling the same log at the same time is harmless."""
    with engine.connect() as conn:
        logs = [(int(i), int(n)) for i, n in conn.execute(select(nodes.c.id, nodes.c.tree_size))]
    for log_id, size in logs:
        try:
            with write_tx(engine) as conn:
                extend(conn, log_id, size)
        except IntegrityError:
            log.info("subtree hashes of log %s were filled by another server", log_id)
