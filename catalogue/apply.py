"""Write one verified harvest step (or a failure, or a halt) to the database in one transaction."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, and_, bindparam, select

from catalogue.codes import Vocabulary
from catalogue.db import bulk_insert, write_tx
from catalogue.errors import FetchError
from catalogue.index import Change, apply_records, apply_samples, combo_key, refresh_countries
from catalogue.models import alerts, leaves, nodes, rejections
from catalogue.ownlog import CatalogueKey, append
from protocol.entries import utc_now
from protocol.merkle import leaf_hash
from protocol.verify import TrustedState, VerifiedEntry

LEAF_COLUMNS = ("node_id", "idx", "leaf", "hash", "kind", "record_id", "content")


@dataclass(repr=False)  # a step holds every leaf: never format it whole
class StepData:
    """Everything one verified step writes: leaves, record changes, rejections, new tree state."""

    node_id: int
    origin: str
    country: str | None
    old_size: int
    new_size: int = 0
    root: bytes = b""
    compact: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    leaf_rows: list[list[Any]] = field(default_factory=list)  # in LEAF_COLUMNS order
    changes: dict[str, dict[str, Change]] = field(default_factory=dict)
    erase: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def add(self, v: VerifiedEntry) -> None:
        """Take one verified leaf (in index order)."""
        entry, idx, content = v.entry, v.index, v.content
        op = entry["op"]
        kind, rid = entry.get("kind", ""), entry.get("id", "")
        # Content travels as JSON text and samples as their combo key: small to pickle back
        # from a worker process, and all the writer needs.
        self.leaf_rows.append([self.node_id, idx, v.leaf, leaf_hash(v.leaf), kind, rid,
                               None if content is None else orjson.dumps(content).decode()])
        changes = self.changes.setdefault(kind, {})
        if op == "publish":
            if v.problems:
                self.rejected.append({"node_id": self.node_id, "idx": idx, "kind": kind,
                                      "record_id": rid, "problems": orjson.dumps(
                                          [str(p) for p in v.problems]).decode()})
                changes[rid] = None
            elif content is None:
                changes[rid] = None  # erased at the node: nothing to index
            elif kind == "sample":
                changes[rid] = (idx, combo_key(content))
            else:
                changes[rid] = (idx, content)
        elif op == "withdraw":
            changes[rid] = None
            self.erase[(kind, rid)] = idx

    def finish(self, state: TrustedState) -> None:
        """Seal the step with the verified new tree state."""
        self.new_size, self.root = state.size, state.root
        self.compact, self.checkpoint = state.compact.to_json(), state.checkpoint
        if self.erase:  # content withdrawn later in this same step is never stored
            for r in self.leaf_rows:
                w = self.erase.get((r[4], r[5]))
                if w is not None and r[1] < w:
                    r[6] = None


def apply_step(engine: Engine, key: CatalogueKey, step: StepData) -> None:
    """Commit a verified step atomically, with its checkpoint and a catalogue-log leaf."""
    vocab = Vocabulary.default()
    with write_tx(engine) as conn:
        row = conn.execute(select(nodes).where(nodes.c.id == step.node_id)
                           .with_for_update()).one()
        if row.tree_size != step.old_size or row.state != "active":
            raise FetchError(f"{step.origin}: changed by another harvester during this one "
                             f"(size {row.tree_size}, state {row.state}); try again")
        bulk_insert(conn, leaves, LEAF_COLUMNS, step.leaf_rows)
        old_erase = [{"k": k, "r": r, "w": w} for (k, r), w in step.erase.items()]
        if old_erase and step.old_size:
            conn.execute(leaves.update().where(and_(
                leaves.c.node_id == step.node_id, leaves.c.kind == bindparam("k"),
                leaves.c.record_id == bindparam("r"), leaves.c.idx < bindparam("w"),
                leaves.c.idx < step.old_size)).values(content=None), old_erase)
        apply_records(conn, step.node_id, "biobank", step.changes.get("biobank", {}))
        apply_records(conn, step.node_id, "collection", step.changes.get("collection", {}))
        apply_samples(conn, step.node_id, step.changes.get("sample", {}),
                      fresh=step.old_size == 0, vocab=vocab)
        if step.changes.get("biobank") or step.changes.get("sample"):
            refresh_countries(conn, step.node_id, step.country)
        if step.rejected:
            conn.execute(rejections.insert(), step.rejected)
        now = utc_now()
        conn.execute(nodes.update().where(nodes.c.id == step.node_id).values(
            tree_size=step.new_size, root=base64.b64encode(step.root).decode(),
            compact=orjson.dumps(step.compact).decode(), checkpoint=step.checkpoint,
            verified_at=now, last_attempt_at=now, last_success_at=now, last_error=None,
            remote_size=step.new_size))
        append(conn, key, "checkpoint", node=step.origin, checkpoint=step.checkpoint)


def record_unchanged(engine: Engine, node_id: int, size: int) -> None:
    """The node's verified checkpoint is the one we hold: a successful, empty harvest."""
    now = utc_now()
    with write_tx(engine) as conn:
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(
            last_attempt_at=now, last_success_at=now, last_error=None, remote_size=size))


def record_failure(engine: Engine, node_id: int, error: str, remote_size: int | None) -> None:
    """Note a failed attempt; the node's verified state is untouched."""
    values: dict[str, Any] = {"last_attempt_at": utc_now(), "last_error": error}
    if remote_size is not None:
        values["remote_size"] = remote_size
    with write_tx(engine) as conn:
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(**values))


def record_halt(engine: Engine, node_id: int, kind: str, message: str,
                trusted_checkpoint: str | None, new_checkpoint: str | None) -> None:
    """Halt the node and keep both signed checkpoints as evidence in an alert."""
    now = utc_now()
    with write_tx(engine) as conn:
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(
            state="halted", last_attempt_at=now, last_error=message))
        conn.execute(alerts.insert().values(
            node_id=node_id, kind=kind, message=message, old_checkpoint=trusted_checkpoint,
            new_checkpoint=new_checkpoint, created_at=now))
