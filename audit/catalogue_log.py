"""Replay the catalogue's own log: leaves, root, and what it says about nodes.

Enrolments, retirements, revocations and the node checkpoints it recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from audit.fetcher import Entry
from audit.report import Report
from protocol.entries import CATALOGUE_OPS as ENTRY_CATALOGUE_OPS
from protocol.entries import parse_leaf
from protocol.errors import BiobankError
from protocol.keys import KeyHistory
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint

CATALOGUE_OPS = {
    "enrol": ("node", "url", "key", "country"),
    "retire": ("node",),
    "revoke": ("node", "key", "revoked_key", "from_size"),
    "checkpoint": ("node", "checkpoint"),
}


@dataclass
class RecordedCheckpoint:
    """A node checkpoint as the catalogue log recorded it (its leaf index, the note, its body)."""

    leaf: int
    note: str
    checkpoint: Checkpoint


@dataclass
class EnrolledNode:
    """What the catalogue log says about one node."""

    origin: str
    url: str
    country: str
    keys: KeyHistory
    enrolled_leaf: int
    retired: bool = False
    checkpoints: list[RecordedCheckpoint] = field(default_factory=list)


@dataclass
class CatalogueReplay:
    """The outcome of replaying the catalogue log up to its checkpoint."""

    nodes: dict[str, EnrolledNode] = field(default_factory=dict)
    size: int = 0
    root: bytes = b""


def _body(note: str) -> Checkpoint:
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise ValueError("no blank line before the signatures")
    return Checkpoint.from_text(body + "\n")


def replay_catalogue(
    entries: Iterable[Entry],
    *,
    origin: str,
    checkpoint: Checkpoint,
    report: Report,
    state_size: int | None = None,
    state_root: bytes | None = None,
) -> CatalogueReplay:
    """Stream the catalogue leaves: check each, rebuild the tree, learn the nodes."""
    log, replay = report["catalogue-log"], report["catalogue-replay"]
    cons = report["catalogue-consistency"]
    log.ran = replay.ran = True
    out = CatalogueReplay()
    compact = CompactRange()
    for index, (leaf, _content) in enumerate(entries):
        if state_size is not None and index == state_size:
            _check_state_root(compact, state_size, state_root, cons)
        where = f"catalogue leaf {index}"
        compact.append(leaf_hash(leaf))
        log.items += 1
        try:
            entry = parse_leaf(
                leaf, expected_log=origin, expected_index=index, allowed_ops=ENTRY_CATALOGUE_OPS
            )
        except BiobankError as exc:
            log.fail(where, f"{type(exc).__name__}: {exc}")
            continue
        _apply(entry, index, out, replay)
    out.size = compact.size
    out.root = compact.root()
    if state_size is not None and state_size == compact.size:
        _check_state_root(compact, state_size, state_root, cons)
    if compact.size != checkpoint.size:
        log.fail(
            "catalogue log", f"served {compact.size} leaves, checkpoint says {checkpoint.size}"
        )
    elif out.root != checkpoint.root:
        log.fail(
            "catalogue log",
            f"leaves rebuild root {out.root.hex()}, checkpoint signs "
            f"{checkpoint.root.hex()} (a leaf was altered, dropped or "
            "reordered)",
        )
    return out


def _check_state_root(compact: CompactRange, size: int, root: bytes | None, cons: Any) -> None:
    cons.ran = True
    cons.items += 1
    if compact.root() != root:
        cons.fail(
            f"catalogue leaves 0..{size - 1}",
            f"rebuild root {compact.root().hex()}, but the state file's verified "
            f"checkpoint of size {size} has root {(root or b'').hex()}: the catalogue "
            "rewrote its history (split view or fork)",
        )


def _apply(entry: dict[str, Any], index: int, out: CatalogueReplay, replay: Any) -> None:
    where = f"catalogue leaf {index}"
    op = entry.get("op")
    if op not in CATALOGUE_OPS:
        replay.fail(where, f"unknown op {op!r}")
        return
    missing = [f for f in CATALOGUE_OPS[op] if f not in entry]
    if missing:
        replay.fail(where, f"{op} leaf lacks field(s) {', '.join(missing)}")
        return
    replay.items += 1
    origin = str(entry["node"])
    node = out.nodes.get(origin)
    if op == "enrol":
        if node is not None and not node.retired:
            replay.fail(
                where, f"node {origin} enrolled again while enrolled (leaf {node.enrolled_leaf})"
            )
            return
        out.nodes[origin] = EnrolledNode(
            origin=origin,
            url=str(entry["url"]),
            country=str(entry["country"]),
            keys=KeyHistory(origin=origin, enrolled_key=str(entry["key"])),
            enrolled_leaf=index,
        )
        return
    if node is None:
        replay.fail(where, f"{op} for node {origin}, which is not enrolled")
        return
    if op == "retire":
        node.retired = True
    elif op == "revoke":
        from_size = entry["from_size"]
        if not isinstance(from_size, int) or from_size < 0:
            replay.fail(where, f"revoke from_size {from_size!r} is not a size")
            return
        node.keys.revoke(
            from_size=from_size, key=str(entry["key"]), revoked_key=str(entry["revoked_key"])
        )
    elif op == "checkpoint":
        if node.retired:
            replay.fail(where, f"checkpoint recorded for retired node {origin}")
        try:
            cp = _body(str(entry["checkpoint"]))
        except (ValueError, BiobankError) as exc:
            replay.fail(where, f"node checkpoint unreadable: {exc}")
            return
        if cp.origin != origin:
            replay.fail(where, f"checkpoint of {cp.origin!r} recorded for node {origin!r}")
            return
        if node.checkpoints and cp.size < node.checkpoints[-1].checkpoint.size:
            last = node.checkpoints[-1]
            replay.fail(
                where,
                f"node {origin} checkpoint size {cp.size} recorded after size "
                f"{last.checkpoint.size} (leaf {last.leaf}): rollback accepted",
            )
        node.checkpoints.append(RecordedCheckpoint(index, str(entry["checkpoint"]), cp))
