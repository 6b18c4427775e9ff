"""Read side of mirrored node logs and of the catalogue's own log: entries, checkpoints, proofs."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import Connection, select

from catalogue import subtrees
from catalogue.errors import UnknownNode
from catalogue.models import nodes, own_leaves, own_state
from catalogue.subtrees import OWN_LOG
from protocol.errors import InputError
from protocol.merkle import consistency_proof_from, inclusion_proof_from
from service.proofs import ProofCache

__all__ = [
    "node_checkpoint",
    "node_entries",
    "node_proof",
    "own_checkpoint",
    "own_entries",
    "own_proof",
]

MAX_LIMIT = 1000


def node_row(conn: Connection, origin: str) -> Any:
    row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
    if row is None:
        raise UnknownNode(f"no enrolled node with origin {origin!r}")
    return row


def node_checkpoint(conn: Connection, origin: str) -> str:
    row = node_row(conn, origin)
    if not row.checkpoint:
        raise UnknownNode(f"{origin}: nothing harvested yet")
    return str(row.checkpoint)


def node_entries(conn: Connection, origin: str, start: int, limit: int) -> bytes:
    """A page of mirrored leaves as JSON bytes; contents are embedded as stored (no re-parse)."""
    row = node_row(conn, origin)
    limit = _limit(limit)
    # through the driver's cursor: SQLAlchemy's row processing cost as much as the encoding
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"SELECT leaf, content FROM leaves WHERE node_id = {mark} AND idx >= {mark} "
            f"AND idx < {mark} ORDER BY idx LIMIT {mark}",
            (row.id, start, row.tree_size, limit),
        )
        b64 = base64.b64encode
        fragment = orjson.Fragment
        out = [
            {
                "leaf": b64(leaf).decode(),
                "content": None if content is None else fragment(content),
            }
            for leaf, content in cursor
        ]
    finally:
        cursor.close()
    end = start + len(out)
    return orjson.dumps({"entries": out, "next": end if out and end < row.tree_size else None})


def node_proof(
    conn: Connection, origin: str, kind: str, a: int, b: int, cache: ProofCache
) -> dict[str, list[str]]:
    """An inclusion (``a`` = index, ``b`` = size) or consistency (``a`` = from, ``b`` = to)
    proof in the mirror of ``origin``: O(log n) reads of stored subtree hashes, cached by the
    verified root."""
    row = node_row(conn, origin)
    return _proof(conn, int(row.id), int(row.tree_size), str(row.root), kind, a, b, cache)


def own_proof(
    conn: Connection, kind: str, a: int, b: int, cache: ProofCache
) -> dict[str, list[str]]:
    """A proof in the catalogue's own log (as :func:`node_proof`)."""
    row = conn.execute(select(own_state.c.size, own_state.c.compact)).first()
    size, root = (0, "") if row is None else (int(row.size), str(row.compact))
    return _proof(conn, OWN_LOG, size, root, kind, a, b, cache)


def _proof(
    conn: Connection,
    log_id: int,
    have: int,
    root: str,
    kind: str,
    a: int,
    b: int,
    cache: ProofCache,
) -> dict[str, list[str]]:
    _check_size(b, have)
    if kind == "inclusion":
        if not 0 <= a < b:
            raise InputError(f"index {a} is outside a tree of size {b}")
        make = lambda: inclusion_proof_from(subtrees.perfect(conn, log_id), a, b)  # noqa: E731
    else:
        if not 0 < a <= b:
            raise InputError(f"consistency needs 0 < from <= to, got from={a} to={b}")
        make = lambda: consistency_proof_from(subtrees.perfect(conn, log_id), a, b)  # noqa: E731
    return cache.get((log_id, root, kind, a, b), make)


def own_checkpoint(conn: Connection) -> str:
    row = conn.execute(select(own_state.c.checkpoint)).first()
    if row is None:
        raise UnknownNode("the catalogue log is not initialised")
    return str(row.checkpoint)


def own_entries(conn: Connection, start: int, limit: int) -> dict[str, Any]:
    limit = _limit(limit)
    size = own_size(conn)
    q = (
        select(own_leaves.c.leaf)
        .where(own_leaves.c.idx >= start, own_leaves.c.idx < size)
        .order_by(own_leaves.c.idx)
        .limit(limit)
    )
    out = [{"leaf": base64.b64encode(r.leaf).decode(), "content": None} for r in conn.execute(q)]
    end = start + len(out)
    return {"entries": out, "next": end if out and end < size else None}


def own_size(conn: Connection) -> int:
    row = conn.execute(select(own_state.c.size)).first()
    return 0 if row is None else int(row.size)


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _check_size(size: int, have: int) -> None:
    if not 0 <= size <= have:
        raise InputError(f"size {size} is larger than the verified tree ({have})")
