"""--node-direct: compare each node's own checkpoint with the catalogue's copy.

At or below the mirror's size the node's root must equal the mirror's tree; ahead of it a
consistency proof must show the node's tree extends the mirror, and its checkpoint must be
signed by the key in force, learning key rotations after the mirror from the node's own leaves.
"""

from __future__ import annotations

from typing import Any

from audit.fetcher import Source
from audit.node_logs import CheckpointClaim, NodeAudit
from protocol.entries import parse_leaf
from protocol.errors import BiobankError, NotServed, RevokedKeyError, RootMismatch
from protocol.keys import KeyHistory
from protocol.merkle import leaf_hash, verify_consistency
from protocol.note import Checkpoint


def _body(note: str) -> Checkpoint:
    body, _sep, _ = note.partition("\n\n")
    return Checkpoint.from_text(body + "\n")


def previous_size(audit: NodeAudit, size: int) -> int:
    """The largest checkpoint size the catalogue recorded at or below `size`."""
    return max(
        (rc.checkpoint.size for rc in audit.node.checkpoints if rc.checkpoint.size <= size),
        default=0,
    )


def direct_claim(
    source: Source, audit: NodeAudit, direct: Any, ahead: dict[str, tuple[str, Checkpoint]]
) -> None:
    node = audit.node
    try:
        note = source.direct_checkpoint(node.origin, node.url)
        cp = _body(note)
    except BiobankError as exc:
        direct.fail(f"node {node.origin} at {node.url}", f"{type(exc).__name__}: {exc}")
        return
    mirror_size = max(s for s, cl in audit.claims.items() if cl)
    if cp.size > mirror_size:
        ahead[node.origin] = (note, cp)
        return
    audit.claim(
        CheckpointClaim(
            f"node {node.origin} own checkpoint size {cp.size} (from {node.url})",
            note,
            cp,
            previous_size(audit, cp.size),
            check="node-direct",
        )
    )


def check_ahead(source: Source, audit: NodeAudit, own: tuple[str, Checkpoint], direct: Any) -> None:
    """The node is ahead of the mirror: its checkpoint must be signed by the key in force
    (rotations after the mirror learned from its own leaves) and its tree extend the mirror's
    (consistency proof)."""
    note, cp = own
    node = audit.node
    where = f"node {node.origin} own checkpoint size {cp.size} (from {node.url})"
    mirror_size = max(audit.roots)
    direct.items += 1
    if not _signed_by_key_in_force(source, audit, own, mirror_size, where, direct):
        return
    try:
        proof = source.direct_consistency(node.origin, node.url, mirror_size, cp.size)
    except NotServed as exc:
        direct.fail(
            where,
            f"the node has no consistency proof endpoint ({exc}), so nothing shows that "
            f"its tree extends the catalogue's copy (size {mirror_size})",
        )
        return
    except BiobankError as exc:
        direct.fail(
            where,
            f"no consistency proof from the catalogue's copy (size {mirror_size}) could be "
            f"read: {type(exc).__name__}: {exc}",
        )
        return
    try:
        verify_consistency(mirror_size, cp.size, proof, audit.roots[mirror_size], cp.root)
    except BiobankError as exc:
        direct.fail(
            where,
            f"not an extension of the catalogue's copy (size {mirror_size}): "
            f"{type(exc).__name__}: {exc}",
        )


def _signed_by_key_in_force(
    source: Source,
    audit: NodeAudit,
    own: tuple[str, Checkpoint],
    mirror_size: int,
    where: str,
    direct: Any,
) -> bool:
    note, cp = own
    node = audit.node
    try:
        node.keys.verify(note, previous_size=cp.size)
        return True
    except RevokedKeyError as exc:
        direct.fail(where, f"{type(exc).__name__}: {exc}")
        return False
    except BiobankError as exc:
        refused: BiobankError = exc
    try:  # a key rotation after the catalogue's copy: its rotate-key entries name the key
        keys = _rotations_ahead(source, audit, cp, mirror_size)
    except BiobankError as exc:
        direct.fail(where, f"{type(exc).__name__}: {exc}")
        return False
    if keys is None:
        direct.fail(where, f"{type(refused).__name__}: {refused}")
        return False
    try:
        keys.verify(note, previous_size=cp.size)
    except BiobankError as exc:
        direct.fail(
            where,
            f"{type(exc).__name__}: {exc} (after the rotation(s) in the "
            f"node's leaves {mirror_size}..{cp.size - 1})",
        )
        return False
    try:
        keys.verify(note, previous_size=mirror_size)
    except BiobankError:
        direct.note = (
            f"node {node.origin} rotated its key after the catalogue's copy and its "
            "latest checkpoint lacks the old key's signature: the catalogue will "
            "ask it to co-sign (biobank-node rotate-key --cosign-latest)"
        )
    return True


def _rotations_ahead(
    source: Source, audit: NodeAudit, cp: Checkpoint, mirror_size: int
) -> KeyHistory | None:
    """The node's key history extended by the rotate-key entries among its own leaves
    [mirror_size, cp.size), which must rebuild its signed root on the mirror's tree; None
    when there is none."""
    node = audit.node
    if audit.frontier is None or audit.frontier.size != mirror_size:
        return None
    compact = audit.frontier.copy()
    keys = node.keys.copy()
    rotated = False
    leaves = source.direct_entries(node.origin, node.url, mirror_size, cp.size)
    for index, (leaf, _content) in enumerate(leaves, start=mirror_size):
        entry = parse_leaf(leaf, expected_log=node.origin, expected_index=index)
        compact.append(leaf_hash(leaf))
        if entry["op"] == "rotate-key":
            keys.rotate(index=index, key=str(entry["key"]))
            rotated = True
    if compact.size != cp.size or compact.root() != cp.root:
        raise RootMismatch(
            f"the node's leaves {mirror_size}..{compact.size - 1} on the "
            f"mirror's tree do not rebuild its checkpoint of size {cp.size}"
        )
    return keys if rotated else None
