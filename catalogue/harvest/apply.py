"""Write a harvest step to the database: staged chunks, the final commit, failures, halts.

A step streams in as chunks of verified leaves. Each chunk is stored in its own transaction
as mirrored leaves ABOVE the node's `tree_size` (so neither the mirror, the search index nor
the rejection report shows them) with the compact range reached, in `harvest_staging`. The
final commit, once `StepVerifier.finish()` has matched the signed root, indexes the whole
step from the stored leaves, moves `tree_size` to the new checkpoint and appends the
catalogue-log `checkpoint` leaf, all in ONE transaction. Staging is only a resume point: a
killed harvest continues from it, and the final root check covers every staged leaf.
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from catalogue import subtrees
from catalogue.db import add_leaf_records, bulk_insert, write_tx
from catalogue.errors import FetchError
from catalogue.harvest.index import (
    GROUP,
    Keyed,
    PreparedStep,
    ReadAhead,
    index_step,
    key_group,
    pack_keyed,
    prepare_step,
    unpack_keyed,
)
from catalogue.harvest.refusals import count_refusal
from catalogue.models import (
    alerts,
    combos,
    harvest_keyed,
    harvest_staging,
    leaves,
    nodes,
    rejections,
)
from catalogue.ownlog import CatalogueKey, append, reserve
from catalogue.search.codes import Vocabulary
from catalogue.subtrees import TappedRange
from protocol.entries import utc_now
from protocol.verify import TrustedState, VerifiedEntry

__all__ = [
    "Chunk",
    "Position",
    "Withholding",
    "commit_chunk",
    "commit_final",
    "discard_staging",
    "record_failure",
    "record_halt",
    "record_unchanged",
]

WITHHOLDING = "withholding"  # the alert kind
LEAF_COLUMNS = ("node_id", "idx", "leaf", "hash", "kind", "record_id", "content")


@dataclass(frozen=True)
class Position:
    """Where one node's harvest stands in the database: verified size and staged size."""

    node_id: int
    origin: str
    country: str | None
    committed: int  # nodes.tree_size: the last accepted checkpoint
    staged: int  # leaves stored so far (== committed when nothing is staged)

    def advanced(self, staged: int) -> Position:
        return replace(self, staged=staged)


@dataclass(repr=False)  # a chunk holds many leaves: never format it whole
class Chunk:
    """Verified leaves waiting to be stored (bounded by CATALOGUE_HARVEST_CHUNK)."""

    node_id: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # in LEAF_COLUMNS order
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # its sample groups keyed here, where each content is parsed anyway (`key_group`), so
    # that the final commit need not read them back and parse them under the write lock
    keyed: list[Keyed] = field(default_factory=list)
    memo: dict[Any, Any] = field(default_factory=dict)  # `key_group`'s shared parts
    # the verifier's compact range, which kept the subtree hashes its leaves complete
    # (`subtrees.TappedRange`): stored from it, not computed again (None: computed)
    tap: TappedRange | None = None
    # its keyed groups already packed as stored (`pack_keyed`): a chunk read back from the
    # harvest's spill file (`stream._Spill`) carries them so, not as `keyed`
    packed: bytes | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, v: VerifiedEntry) -> None:
        """Take one verified leaf (in index order), its content as JSON text."""
        entry = v.entry
        kind, rid = entry.get("kind", ""), entry.get("id", "")
        # the canonical bytes the verifier hashed (sorted keys): the same JSON, not encoded twice
        if v.content is None:
            raw = None
        elif v.body is not None:
            raw = v.body.decode()
        else:
            raw = orjson.dumps(v.content).decode()
        # the leaf and its hash as bytearray: sqlite3 binds a bytes value through its adapter
        # look-up (about 0.3 µs each: `catalogue.db.bulk_insert`), a bytearray directly
        self.rows.append(
            (self.node_id, v.index, bytearray(v.leaf), bytearray(v.leaf_hash), kind, rid, raw)
        )
        if not v.problems:
            if kind == GROUP and v.content is not None:
                keyed = key_group(v.index, v.content, self.memo, rid)
                if keyed is not None:
                    self.keyed.append(keyed)
        else:
            self.rejected.append(
                {
                    "node_id": self.node_id,
                    "idx": v.index,
                    "kind": kind,
                    "record_id": rid,
                    "problems": orjson.dumps([str(p) for p in v.problems]).decode(),
                }
            )


