"""Audit one node's log as the catalogue mirrors it, in one streaming pass.

Rebuilds the tree, checks every checkpoint signature and root and every content, and
keeps the live records (sample groups as their interned keys).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from audit.catalogue_log import EnrolledNode
from audit.examine import Chunk, Examined, SchemaCheck, examine
from audit.fetcher import Entry
from audit.livestate import NodeLive
from audit.report import Report
from protocol.errors import BiobankError
from protocol.merkle import EMPTY_ROOT, CompactRange, append_subtree
from protocol.note import Checkpoint

__all__ = [
    "CheckpointClaim",
    "NodeAudit",
    "SchemaCheck",
    "stream_chunks",
    "stream_examined",
    "stream_node",
]


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
    frontier: CompactRange | None = None  # the mirror's tree as streamed (node-direct: ahead)

    def claim(self, claim: CheckpointClaim) -> None:
        self.claims.setdefault(claim.checkpoint.size, []).append(claim)


def _check_claims(audit: NodeAudit, size: int, root: bytes, report: Report) -> None:
    audit.roots[size] = root
    for claim in audit.claims.get(size, ()):
        tree = report[claim.check]
        sigs = report["node-checkpoint-signatures" if claim.check == "node-tree" else claim.check]
        tree.items += 1
        if claim.checkpoint.root != root:
            tree.fail(
                claim.label,
                f"signed root {claim.checkpoint.root.hex()} but the mirror's "
                f"first {size} leaves rebuild {root.hex()}",
            )
        if claim.previous_size is None:
            continue
        sigs.items += 1
        try:
            audit.node.keys.verify(claim.note, previous_size=claim.previous_size)
        except BiobankError as exc:
            sigs.fail(claim.label, f"{type(exc).__name__}: {exc}")


def stream_node(
    audit: NodeAudit,
    entries: Iterable[Entry],
    *,
    report: Report,
    schema_problems: SchemaCheck,
    live: NodeLive,
) -> int:
    """One pass over the mirror's leaves; returns how many leaves were served."""
    origin, chapters = audit.node.origin, live.chapters
    examined = (
        examine(origin, index, leaf, content, schema_problems, chapters)
        for index, (leaf, content) in enumerate(entries)
    )
    return stream_examined(audit, examined, report=report, live=live)


def _open_checks(report: Report) -> None:
    for name in (
        "node-checkpoint-signatures",
        "node-tree",
        "content-digest",
        "content-schema",
        "withdrawn-content",
    ):
        report[name].ran = True


def _end(audit: NodeAudit, compact: CompactRange, report: Report) -> int:
    """After the last leaf: claims beyond the served leaves fail; the leaf count."""
    served = compact.size
    audit.frontier = compact
    tree = report["node-tree"]
    for size, claim_list in audit.claims.items():
        if size > served:
            for claim in claim_list:
                if claim.check != "node-tree":
                    continue  # a node ahead of its mirror is checked by consistency proof
                tree.items += 1
                tree.fail(
                    claim.label,
                    f"checkpoint size {size} but the mirror serves only "
                    f"{served} leaves (entries dropped)",
                )
    return served


def stream_examined(
    audit: NodeAudit, examined: Iterable[Examined], *, report: Report, live: NodeLive
) -> int:
    """Apply examined leaves in log order (tree, claims, live state, report); the leaf count."""
    _open_checks(report)
    claims = audit.claims
    compact = CompactRange()
    if 0 in claims:
        _check_claims(audit, 0, EMPTY_ROOT, report)
    for index, ex in enumerate(examined):
        compact.append(ex.leaf_hash)
        _apply(audit, index, ex, report, live)
        # after the entry: a rotate-key at index i already governs a checkpoint of size i+1
        if index + 1 in claims:
            _check_claims(audit, index + 1, compact.root(), report)
    return _end(audit, compact, report)


