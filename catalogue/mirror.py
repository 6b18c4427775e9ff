"""Read side of mirrored node logs and of the catalogue's own log: entries, checkpoints, proofs."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import Connection, select

from catalogue.errors import UnknownNode
from catalogue.models import leaves, nodes, own_leaves, own_state
from protocol.errors import InputError
from protocol.merkle import consistency_proof, inclusion_proof

__all__ = [
    "consistency",
    "inclusion",
    "node_checkpoint",
    "node_entries",
    "node_hashes",
    "own_checkpoint",
    "own_entries",
    "own_hashes",
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


def node_hashes(conn: Connection, origin: str, size: int) -> list[bytes]:
    row = node_row(conn, origin)
    _check_size(size, int(row.tree_size))
    q = (
        select(leaves.c.hash)
        .where(leaves.c.node_id == row.id, leaves.c.idx < size)
        .order_by(leaves.c.idx)
    )
    return [bytes(h) for (h,) in conn.execute(q)]


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


def own_hashes(conn: Connection, size: int) -> list[bytes]:
    _check_size(size, own_size(conn))
    q = select(own_leaves.c.hash).where(own_leaves.c.idx < size).order_by(own_leaves.c.idx)
    return [bytes(h) for (h,) in conn.execute(q)]


def inclusion(hashes: list[bytes], index: int, size: int) -> dict[str, list[str]]:
    if not 0 <= index < size:
        raise InputError(f"index {index} is outside a tree of size {size}")
    return {"proof": [base64.b64encode(h).decode() for h in inclusion_proof(hashes, index, size)]}


def consistency(hashes: list[bytes], size1: int, size2: int) -> dict[str, list[str]]:
    if not 0 < size1 <= size2:
        raise InputError(f"consistency needs 0 < from <= to, got from={size1} to={size2}")
    return {
        "proof": [base64.b64encode(h).decode() for h in consistency_proof(hashes, size1, size2)]
    }


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _check_size(size: int, have: int) -> None:
    if not 0 <= size <= have:
        raise InputError(f"size {size} is larger than the verified tree ({have})")