def _check_position(conn: Connection, pos: Position) -> None:
    row = conn.execute(
        select(nodes.c.tree_size, nodes.c.state).where(nodes.c.id == pos.node_id).with_for_update()
    ).one()
    staged = conn.execute(
        select(harvest_staging.c.size).where(harvest_staging.c.node_id == pos.node_id)
    ).scalar()
    if (
        row.tree_size != pos.committed
        or row.state != "active"
        or (staged if staged is not None else row.tree_size) != pos.staged
    ):
        raise FetchError(
            f"{pos.origin}: changed by another harvester during this one "
            f"(size {row.tree_size}, staged {staged}, state {row.state}); "
            "try again"
        )


def _store(conn: Connection, chunk: Chunk) -> None:
    rows = chunk.rows
    bulk_insert(conn, leaves, LEAF_COLUMNS, rows)
    if rows and rows[-1][1] - rows[0][1] == len(rows) - 1:  # leaves lo .. hi - 1, in order
        # the subtree hashes these leaves complete, from their hashes in hand: the final
        # commit need not read every leaf hash back (`discard_staging` drops them again)
        lo, hi = rows[0][1], rows[-1][1] + 1
        computed = chunk.tap.take(lo, hi) if chunk.tap is not None else None
        subtrees.extend(conn, chunk.node_id, hi, [r[3] for r in rows], lo, computed)
    # (PostgreSQL's `leaf_records` is a view over an index of `leaves` that this COPY keeps)
    if chunk.keyed or chunk.packed is not None:
        data = chunk.packed  # packed once: a chunk read back from the spill, as packed there
        if data is None or chunk.keyed:
            keyed = chunk.keyed
            if chunk.packed is not None:
                keyed = [*(unpack_keyed(chunk.packed) or []), *keyed]
            data = pack_keyed(keyed)
        conn.execute(
            harvest_keyed.insert().values(
                node_id=chunk.node_id, lo=chunk.rows[0][1], hi=chunk.rows[-1][1] + 1, data=data
            )
        )
    if chunk.rejected:
        conn.execute(rejections.insert(), chunk.rejected)


def commit_chunk(
    engine: Engine,
    pos: Position,
    chunk: Chunk,
    *,
    size: int,
    compact: dict[str, Any],
    checkpoint: str,
    wait: bool = True,
) -> Position:
    """Store a verified chunk ending at `size` as staged (invisible); the new position.
    `wait=False` (SQLite): `db.WriteLockBusy` at once if another writer holds the lock.

    On PostgreSQL the chunk's transaction commits without waiting for its WAL to reach the
    disk (`synchronous_commit = off`, for this transaction only): a crash may lose the last
    chunks stored, never part of one (the WAL is replayed in order, each chunk is one
    transaction with its `harvest_staging` row), and a resumed harvest fetches again from
    the staged size that survived. The step's final commit waits for the disk as every other
    write does, and with its WAL everything written before it, so accepted state stays
    durable."""
    with write_tx(engine, wait=wait) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        _check_position(conn, pos)
        _store(conn, chunk)
        conn.execute(harvest_staging.delete().where(harvest_staging.c.node_id == pos.node_id))
        conn.execute(
            harvest_staging.insert().values(
                node_id=pos.node_id,
                size=size,
                compact=orjson.dumps(compact).decode(),
                checkpoint=checkpoint,
            )
        )
    return pos.advanced(size)


