"""The order-free checks of one mirrored leaf and its content, runnable in a worker process.

`examine()` parses the leaf, hashes it, checks the content digest and schema and reduces a
valid sample group to its interned key (attributes and the four bounds); `audit.node_logs`
applies the results strictly in log order (tree, live state, report), so a serial and a
parallel run report the same things in the same order. `examine_task()` does it in a worker
(`audit.parallel`) for raw bundle lines or for a page range it fetches from the catalogue
itself.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx

from audit.fetcher import PageTask, decode_line, fetch_range
from audit.livestate import GROUP, Chapters, group_key, impossible_counts
from protocol.canonical import parsed_digest
from protocol.entries import parse_leaf
from protocol.errors import BiobankError
from protocol.merkle import leaf_hash
from protocol.schema import SchemaSet
from protocol.tls import client_tls

# (kind or $id, record, location) -> list of problems, [] when valid
SchemaCheck = Callable[[str, Any, str], list[Any]]


class Examined(NamedTuple):
    """What one leaf showed; `error` set means the leaf itself failed (nothing else is set)."""

    leaf_hash: bytes
    error: str | None = None
    op: str = ""
    kind: str = ""
    rid: str = ""
    key: str = ""  # rotate-key: the new verifier key
    has_content: bool = False
    digest_errors: tuple[str, ...] = ()
    schema_error: str | None = None
    group: tuple[Any, ...] | None = None  # a valid sample group's `group_key`
    content: Any = None  # valid content of a biobank or collection record


def examine(
    origin: str,
    index: int,
    leaf: bytes,
    content: Any,
    schema_problems: SchemaCheck,
    chapters: Chapters,
) -> Examined:
    """Every check of leaf `index` that does not depend on the leaves before it."""
    hashed = leaf_hash(leaf)
    where = f"node {origin} leaf {index}"
    try:
        entry = parse_leaf(leaf, expected_log=origin, expected_index=index)
    except BiobankError as exc:
        return Examined(hashed, f"{type(exc).__name__}: {exc}")
    op = entry["op"]
    has_content = content is not None
    if op == "rotate-key":
        return Examined(hashed, op=op, key=entry["key"], has_content=has_content)
    kind, rid = entry["kind"], entry["id"]
    if op == "withdraw" or not has_content:
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=has_content)
    try:
        ok = parsed_digest(content) == entry["digest"]  # content parsed from JSON
        errors: tuple[str, ...] = ()
    except ValueError as exc:
        errors = (f"content of {kind} {rid} has no canonical form: {exc}",)
        ok = False
    if not ok:
        errors += (f"content of {kind} {rid} does not match digest {entry['digest']}",)
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, digest_errors=errors)
    problems = schema_problems(entry["schema"], content, where)
    if problems:
        message = f"{kind} {rid} violates {entry['schema']}: " + "; ".join(
            str(p) for p in problems[:3]
        )
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, schema_error=message)
    return _valid(hashed, op, kind, rid, content, chapters)


def _valid(
    hashed: bytes, op: str, kind: str, rid: str, content: Any, chapters: Chapters
) -> Examined:
    """A publish whose content matches its digest and schema: a group reduced to its key
    (unless its counts are impossible, which keeps it out of the index like a schema failure)."""
    if kind != GROUP:
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, content=content)
    why = impossible_counts(content)
    if why is not None:
        return Examined(
            hashed,
            op=op,
            kind=kind,
            rid=rid,
            has_content=True,
            schema_error=f"{kind} {rid} cannot be counted: {why}",
        )
    return Examined(
        hashed, op=op, kind=kind, rid=rid, has_content=True, group=group_key(content, chapters)
    )


class MemoSchemaCheck:
    """Validation with the shipped schemas (protocol.schema.SchemaSet: the jsonschema-rs
    verdict, details from jsonschema). The verdicts are the reference's (tests/protocol and
    tests/audit/test_examine_memo.py prove it); the digest comes from
    `protocol.canonical.canonical_parsed` (content is parsed from JSON)."""

    def __init__(self) -> None:
        self.schemas = SchemaSet.default()

    def __call__(self, schema_id: str, record: Any, location: str) -> list[Any]:
        return list(self.schemas.problems(schema_id, record, location))


def default_schema_check() -> MemoSchemaCheck:
    """The auditor's schema check (see `MemoSchemaCheck`)."""
    return MemoSchemaCheck()


