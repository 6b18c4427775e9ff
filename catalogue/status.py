"""Node status: last harvest, tree size, lag, staleness, alerts and rejection counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from catalogue.errors import UnknownNode
from catalogue.harvest.keys import load_history
from catalogue.models import alerts, nodes, rejections

__all__ = ["is_stale", "list_status", "node_detail", "public_error"]

# What public status must not show of a harvest error: where the catalogue connected to
# (URLs, IP addresses, host:port, Python's ('addr', port) tuples). The operator's
# `biobank-catalogue status` shows the error whole.
_ADDRESS = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s/?#'\"<>]+"  # a URL's scheme and authority (the path stays)
    r"|\(\s*'[^']*'\s*,\s*\d+[^)]*\)"  # ('10.0.0.5', 8080)
    r"|\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\](?::\d+)?"  # [::1]:8080
    r"|\b[0-9a-fA-F]*::[0-9a-fA-F:]*\b"  # fe80::1
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # 10.0.0.5:8080
    r"|\b(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+):\d{1,5}\b",  # host.example:8080
    re.IGNORECASE,
)


def public_error(text: str | None) -> str | None:
    """A harvest error as public status shows it: every address replaced by ``[address]``."""
    return None if text is None else _ADDRESS.sub("[address]", text)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def is_stale(last_success_at: str | None, stale_after: float, now: datetime | None = None) -> bool:
    last = parse_time(last_success_at)
    if last is None:
        return True
    now = now or datetime.now(UTC)
    return (now - last).total_seconds() > stale_after


def list_status(
    conn: Connection,
    stale_after: float,
    *,
    include_retired: bool = True,
    full_errors: bool = False,
    keys: bool = True,
) -> list[dict[str, Any]]:
    """Status of every enrolled node, ordered by origin; ``last_error`` without addresses
    unless ``full_errors`` (the operator's CLI). Without ``keys`` the ``verifier_key`` (read
    from the node's key history) is None: a search needs none and saves that read."""
    alert_counts: dict[int, int] = dict(
        conn.execute(
            select(alerts.c.node_id, func.count())
            .where(alerts.c.cleared_at.is_(None))
            .group_by(alerts.c.node_id)
        ).all()
    )
    # rejections of a step still being harvested (beyond tree_size) are not reported yet
    reject_counts: dict[int, int] = dict(
        conn.execute(
            select(rejections.c.node_id, func.count())
            .join(nodes, nodes.c.id == rejections.c.node_id)
            .where(rejections.c.idx < nodes.c.tree_size)
            .group_by(rejections.c.node_id)
        ).all()
    )
    q = select(nodes).order_by(nodes.c.origin)
    if not include_retired:
        q = q.where(nodes.c.state != "retired")
    out = []
    for row in conn.execute(q):
        lag = None if row.remote_size is None else max(row.remote_size - row.tree_size, 0)
        out.append(
            {
                "origin": row.origin,
                "url": row.url,
                "name": row.name,
                "country": row.country,
                # the key in force now
                "verifier_key": load_history(conn, row).current_key() if keys else None,
                "enrolled_key": row.key,
                "state": row.state,
                "k": row.k,
                "enrolled_at": row.enrolled_at,
                "retired_at": row.retired_at,
                "tree_size": row.tree_size,
                "remote_size": row.remote_size,
                "lag": lag,
                "verified_at": row.verified_at,
                "last_attempt_at": row.last_attempt_at,
                "last_success_at": row.last_success_at,
                "last_error": row.last_error if full_errors else public_error(row.last_error),
                # since when it signs a larger checkpoint without serving its leaves
                "withholding_since": row.withholding_since,
                "stale": row.state != "retired" and is_stale(row.last_success_at, stale_after),
                "alerts": int(alert_counts.get(row.id, 0)),
                "rejections": int(reject_counts.get(row.id, 0)),
            }
        )
    return out


def node_detail(conn: Connection, origin: str, stale_after: float) -> dict[str, Any]:
    """One node's status plus its policy, alerts (with evidence) and rejection report."""
    row = conn.execute(select(nodes).where(nodes.c.origin == origin)).first()
    if row is None:
        raise UnknownNode(f"no enrolled node with origin {origin!r}")
    status = next(s for s in list_status(conn, stale_after) if s["origin"] == origin)
    descriptor = orjson.loads(row.descriptor)
    status["policy"] = descriptor.get("policy")
    status["alert_list"] = [
        {
            "id": a.id,
            "kind": a.kind,
            "message": a.message,
            "created_at": a.created_at,
            "cleared_at": a.cleared_at,
            "trusted_checkpoint": a.old_checkpoint,
            "new_checkpoint": a.new_checkpoint,
        }
        for a in conn.execute(
            select(alerts).where(alerts.c.node_id == row.id).order_by(alerts.c.id)
        )
    ]
    status["rejection_report"] = rejection_report(conn, row.id, below=int(row.tree_size))
    return status


def rejection_report(
    conn: Connection, node_id: int, limit: int = 1000, *, below: int | None = None
) -> list[dict[str, Any]]:
    """Records kept out of the index (of the accepted log: leaves below `below`)."""
    q = select(rejections).where(rejections.c.node_id == node_id)
    if below is not None:
        q = q.where(rejections.c.idx < below)
    return [
        {"index": r.idx, "kind": r.kind, "id": r.record_id, "problems": orjson.loads(r.problems)}
        for r in conn.execute(q.order_by(rejections.c.idx).limit(limit))
    ]
