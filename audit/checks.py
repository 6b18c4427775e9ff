"""The whole audit run: catalogue checkpoint and state, catalogue log, node mirrors, search.

Also the optional node-direct comparison of each node's own checkpoint with its mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from audit.catalogue_log import CatalogueReplay, EnrolledNode, replay_catalogue
from audit.direct import check_ahead, direct_claim
from audit.examine import SchemaCheck, Task, default_schema_check
from audit.fetcher import Source
from audit.livestate import Chapters, NodeLive, Tally
from audit.node_logs import CheckpointClaim, NodeAudit, stream_chunks, stream_node
from audit.parallel import CHUNK, ExaminePool
from audit.report import Report
from audit.search_check import check_search, search_queries
from audit.state import AuditState
from protocol.errors import BiobankError
from protocol.note import Checkpoint, Verifier, verify_checkpoint
from protocol.verify import MISSING_CONTENT


@dataclass(frozen=True)
class AuditOptions:
    """What to compare besides the catalogue's published material."""

    node_direct: bool = False
    pinned_key: str | None = None  # the catalogue verifier key obtained out of band
    workers: int = 1  # processes fetching and examining big node logs (CLI: auto_workers())
    # leaves from which a node log is worth worker processes (a log holds one entry per sample
    # group, ~5 samples: a 100k-sample node is ~20k leaves; two tasks already pay for the pool)
    parallel_min: int = 4_000


def _body(note: str) -> Checkpoint:
    body, _sep, _ = note.partition("\n\n")
    return Checkpoint.from_text(body + "\n")


def _catalogue_key(
    report: Report, desc: dict[str, Any], state: AuditState | None, options: AuditOptions
) -> tuple[str, str] | None:
    """(origin, trusted key): a pinned key, else the state's, else the descriptor's (first use)."""
    check = report["catalogue-checkpoint"]
    origin, served = desc.get("origin"), desc.get("verifier_key")
    if not isinstance(origin, str) or not isinstance(served, str):
        check.fail("/.well-known/biobank-catalogue", "lacks 'origin' or 'verifier_key'")
        return None
    trusted = options.pinned_key or (state.verifier_key if state else served)
    if served != trusted:
        check.fail(
            "/.well-known/biobank-catalogue",
            f"serves key {served!r}, but the trusted key is {trusted!r}",
        )
    if state and state.origin != origin:
        check.fail(
            "/.well-known/biobank-catalogue",
            f"origin {origin!r}, but the state file is for {state.origin!r}",
        )
    return origin, trusted


def _state_size(report: Report, cp: Checkpoint, note: str, state: AuditState | None) -> int | None:
    """Check the new checkpoint against the state; the size whose root replay must match."""
    cons = report["catalogue-consistency"]
    if state is None:
        cons.note = "no state file yet: this run is the first (trust on first use)"
        return None
    cons.ran = True
    cons.items += 1
    if cp.size < state.size:
        cons.fail(
            "catalogue checkpoint",
            f"size {cp.size} is smaller than the verified size "
            f"{state.size} in the state file: rollback or frozen view",
        )
        return None
    if cp.size == state.size and cp.root != state.root:
        cons.fail(
            "catalogue checkpoint",
            f"size {cp.size} with root {cp.root.hex()}, but the "
            f"state file verified root {state.root.hex()} at that size: split view",
        )
        return None
    return state.size


def run_audit(
    source: Source,
    *,
    state: AuditState | None,
    options: AuditOptions,
    schema_check: SchemaCheck | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Report, AuditState | None]:
    """Audit everything `source` serves; the new state when every check holds, else None."""
    report = Report(catalogue=source.label)
    say = progress or (lambda _msg: None)
    cp_check = report["catalogue-checkpoint"]
    try:
        trusted = _catalogue_key(report, source.descriptor(), state, options)
        if trusted is None:
            return report, None
        origin, key = trusted
        note = source.checkpoint()
    except BiobankError as exc:
        cp_check.fail("catalogue", f"{type(exc).__name__}: {exc}")
        return report, None
    cp_check.ran = True
    cp_check.items += 1
    try:
        cp = verify_checkpoint(note, [Verifier.from_key(key)], origin)
    except BiobankError as exc:
        cp_check.fail("catalogue checkpoint", f"{type(exc).__name__}: {exc}")
        return report, None
    report.facts["catalogue origin"] = origin
    report.facts["catalogue log size"] = cp.size
    state_size = _state_size(report, cp, note, state)
    say(f"catalogue log: {cp.size} leaves")
    try:
        replay = replay_catalogue(
            source.entries(cp.size),
            origin=origin,
            checkpoint=cp,
            report=report,
            state_size=state_size,
            state_root=state.root if state else None,
        )
    except BiobankError as exc:
        report["catalogue-log"].fail("catalogue log", f"{type(exc).__name__}: {exc}")
        return report, None
    _audit_nodes(source, replay, report, options, schema_check, say)
    if not report.ok:
        return report, None
    return report, AuditState(
        origin=origin, verifier_key=key, size=cp.size, root=cp.root, checkpoint=note
    )


def _claims(node: EnrolledNode, mirror_note: str, mirror: Checkpoint) -> NodeAudit:
    audit = NodeAudit(node)
    previous = 0
    for rc in node.checkpoints:
        audit.claim(
            CheckpointClaim(
                f"node {node.origin} checkpoint size {rc.checkpoint.size} "
                f"(catalogue leaf {rc.leaf})",
                rc.note,
                rc.checkpoint,
                previous,
            )
        )
        previous = rc.checkpoint.size
    last = node.checkpoints[-1].note if node.checkpoints else None
    audit.claim(
        CheckpointClaim(
            f"node {node.origin} mirror checkpoint size {mirror.size}",
            mirror_note,
            mirror,
            None if mirror_note == last else previous,
        )
    )
    return audit


