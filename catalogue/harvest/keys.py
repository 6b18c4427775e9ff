"""Node key histories: the enrolled key, `rotate-key` entries (from the mirrored leaves, so they
are committed with the harvest step that verified them) and the operator's revocations.

`revoke()` is the operator's action: one transaction appends a `revoke` leaf to the
catalogue's own log, records the revocation and clears a halt. The rules the keys follow are
`protocol.keys.KeyHistory`, the same for the harvest and the auditor.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from catalogue.db import write_tx
from catalogue.errors import RevocationError, UnknownNode
from catalogue.harvest.apply import discard_staging
from catalogue.models import ROTATION, alerts, key_events, leaves, nodes
from catalogue.ownlog import CatalogueKey, append
from protocol.entries import utc_now
from protocol.errors import ConfigError
from protocol.keys import KeyHistory
from protocol.note import Verifier

__all__ = ["load_history", "node_keys", "public_history", "revoke"]


def load_history(conn: Connection, row: Any, *, upto: int | None = None) -> KeyHistory:
    """The key history of the node in `row` (a `nodes` row) as far as the catalogue verified
    (or, with `upto`, including the leaves a harvest in progress has staged below it)."""
    history = KeyHistory(origin=row.origin, enrolled_key=row.key)
    end = int(row.tree_size) if upto is None else upto
    # rotate-key leaves are the only ones without a kind (see catalogue.harvest.apply). The bound on
    # idx and the order are applied here, not in SQL: with either, SQLite may prefer the
    # primary key and read every leaf of the node (0.5 s per status call at 1M samples) instead
    # of the partial index ix_leaves_rotations, which holds only the rotate-key leaves.
    found = conn.execute(
        select(leaves.c.idx, leaves.c.leaf).where(
            leaves.c.node_id == row.id, leaves.c.kind == ROTATION
        )
    ).all()
    for idx, leaf in sorted(found):
        if idx >= end:
            break
        entry = orjson.loads(leaf)
        if entry.get("op") == "rotate-key":
            history.rotate(index=int(idx), key=str(entry["key"]))
    for ev in conn.execute(
        select(key_events).where(key_events.c.node_id == row.id).order_by(key_events.c.id)
    ):
        history.revoke(from_size=int(ev.from_size), key=ev.key, revoked_key=ev.revoked_key)
    return history


def public_history(history: KeyHistory) -> dict[str, Any]:
    """The key fields of /v1/nodes/{origin}: the key in force now and how it came to be."""
    return {
        "verifier_key": history.current_key(),
        "enrolled_key": history.enrolled_key,
        "key_history": [
            {
                "kind": e.kind,
                "key": e.key,
                **(
                    {"index": e.at}
                    if e.kind == "rotate"
                    else {"from_size": e.at, "revoked_key": e.revoked}
                ),
            }
            for e in history.events
        ],
    }


def node_keys(conn: Connection, origin: str) -> dict[str, Any]:
    """`public_history` of the node `origin`; UnknownNode when it is not enrolled."""
    row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
    if row is None:
        raise UnknownNode(f"no enrolled node with origin {origin!r}")
    return public_history(load_history(conn, row))


def revoke(
    engine: Engine, key: CatalogueKey, origin: str, new_key: str, from_size: int | None = None
) -> dict[str, Any]:
    """Revoke the node's key in force for sizes > `from_size` (default: the verified size).

    `new_key` (obtained out of band) is in force afterwards. Appends a `revoke` leaf, and a
    halted node becomes active again (its open alerts are cleared).
    """
    with write_tx(engine) as conn:
        row = conn.execute(select(nodes).where(nodes.c.origin == origin).with_for_update()).first()
        if row is None:
            raise UnknownNode(f"no enrolled node with origin {origin!r}")
        _check_new_key(origin, new_key)
        if row.state == "retired":
            raise RevocationError(f"revoke {origin}: the node is retired")
        verified = int(row.tree_size)
        size = verified if from_size is None else from_size
        if size < 0 or size > verified:
            raise RevocationError(
                f"revoke {origin}: from size {size} must be between 0 and {verified}, the size "
                "the catalogue last verified for this node; nothing was recorded"
            )
        history = load_history(conn, row)
        revoked = history.key_at(size + 1)
        current = history.current_key()
        if revoked != current:
            raise RevocationError(
                f"revoke {origin}: the key changed after size {size} (now "
                f"{_short(current)}); revoke from a size at or after that change"
            )
        if new_key in history.all_keys():
            raise RevocationError(
                f"revoke {origin}: the new key {_short(new_key)} was already "
                "used by this node; give a fresh key"
            )
        index = append(
            conn, key, "revoke", node=origin, key=new_key, revoked_key=revoked, from_size=size
        )
        now = utc_now()
        conn.execute(
            key_events.insert().values(
                node_id=row.id,
                kind="revoke",
                from_size=size,
                key=new_key,
                revoked_key=revoked,
                own_leaf=index,
                created_at=now,
            )
        )
        # a step in progress was verified under the revoked key: it starts again
        discard_staging(conn, row.id)
        cleared = 0
        if row.state == "halted":
            conn.execute(nodes.update().where(nodes.c.id == row.id).values(state="active"))
            cleared = int(
                conn.execute(
                    alerts.update()
                    .where(alerts.c.node_id == row.id, alerts.c.cleared_at.is_(None))
                    .values(cleared_at=now)
                ).rowcount
            )
    return {
        "origin": origin,
        "revoked_key": revoked,
        "verifier_key": new_key,
        "from_size": size,
        "state": "active",
        "alerts_cleared": cleared,
        "catalogue_leaf": index,
    }


def _check_new_key(origin: str, new_key: str) -> None:
    try:
        name = Verifier.from_key(new_key).name
    except ConfigError as exc:
        raise RevocationError(f"revoke {origin}: the new key is malformed: {exc.message}") from exc
    if name != origin:
        raise RevocationError(
            f"revoke {origin}: the new key is named {name!r}, not the node's origin"
        )


def _short(vkey: str) -> str:
    return "+".join(vkey.split("+")[:2])
