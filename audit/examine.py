"""The order-free checks of one mirrored leaf and its content, runnable in a worker process.

`examine()` parses the leaf, hashes it, checks the content digest and schema and reduces a
valid sample to its interned attribute key; `audit.node_logs` applies the results strictly in
log order (tree, live state, report), so a serial and a parallel run report the same things in
the same order. `examine_lines()` does it for raw bundle lines in a worker (`audit.parallel`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

from audit.fetcher import decode_line
from audit.livestate import Chapters, combo_key
from protocol.canonical import canonical
from protocol.entries import parse_leaf
from protocol.errors import BiobankError

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
    combo: tuple[Any, ...] | None = None  # a valid sample's attribute key
    content: Any = None  # valid content of a non-sample record


def examine(origin: str, index: int, leaf: bytes, content: Any, schema_problems: SchemaCheck,
            chapters: Chapters) -> Examined:
    """Every check of leaf `index` that does not depend on the leaves before it."""
    hashed = hashlib.sha256(b"\x00" + leaf).digest()
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
        ok = "sha256:" + hashlib.sha256(canonical(content)).hexdigest() == entry["digest"]
        errors: tuple[str, ...] = ()
    except ValueError as exc:
        errors = (f"content of {kind} {rid} has no canonical form: {exc}",)
        ok = False
    if not ok:
        errors += (f"content of {kind} {rid} does not match digest {entry['digest']}",)
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, digest_errors=errors)
    problems = schema_problems(entry["schema"], content, where)
    if problems:
        message = (f"{kind} {rid} violates {entry['schema']}: "
                   + "; ".join(str(p) for p in problems[:3]))
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True,
                        schema_error=message)
    if kind == "sample":
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True,
                        combo=combo_key(content, chapters))
    return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, content=content)


def default_schema_check() -> SchemaCheck:
    """Validation with the shipped schemas (protocol.schema), for contents parsed by orjson.

    A sample differing from an earlier valid one only in `id` and `nonce` is known valid after
    those two fields pass their own schema patterns (protocol.schema_memo.ShapeMemo); the
    memo skips its type walk, as every content here comes from orjson.loads (fetcher). Any
    other record is validated in full by SchemaSet.
    """
    from protocol.schema import SchemaSet
    from protocol.schema_memo import ShapeMemo

    schemas = SchemaSet.default()
    memos: dict[str, ShapeMemo] = {}

    def problems(schema_id: str, record: Any, location: str) -> list[Any]:
        memo = memos.get(schema_id)
        if memo is None:
            if not schemas.knows(schema_id):
                return list(schemas.problems(schema_id, record, location))
            memo = memos[schema_id] = ShapeMemo(schemas.schema(schema_id))
        known, key = memo.known_valid(record, parsed=True)
        if known:
            return []
        found = list(schemas.problems(schema_id, record, location))
        if not found:
            memo.learn(key)
        return found

    return problems


_WORKER: dict[str, Any] = {}  # per worker process: its schema check and chapter table


def prepare_worker() -> None:
    """Build this process's schema check and chapter table (once)."""
    if not _WORKER:
        schemas = default_schema_check()
        schemas("sample", {}, "warm-up")  # compiles the validator
        _WORKER["schemas"], _WORKER["chapters"] = schemas, Chapters()


# what a worker sends back for one chunk: (leaf hashes joined, rows, attribute keys, error);
# a row is an Examined, or (key number, id) for the common case, a valid sample publish
Chunk = tuple[bytes, list[Any], list[tuple[Any, ...]], BaseException | None]


def examine_lines(origin: str, start: int, lines: list[bytes]) -> Chunk:
    """`examine()` for raw bundle lines at indexes start, start+1, ... (in a worker process).

    The result is compact, as pickling it is most of a worker's overhead; `expand()` turns it
    back into Examined leaves. A line that cannot be decoded stops the chunk: the results
    before it and the exception are returned, for the caller to apply and then raise, as a
    serial run would.
    """
    prepare_worker()
    schemas, chapters = _WORKER["schemas"], _WORKER["chapters"]
    hashes: list[bytes] = []
    rows: list[Any] = []
    keys: dict[tuple[Any, ...], int] = {}
    for offset, line in enumerate(lines):
        try:
            leaf, content = decode_line(line)
        except Exception as exc:  # noqa: BLE001 - handed back to be raised in log order
            return b"".join(hashes), rows, list(keys), exc
        ex = examine(origin, start + offset, leaf, content, schemas, chapters)
        hashes.append(ex.leaf_hash)
        if ex.combo is not None:  # only ever set for a valid sample publish with content
            rows.append((keys.setdefault(ex.combo, len(keys)), ex.rid))
        else:
            rows.append(ex._replace(leaf_hash=b""))
    return b"".join(hashes), rows, list(keys), None


def expand(chunk: Chunk) -> tuple[list[Examined], BaseException | None]:
    """The Examined leaves of a worker's compact chunk, and its error (None if none)."""
    hashes, rows, keys, error = chunk
    out = []
    for i, row in enumerate(rows):
        hashed = hashes[32 * i: 32 * i + 32]
        if type(row) is tuple:
            out.append(Examined(hashed, None, "publish", "sample", row[1], "", True, (), None,
                                keys[row[0]]))
        else:
            out.append(row._replace(leaf_hash=hashed))
    return out, error