def stream_chunks(
    audit: NodeAudit, chunks: Iterable[Chunk], *, report: Report, live: NodeLive
) -> int:
    """`stream_examined` for the compact chunks of worker processes (`audit.parallel`), the
    same report: a valid group publish (most leaves) is applied without an `Examined`; a
    chunk's error is raised after its leaves. The leaf count.

    A chunk with no checkpoint claim inside it joins the tree by its perfect subtrees (the
    worker hashed them) and the live state by runs: the valid group publishes between two
    other leaves in one update when their ids are new (`_publish_run`), each other leaf
    applied in its place. A chunk with a claim inside it goes leaf by leaf, claims checked
    after their leaf as in a serial run."""
    _open_checks(report)
    claims = audit.claims
    compact = CompactRange()
    append = compact.append
    if 0 in claims:
        _check_claims(audit, 0, EMPTY_ROOT, report)
    groups, intern = live.groups, live.intern
    digests, schemas = report["content-digest"], report["content-schema"]
    tables: dict[int, list[int]] = {}  # per worker: its key numbers -> this node's
    index = 0
    for chunk in chunks:
        kinds = array("i")
        kinds.frombytes(chunk.kinds)
        hashes, others, n = chunk.hashes, chunk.others, len(kinds)
        if chunk.key_base is None:  # the chunk's own keys
            numbers = [intern(key) for key in chunk.keys]
        else:  # the worker's numbering in this session: its table, extended in log order
            numbers = tables.setdefault(chunk.worker, [])
            if len(numbers) != chunk.key_base:
                raise ValueError(
                    f"worker {chunk.worker} numbered keys from {chunk.key_base}, "
                    f"but {len(numbers)} were received from it"
                )
            numbers.extend(intern(key) for key in chunk.keys)
        ids = chunk.ids
        valid = len(ids)
        subtrees = chunk.subtrees
        inside = sum(1 << height for height, _root in subtrees) != n or any(
            index < size < index + n for size in claims
        )
        if not inside:
            for height, root in subtrees:
                append_subtree(compact, height, root)
            # the valid group publishes between two other leaves applied as one run each
            # (`_publish_run`), the others one by one, in log order; no claim falls inside
            at = taken = 0
            for stop in (*sorted(others), n) if others else (n,):
                if stop > at:
                    _publish_run(
                        groups, ids[taken : taken + stop - at], kinds[at:stop], numbers, index + at
                    )
                    taken += stop - at
                if stop < n:
                    _apply(audit, index + stop, others[stop], report, live)
                at = stop + 1
            index += n
        else:
            it = iter(ids)
            for offset, kind in enumerate(kinds):
                append(hashes[32 * offset : 32 * offset + 32])
                if kind >= 0:  # NodeLive.publish_group of a valid group with content
                    rid = next(it)
                    old = groups.get(rid)
                    groups[rid] = (numbers[kind], index, (*old[2], index) if old else (index,))
                else:
                    _apply(audit, index, others[offset], report, live)
                index += 1
                # after the entry: a rotate-key at index i governs a checkpoint of size i+1
                if index in claims:
                    _check_claims(audit, index, compact.root(), report)
        if not inside and index in claims:
            _check_claims(audit, index, compact.root(), report)
        digests.items += valid
        schemas.items += valid
        if chunk.error is not None:
            raise chunk.error
    return _end(audit, compact, report)


def _publish_run(
    groups: dict[str, tuple[int, int, tuple[int, ...]]],
    ids: list[str],
    kinds: array[int],
    numbers: list[int],
    index: int,
) -> None:
    """`NodeLive.publish_group` of consecutive valid group publishes (ids and key numbers
    from leaf `index` on): in one update when each id is new, else one by one."""
    stop = index + len(ids)
    if len(set(ids)) == len(ids) and groups.keys().isdisjoint(ids):
        groups.update(
            zip(
                ids,
                zip(
                    [numbers[k] for k in kinds],
                    range(index, stop),
                    [(i,) for i in range(index, stop)],
                    strict=True,
                ),
                strict=True,
            )
        )
        return
    for rid, kind in zip(ids, kinds, strict=True):
        old = groups.get(rid)
        groups[rid] = (numbers[kind], index, (*old[2], index) if old else (index,))
        index += 1


def _apply(audit: NodeAudit, index: int, ex: Examined, report: Report, live: NodeLive) -> None:
    """Apply one examined leaf to the live state and the report, in log order."""
    where = f"node {audit.node.origin} leaf {index}"
    if ex.error is not None:
        report["node-tree"].fail(where, ex.error)
        return
    op, kind, rid = ex.op, ex.kind, ex.rid
    withdrawn = report["withdrawn-content"]
    if op == "rotate-key":
        audit.node.keys.rotate(index=index, key=ex.key)
        if ex.has_content:
            withdrawn.fail(where, "content served beside a rotate-key entry")
        return
    if op == "withdraw":
        withdrawn.items += 1
        if ex.has_content:
            withdrawn.fail(where, f"content served beside the withdraw of {kind} {rid}")
        for kept in live.withdraw(kind, rid):
            withdrawn.fail(
                f"node {audit.node.origin} leaf {kept}",
                f"content of {kind} {rid} still served after its withdrawal at leaf {index}",
            )
        return
    if not ex.has_content:
        live.publish(kind, rid, index, None, has_content=False)
        return
    digests = report["content-digest"]
    digests.items += 1
    if ex.digest_errors:
        for message in ex.digest_errors:
            digests.fail(where, message)
        live.publish(kind, rid, index, None, has_content=True)
        return
    schemas = report["content-schema"]
    schemas.items += 1
    if ex.schema_error is not None:
        schemas.fail(where, ex.schema_error)
        live.publish(kind, rid, index, None, has_content=True)
    elif ex.group is not None:
        live.publish_group(rid, index, ex.group, has_content=True)
    else:
        live.publish(kind, rid, index, ex.content, has_content=True)