def _audit_nodes(
    source: Source,
    replay: CatalogueReplay,
    report: Report,
    options: AuditOptions,
    schema_check: SchemaCheck | None,
    say: Callable[[str], None],
) -> None:
    tree = report["node-tree"]
    audits: list[NodeAudit] = []
    tree.ran = True
    retired = sorted(o for o, n in replay.nodes.items() if n.retired)
    if retired:
        report.facts["retired nodes (not audited)"] = ", ".join(retired)
    for origin, node in sorted(replay.nodes.items()):
        if node.retired:
            continue
        try:
            mirror_note = source.node_checkpoint(origin)
            mirror = _body(mirror_note)
        except BiobankError as exc:
            tree.fail(f"node {origin} mirror checkpoint", f"{type(exc).__name__}: {exc}")
            continue
        audits.append(_claims(node, mirror_note, mirror))
    pool = _pool(source, audits, options, schema_check)
    try:
        _stream_nodes(source, audits, report, options, schema_check, pool, say)
    finally:
        if pool is not None:
            pool.close()


def _pool(
    source: Source, audits: list[NodeAudit], options: AuditOptions, schema_check: SchemaCheck | None
) -> ExaminePool | None:
    """Worker processes when some node log is big enough (default schema check only)."""
    workers = options.workers
    if (
        workers < 2
        or schema_check is not None
        or not hasattr(source, "node_entry_tasks")
        or not any(max(a.claims) >= options.parallel_min for a in audits)
    ):
        return None
    pool = ExaminePool(workers)
    pool.warm_up()
    return pool


def _stream_nodes(
    source: Source,
    audits: list[NodeAudit],
    report: Report,
    options: AuditOptions,
    schema_check: SchemaCheck | None,
    pool: ExaminePool | None,
    say: Callable[[str], None],
) -> None:
    tree, direct = report["node-tree"], report["node-direct"]
    # the logs examined by workers, fed as one stream of tasks (no wait at a log's end),
    # the first ones at once: the workers examine while the searches are read
    fed = [a for a in audits if pool is not None and max(a.claims) >= options.parallel_min]
    feed = None if pool is None else pool.feed([_tasks(source, a) for a in fed])
    numbers = {id(a): number for number, a in enumerate(fed)}
    if feed is not None:
        feed.fill()
    answers: dict[str, dict[str, Any]] | None = None
    try:
        answers = {"": source.search()}
        for query in search_queries(answers[""]):
            answers[query] = source.search(query)
    except BiobankError as exc:
        answers = None
        report["search-totals"].fail("search", f"{type(exc).__name__}: {exc}")
    ahead: dict[str, tuple[str, Checkpoint]] = {}
    if options.node_direct:
        direct.ran = True
        for audit in audits:
            direct_claim(source, audit, direct, ahead)
    chapters, tally = Chapters(), Tally()
    report.facts["nodes audited"] = len(audits)
    check = schema_check or default_schema_check()
    for audit in audits:
        node = audit.node
        live = NodeLive(node.origin, node.country, chapters)
        end = max(audit.claims)
        say(f"node {node.origin}: {end} leaves")
        try:
            if feed is not None and id(audit) in numbers:
                chunks = feed.node(numbers[id(audit)])
                stream_chunks(audit, chunks, report=report, live=live)
            else:
                stream_node(
                    audit,
                    source.node_entries(node.origin, end),
                    report=report,
                    schema_problems=check,
                    live=live,
                )
        except BiobankError as exc:
            tree.fail(f"node {node.origin} mirror", f"{type(exc).__name__}: {exc}")
            continue
        _missing_content(source, node.origin, live.missing_content(), report)
        tally.add(live)
        if node.origin in ahead:
            check_ahead(source, audit, ahead[node.origin], direct)
    report.facts["live sample groups"] = tally.groups
    report.facts["samples in them (interval)"] = f"[{tally.samples[0]}, {tally.samples[1]}]"
    if answers is not None:
        check_search(report["search-totals"], tally, answers)


def _tasks(source: Source, audit: NodeAudit) -> tuple[str, Callable[[], Iterable[Task]]]:
    """A node log's worker tasks (pages or bundle blocks of `CHUNK` leaves), made when fed."""
    origin, end = audit.node.origin, max(audit.claims)
    make = getattr(source, "node_entry_tasks")  # noqa: B009
    return origin, lambda: make(origin, end, CHUNK)


def _missing_content(
    source: Source, origin: str, missing: list[tuple[str, str, int]], report: Report
) -> None:
    """Live records whose latest publish came without content: the node's fault when the
    catalogue's rejection report lists each (as `protocol.verify.MISSING_CONTENT` says it
    must), else the catalogue hides a live record."""
    if not missing:
        return
    check = report["withdrawn-content"]
    try:
        listed = {
            (r.get("kind"), r.get("id"), r.get("index"))
            for r in source.node_rejections(origin)
            if any(MISSING_CONTENT in str(p) for p in r.get("problems") or ())
        }
        unread = ""
    except BiobankError as exc:
        listed, unread = set(), f" (its rejection report could not be read: {exc})"
    for kind, rid, idx in missing:
        where = f"node {origin} leaf {idx}"
        if (kind, rid, idx) in listed:
            check.node_fault(
                where,
                f"live {kind} {rid} is served without content; the catalogue rejects it "
                "(rejection report) and leaves it out of its index",
            )
        else:
            check.fail(
                where,
                f"live {kind} {rid} is served without content, and the catalogue's rejection "
                f"report does not list it{unread}",
            )
