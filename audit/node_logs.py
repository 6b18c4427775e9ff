"""Audit one node's log as the catalogue mirrors it, in one streaming pass.

Rebuilds the tree, checks every checkpoint signature and root and every content, and
counts the live records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from audit.catalogue_log import EnrolledNode
from audit.fetcher import Entry
from audit.livestate import NodeLive
from audit.report import Report
from protocol.canonical import canonical
from protocol.entries import parse_leaf
from protocol.errors import BiobankError
from protocol.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from protocol.note import Checkpoint

# (kind or $id, record, location) -> list of problems, [] when valid
SchemaCheck = Callable[[str, Any, str], list[Any]]


@dataclass
class CheckpointClaim:
    """A checkpoint to match against the rebuilt tree, and whether to check its signature."""

    label: str
    note: str
    checkpoint: Checkpoint
    previous_size: int | None  # None: signature checked elsewhere (or not required here)
    check: str = "node-tree"  # the report check that a root or signature failure belongs to


@dataclass
class NodeAudit:
    """The claims to verify for one node, filled before streaming its mirror."""

    node: EnrolledNode
    claims: dict[int, list[CheckpointClaim]] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)  # rebuilt roots at claimed sizes

    def claim(self, claim: CheckpointClaim) -> None:
        self.claims.setdefault(claim.checkpoint.size, []).append(claim)


def _check_claims(audit: NodeAudit, size: int, root: bytes, report: Report) -> None:
    audit.roots[size] = root
    for claim in audit.claims.get(size, ()):
        tree = report[claim.check]
        sigs = report["node-checkpoint-signatures" if claim.check == "node-tree" else claim.check]
        tree.items += 1
        if claim.checkpoint.root != root:
            tree.fail(claim.label, f"signed root {claim.checkpoint.root.hex()} but the mirror's "
                                   f"first {size} leaves rebuild {root.hex()}")
        if claim.previous_size is None:
            continue
        sigs.items += 1
        try:
            audit.node.keys.verify(claim.note, previous_size=claim.previous_size)
        except BiobankError as exc:
            sigs.fail(claim.label, f"{type(exc).__name__}: {exc}")


def stream_node(audit: NodeAudit, entries: Iterable[Entry], *, report: Report,
                schema_problems: SchemaCheck, live: NodeLive) -> int:
    """One pass over the mirror's leaves; returns how many leaves were served."""
    tree = report["node-tree"]
    for name in ("node-checkpoint-signatures", "node-tree", "content-digest", "content-schema",
                 "withdrawn-content"):
        report[name].ran = True
    claims = audit.claims
    compact = CompactRange()
    sha256 = hashlib.sha256
    index = -1
    if 0 in claims:
        _check_claims(audit, 0, EMPTY_ROOT, report)
    for index, (leaf, content) in enumerate(entries):
        compact.append(leaf_hash(leaf))
        _entry(audit, index, leaf, content, report, schema_problems, live, sha256)
        # after the entry: a rotate-key at index i already governs a checkpoint of size i+1
        if index + 1 in claims:
            _check_claims(audit, index + 1, compact.root(), report)
    served = index + 1
    for size, claim_list in claims.items():
        if size > served:
            for claim in claim_list:
                if claim.check != "node-tree":
                    continue  # a node ahead of its mirror is checked by consistency proof
                tree.items += 1
                tree.fail(claim.label, f"checkpoint size {size} but the mirror serves only "
                                       f"{served} leaves (entries dropped)")
    return served


def _entry(audit: NodeAudit, index: int, leaf: bytes, content: Any, report: Report,
           schema_problems: SchemaCheck, live: NodeLive, sha256: Any) -> None:
    """Check one mirrored leaf and its content, and apply it to the live state."""
    origin = audit.node.origin
    tree, digests, schemas = report["node-tree"], report["content-digest"], report["content-schema"]
    withdrawn = report["withdrawn-content"]
    where = f"node {origin} leaf {index}"
    try:
        entry = parse_leaf(leaf, expected_log=origin, expected_index=index)
    except BiobankError as exc:
        tree.fail(where, f"{type(exc).__name__}: {exc}")
        return
    op = entry["op"]
    if op == "rotate-key":
        audit.node.keys.rotate(index=index, key=entry["key"])
        if content is not None:
            withdrawn.fail(where, "content served beside a rotate-key entry")
        return
    kind, rid = entry["kind"], entry["id"]
    if op == "withdraw":
        withdrawn.items += 1
        if content is not None:
            withdrawn.fail(where, f"content served beside the withdraw of {kind} {rid}")
        for kept in live.withdraw(kind, rid):
            withdrawn.fail(f"node {origin} leaf {kept}",
                           f"content of {kind} {rid} still served after its withdrawal "
                           f"at leaf {index}")
        return
    if content is None:
        live.publish(kind, rid, index, None, has_content=False)
        return
    digests.items += 1
    try:
        ok = "sha256:" + sha256(canonical(content)).hexdigest() == entry["digest"]
    except ValueError as exc:
        digests.fail(where, f"content of {kind} {rid} has no canonical form: {exc}")
        ok = False
    if not ok:
        digests.fail(where, f"content of {kind} {rid} does not match digest "
                            f"{entry['digest']}")
        live.publish(kind, rid, index, None, has_content=True)
        return
    schemas.items += 1
    problems = schema_problems(entry["schema"], content, where)
    if problems:
        schemas.fail(where, f"{kind} {rid} violates {entry['schema']}: "
                            + "; ".join(str(p) for p in problems[:3]))
        live.publish(kind, rid, index, None, has_content=True)
        return
    live.publish(kind, rid, index, content, has_content=True)
