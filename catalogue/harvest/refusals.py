"""Failed and refused harvest attempts, counted by kind (for the refusals metric).

The kind is the error class that ended the attempt, read from the recorded error text
(``"SignatureError: ..."``); a step that ran out of time is ``Timeout``, a bug ``InternalError``.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection

from catalogue.models import harvest_refusals

__all__ = ["count_refusal", "refusal_kind"]

_CLASS = re.compile(r"([A-Z][A-Za-z0-9]*(?:Error|Mismatch|Entry|Halted)?): ")


def refusal_kind(error: str) -> str:
    """The kind of a recorded harvest error (its leading error class name)."""
    if error.startswith("internal error"):
        return "InternalError"
    if "did not finish within" in error:
        return "Timeout"
    match = _CLASS.match(error)
    return match.group(1) if match else "Other"


def count_refusal(conn: Connection, node_id: int, error: str) -> None:
    """Add one to the node's count of this error's kind (inside the caller's transaction)."""
    kind = refusal_kind(error)
    where = (harvest_refusals.c.node_id == node_id) & (harvest_refusals.c.kind == kind)
    done = conn.execute(harvest_refusals.update().where(where).values(n=harvest_refusals.c.n + 1))
    if done.rowcount == 0:
        conn.execute(harvest_refusals.insert().values(node_id=node_id, kind=kind, n=1))