_WORKER: dict[str, Any] = {}  # per worker process: its schema check and chapter table


def prepare_worker() -> None:
    """Build this process's schema check and chapter table (once)."""
    if not _WORKER:
        schemas = default_schema_check()
        schemas(GROUP, {}, "warm-up")  # compiles the validator
        _WORKER["schemas"], _WORKER["chapters"] = schemas, Chapters()


# what a worker sends back for one chunk: (leaf hashes joined, rows, attribute keys, error);
# a row is an Examined, or (key number, id) for the common case, a valid group publish
Chunk = tuple[bytes, list[Any], list[tuple[Any, ...]], BaseException | None]


def task_size(task: list[bytes] | PageTask) -> int:
    """How many leaves a task covers."""
    return task.stop - task.start if isinstance(task, PageTask) else len(task)


def _client(timeout: float, ca_bundle: str | None) -> httpx.Client:
    client = _WORKER.get("client")
    if client is None:
        verify = client_tls(ca_bundle, setting="--ca-bundle")
        client = _WORKER["client"] = httpx.Client(
            timeout=timeout, follow_redirects=False, verify=verify
        )
    return client


def examine_task(origin: str, start: int, task: list[bytes] | PageTask) -> Chunk:
    """`examine()` for the leaves at indexes start, start+1, ... (in a worker process): raw
    bundle lines, or a `PageTask` this worker fetches over its own HTTP connection.

    The result is compact, as pickling it is most of a worker's overhead; `expand()` turns it
    back into Examined leaves. A line that cannot be decoded or a page that cannot be fetched
    stops the chunk: the results before it and the exception are returned, for the caller to
    apply and then raise, as a serial run would. A fetched range may come back short (the
    mirror ended); the caller stops there.
    """
    prepare_worker()
    if "gc" not in _WORKER:
        # a worker allocates many short-lived containers per page and keeps few: collect
        # the young generation rarely, and keep the start-up objects out of full collections
        gc.freeze()
        gc.set_threshold(100_000, 20, 100)
        _WORKER["gc"] = True
    schemas, chapters = _WORKER["schemas"], _WORKER["chapters"]
    hashes: list[bytes] = []
    rows: list[Any] = []
    keys: dict[tuple[Any, ...], int] = {}
    error: BaseException | None = None
    if isinstance(task, PageTask):
        try:
            entries = fetch_range(_client(task.timeout, task.ca_bundle), task)
        except Exception as exc:  # noqa: BLE001 - handed back to be raised in log order
            return b"", [], [], exc
    else:
        entries = []
        for line in task:
            try:
                entries.append(decode_line(line))
            except Exception as exc:  # noqa: BLE001 - handed back to be raised in log order
                error = exc
                break
    for offset, (leaf, content) in enumerate(entries):
        ex = examine(origin, start + offset, leaf, content, schemas, chapters)
        hashes.append(ex.leaf_hash)
        if ex.group is not None:  # only ever set for a valid group publish with content
            rows.append((keys.setdefault(ex.group, len(keys)), ex.rid))
        else:
            rows.append(ex._replace(leaf_hash=b""))
    # httpx responses are reference cycles (response <-> stream) holding a whole page; with
    # the raised threshold the young generation would rarely be collected, so collect it
    # here, once a task (cheap: it holds this task's objects only)
    gc.collect(0)
    return b"".join(hashes), rows, list(keys), error


def expand(chunk: Chunk) -> tuple[list[Examined], BaseException | None]:
    """The Examined leaves of a worker's compact chunk, and its error (None if none)."""
    hashes, rows, keys, error = chunk
    out = []
    for i, row in enumerate(rows):
        hashed = hashes[32 * i : 32 * i + 32]
        if type(row) is tuple:
            out.append(
                Examined(hashed, None, "publish", GROUP, row[1], "", True, (), None, keys[row[0]])
            )
        else:
            out.append(row._replace(leaf_hash=hashed))
    return out, error