def commit_final(
    engine: Engine,
    key: CatalogueKey,
    pos: Position,
    chunk: Chunk,
    state: TrustedState,
) -> None:
    """The step is verified: store the last chunk, index the whole step, accept the checkpoint
    and append a catalogue-log leaf, atomically.

    The last chunk is staged like the others first, and the step's leaves are read back and
    keyed (`prepare_step`) before the write transaction, so on SQLite the one write lock is
    held only to write; on PostgreSQL, where nothing waits for that transaction, they are
    keyed by a thread while it writes (`index.ReadAhead`). The transaction checks the
    position again, so what was read is still what is indexed."""
    if len(chunk):
        pos = commit_chunk(
            engine,
            pos,
            chunk,
            size=state.size,
            compact=state.compact.to_json(),
            checkpoint=state.checkpoint,
        )
    if engine.dialect.name == "postgresql":
        # the step keyed by a thread while the transaction writes (`ReadAhead`)
        with _no_cyclic_gc(), engine.connect() as reader:
            prepared = prepare_step(reader, pos.node_id, pos.committed, state.size, budget=0)
            ahead = ReadAhead(reader, prepared) if prepared.upto < state.size else None
            try:
                _final_tx(engine, key, pos, state, prepared)
            finally:
                if ahead is not None:
                    ahead.close()
                del prepared, ahead  # freed before the collector resumes (as below)
        return
    # one pause of the collector over both, the step's objects freed before it resumes: the
    # first allocation after `gc.enable` collects whatever the pause left alive (re-enabled
    # between the two with the prepared step alive, that pass cost 0.4 µs an entry)
    with _no_cyclic_gc():
        with engine.connect() as conn:
            prepared = prepare_step(conn, pos.node_id, pos.committed, state.size)
        _final_tx(engine, key, pos, state, prepared)
        del prepared


def _final_tx(
    engine: Engine, key: CatalogueKey, pos: Position, state: TrustedState, prepared: PreparedStep
) -> None:
    with write_tx(engine) as conn:
        _check_position(conn, pos)
        add_leaf_records(  # SQLite (PostgreSQL's view reads the leaves: `db._records_view`)
            conn,
            leaves.c.node_id == pos.node_id,
            leaves.c.idx >= pos.committed,
            leaves.c.idx < state.size,
        )
        index_step(
            conn,
            pos.node_id,
            pos.committed,
            state.size,
            country=pos.country,
            vocab=Vocabulary.default(),
            stamp=lambda: reserve(conn, key),
            prepared=prepared,
        )
        now = utc_now()
        conn.execute(
            nodes.update()
            .where(nodes.c.id == pos.node_id)
            .values(
                tree_size=state.size,
                root=base64.b64encode(state.root).decode(),
                compact=orjson.dumps(state.compact.to_json()).decode(),
                checkpoint=state.checkpoint,
                verified_at=now,
                last_attempt_at=now,
                last_success_at=now,
                last_error=None,
                remote_size=state.size,
                withholding_since=None,
            )
        )
        _end_withholding(conn, pos.node_id, now)
        conn.execute(harvest_staging.delete().where(harvest_staging.c.node_id == pos.node_id))
        conn.execute(harvest_keyed.delete().where(harvest_keyed.c.node_id == pos.node_id))
        subtrees.extend(conn, pos.node_id, state.size)  # proofs in O(log n) reads
        append(conn, key, "checkpoint", node=pos.origin, checkpoint=state.checkpoint)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: keying and indexing a step allocate several
    containers per leaf, none of them in a reference cycle (reference counting frees them),
    so the collector's passes over them are pure cost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def discard_staging(conn: Connection, node_id: int) -> None:
    """Forget a step in progress: its stored leaves and rejections above `tree_size`, and the
    node's combos that count nothing."""
    size = conn.execute(select(nodes.c.tree_size).where(nodes.c.id == node_id)).scalar_one()
    conn.execute(leaves.delete().where(leaves.c.node_id == node_id, leaves.c.idx >= size))
    subtrees.drop_above(conn, node_id, size)  # those of staged leaves (`_store`)
    conn.execute(
        rejections.delete().where(rejections.c.node_id == node_id, rejections.c.idx >= size)
    )
    conn.execute(harvest_staging.delete().where(harvest_staging.c.node_id == node_id))
    conn.execute(harvest_keyed.delete().where(harvest_keyed.c.node_id == node_id))
    conn.execute(combos.delete().where(combos.c.node_id == node_id, combos.c.n_max == 0))


def record_unchanged(engine: Engine, node_id: int, size: int) -> None:
    """The node's verified checkpoint is the one we hold: a successful, empty harvest."""
    now = utc_now()
    with write_tx(engine) as conn:
        conn.execute(
            nodes.update()
            .where(nodes.c.id == node_id)
            .values(
                last_attempt_at=now,
                last_success_at=now,
                last_error=None,
                remote_size=size,
                withholding_since=None,
            )
        )
        _end_withholding(conn, node_id, now)


@dataclass(frozen=True)
class Withholding:
    """A failed attempt because the node withholds the leaves of a checkpoint it signed:
    both signed checkpoints (evidence) and CATALOGUE_WITHHOLD_AFTER."""

    trusted_checkpoint: str | None
    new_checkpoint: str
    alert_after: float


def record_failure(
    engine: Engine,
    node_id: int,
    error: str,
    remote_size: int | None,
    *,
    discard: bool = False,
    withholding: Withholding | None = None,
) -> None:
    """Note a failed attempt; the verified state is untouched (staging dropped if asked).
    Withholding that has lasted `alert_after` seconds raises a "withholding" alert (once)."""
    now = utc_now()
    values: dict[str, Any] = {"last_attempt_at": now, "last_error": error}
    if remote_size is not None:
        values["remote_size"] = remote_size
    with write_tx(engine) as conn:
        if withholding is not None:
            since = conn.execute(
                select(nodes.c.withholding_since).where(nodes.c.id == node_id)
            ).scalar()
            values["withholding_since"] = since or now
            if _seconds_between(since or now, now) >= withholding.alert_after:
                _alert_withholding(conn, node_id, error, withholding, since or now, now)
        conn.execute(nodes.update().where(nodes.c.id == node_id).values(**values))
        count_refusal(conn, node_id, error)
        if discard:
            discard_staging(conn, node_id)


def _seconds_between(earlier: str, later: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.strptime(later, fmt) - datetime.strptime(earlier, fmt)).total_seconds()


def _alert_withholding(
    conn: Connection, node_id: int, error: str, w: Withholding, since: str, now: str
) -> None:
    """One open "withholding" alert per node (kept with both signed checkpoints)."""
    open_alert = conn.execute(
        select(alerts.c.id).where(
            alerts.c.node_id == node_id,
            alerts.c.kind == WITHHOLDING,
            alerts.c.cleared_at.is_(None),
        )
    ).first()
    if open_alert is not None:
        return
    conn.execute(
        alerts.insert().values(
            node_id=node_id,
            kind=WITHHOLDING,
            message=f"withholding since {since}: {error}",
            old_checkpoint=w.trusted_checkpoint,
            new_checkpoint=w.new_checkpoint,
            created_at=now,
        )
    )


def _end_withholding(conn: Connection, node_id: int, now: str) -> None:
    """The node serves what it signs again: its open withholding alert is cleared."""
    conn.execute(
        alerts.update()
        .where(
            alerts.c.node_id == node_id,
            alerts.c.kind == WITHHOLDING,
            alerts.c.cleared_at.is_(None),
        )
        .values(cleared_at=now)
    )


def record_halt(
    engine: Engine,
    node_id: int,
    kind: str,
    message: str,
    trusted_checkpoint: str | None,
    new_checkpoint: str | None,
) -> None:
    """Halt the node, drop any step in progress and keep both signed checkpoints in an alert."""
    now = utc_now()
    with write_tx(engine) as conn:
        conn.execute(
            nodes.update()
            .where(nodes.c.id == node_id)
            .values(state="halted", last_attempt_at=now, last_error=message)
        )
        count_refusal(conn, node_id, message)
        discard_staging(conn, node_id)
        conn.execute(
            alerts.insert().values(
                node_id=node_id,
                kind=kind,
                message=message,
                old_checkpoint=trusted_checkpoint,
                new_checkpoint=new_checkpoint,
                created_at=now,
            )
        )
