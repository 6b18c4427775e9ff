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
import os
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, NamedTuple, cast

import httpx
import orjson

from audit.fetcher import LineBlock, PageTask, decode_line, fetch_range, read_lines
from audit.livestate import GROUP, Chapters, group_key, impossible_counts
from protocol.canonical import (
    CANONICAL_OPTIONS,
    bytes_digest,
    canonical_parsed,
    no_float_in,
    parsed_digest,
)
from protocol.entries import parse_leaf
from protocol.errors import BiobankError
from protocol.merkle import leaf_hash, range_subtrees
from protocol.schema import GROUP_SCHEMA, SchemaSet
from protocol.schema import NUMBER_FIELDS as SCHEMA_NUMBER_FIELDS
from protocol.tls import client_tls

_dumps = orjson.dumps

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
    found = examine_leaf(origin, index, leaf, content, schema_problems, chapters)
    if type(found) is tuple:
        hashed, rid, key = cast(ValidGroup, found)
        return Examined(hashed, op="publish", kind=GROUP, rid=rid, has_content=True, group=key)
    return cast(Examined, found)


# the common leaf, a valid group publish with its content: (leaf hash, id, `group_key`)
ValidGroup = tuple[bytes, str, tuple[Any, ...]]


def examine_leaf(
    origin: str,
    index: int,
    leaf: bytes,
    content: Any,
    schema_problems: SchemaCheck,
    chapters: Chapters,
) -> Examined | ValidGroup:
    """`examine()`, the common leaf (a valid group publish) as a plain `ValidGroup` tuple."""
    hashed = leaf_hash(leaf)
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
    valid = getattr(schema_problems, "valid", None)  # a fast verdict, when the check has one
    if valid is not None and valid(entry["schema"], content):
        return _valid(hashed, op, kind, rid, content, chapters)
    problems = schema_problems(entry["schema"], content, f"node {origin} leaf {index}")
    if problems:
        message = f"{kind} {rid} violates {entry['schema']}: " + "; ".join(
            str(p) for p in problems[:3]
        )
        return Examined(hashed, op=op, kind=kind, rid=rid, has_content=True, schema_error=message)
    return _valid(hashed, op, kind, rid, content, chapters)


def _valid(
    hashed: bytes, op: str, kind: str, rid: str, content: Any, chapters: Chapters
) -> Examined | ValidGroup:
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
    return hashed, rid, group_key(content, chapters)


class MemoSchemaCheck:
    """Validation with the shipped schemas (protocol.schema.SchemaSet: the jsonschema-rs
    verdict, details from jsonschema). The verdicts are the reference's (tests/protocol and
    tests/audit/test_examine_memo.py prove it); the digest comes from
    `protocol.canonical.canonical_parsed` (content is parsed from JSON)."""

    def __init__(self) -> None:
        self.schemas = SchemaSet.default()
        self._verdicts: dict[str, Callable[[Any], bool]] = {}

    def __call__(self, schema_id: str, record: Any, location: str) -> list[Any]:
        return list(self.schemas.problems(schema_id, record, location))

    def valid(self, schema_id: str, record: Any) -> bool:
        """The jsonschema-rs verdict alone (the same one `__call__` starts with); False for
        an unknown schema or a value of no JSON type, which `__call__` then describes."""
        verdict = self._verdicts.get(schema_id)
        if verdict is None:
            if not self.schemas.knows(schema_id):
                return False
            verdict = self._verdicts[schema_id] = self.schemas.verdict(schema_id)
        try:
            return bool(verdict(record))
        except ValueError:
            return False


def default_schema_check() -> MemoSchemaCheck:
    """The auditor's schema check (see `MemoSchemaCheck`)."""
    return MemoSchemaCheck()


_WORKER: dict[str, Any] = {}  # per worker process: its schema check and chapter table


def prepare_worker() -> None:
    """Build this process's schema check and chapter table (once)."""
    if not _WORKER:
        schemas = default_schema_check()
        # compiles the group schema's verdict (its reference validator, which names an
        # invalid record's problems, is loaded only for one: `protocol.schema`)
        schemas.valid(GROUP_SCHEMA, {})
        _WORKER["schemas"], _WORKER["chapters"] = schemas, Chapters()


class Chunk(NamedTuple):
    """What a worker sends back for the leaves at indexes start, start+1, ... of one task,
    compact because pickling is most of a worker's overhead: the common leaf, a valid group
    publish, is a key number and an id; any other leaf is a whole `Examined`."""

    hashes: bytes  # the leaf hashes, 32 bytes each, joined
    kinds: bytes  # per leaf, array("i") bytes: the number of its key in `keys`, -1 otherwise
    ids: list[str]  # the ids of the valid group publishes, in order
    others: dict[int, Examined]  # by offset in the task: every leaf that is not one of those
    keys: list[tuple[Any, ...]]  # the `group_key`s numbered from `key_base` on (see below)
    error: BaseException | None  # what stopped the task (raised after its leaves)
    # the leaves' tree as perfect subtrees (`range_subtrees`): (height, hash), left to right
    subtrees: tuple[tuple[int, bytes], ...] = ()
    # None: `keys` are this task's distinct keys, numbered from 0. Else the task ran in a
    # session (one audit's pool): a worker numbers the keys of a log once for the session
    # and sends only those new in this task, numbered from `key_base`; `worker` tells whose
    # numbers they are (the caller keeps a table per worker, filled in log order)
    key_base: int | None = None
    worker: int = 0


Task = (
    list[bytes] | LineBlock | PageTask
)  # raw bundle lines, a block of a bundle file, a page range


def task_size(task: Task) -> int:
    """How many leaves a task covers."""
    if isinstance(task, PageTask):
        return task.stop - task.start
    if isinstance(task, LineBlock):
        return task.lines
    return len(task)


def _client(timeout: float, ca_bundle: str | None) -> httpx.Client:
    client = _WORKER.get("client")
    if client is None:
        verify = client_tls(ca_bundle, setting="--ca-bundle")
        client = _WORKER["client"] = httpx.Client(
            timeout=timeout, follow_redirects=False, verify=verify
        )
    return client


def examine_task(origin: str, start: int, task: Task, session: str | None = None) -> Chunk:
    """`examine()` for the leaves at indexes start, start+1, ... (in a worker process): raw
    bundle lines, a `LineBlock` of a bundle file this worker reads, or a `PageTask` this
    worker fetches over its own HTTP connection.

    The result is compact (`Chunk`). A line that cannot be decoded or a page that cannot be
    fetched stops the chunk: the results before it and the exception are returned, for the
    caller to apply and then raise, as a serial run would. A fetched range may come back short
    (the mirror ended); the caller stops there.
    """
    prepare_worker()
    if "gc" not in _WORKER:
        # a worker allocates many short-lived containers per line and keeps none: no
        # automatic collection (a task ends with one of its young objects), and the start-up
        # objects are kept out of it
        gc.freeze()
        gc.disable()
        _WORKER["gc"] = True
    schemas, chapters = _WORKER["schemas"], _WORKER["chapters"]
    hashes: list[bytes] = []
    kinds = array("i")
    ids: list[str] = []
    others: dict[int, Examined] = {}
    keys: dict[tuple[Any, ...], int] = {}
    # a key's number by its signature (`SIGNATURE_CUTS`): the key read off the canonical
    # bytes already made for the digest, without building it
    numbers: dict[bytes, int] = {}
    if session is not None:  # this worker's numbering of the log's keys in this session
        # tasks reach a worker in log order, so a task of another log means this worker is
        # done with the last one: only the current log's numbering is kept
        numbered = _WORKER.get("numbered")
        if numbered is None or numbered[:2] != (session, origin):
            numbered = _WORKER["numbered"] = (session, origin, keys, numbers)
        keys, numbers = numbered[2], numbered[3]
    tails = _WORKER.get("tails")
    if tails is None or tails[0] != origin:  # learnt per log (`_learn_tail`)
        tails = _WORKER["tails"] = (origin, {})
    shapes: dict[bytes, tuple[str, str]] = tails[1]
    key_base = len(keys)
    error: BaseException | None = None
    entries: Iterable[tuple[bytes, Any]] = ()
    failed: list[BaseException] = []
    if isinstance(task, PageTask):
        try:
            entries = fetch_range(_client(task.timeout, task.ca_bundle), task)
        except Exception as exc:  # noqa: BLE001 - handed back to be raised in log order
            error = exc
    else:
        try:
            lines = read_lines(task) if isinstance(task, LineBlock) else task
        except OSError as exc:
            lines, error = [], exc
        # decoded one line at a time, each examined at once: a line's objects are freed
        # before the next is decoded (holding a block's decoded lines costs more than the
        # decoding)
        entries = _decoded(lines, failed)
    verdicts = schemas._verdicts
    for offset, (leaf, content) in enumerate(entries):
        # the common leaf, a valid group publish with content, checked inline: the checks of
        # `examine_leaf` in its order, each verdict the same (tests/audit/test_speed_paths.py);
        # any other leaf, and any doubt, goes through `examine_leaf` itself
        index = start + offset
        try:
            # a publish leaf of the shape learnt from this log's earlier leaves
            # (`_learn_tail`): parse_leaf's entry read off its bytes; its digest is taken
            # only when it equals the content's (so it is well-formed), else parse_leaf runs
            kind = None
            if leaf.startswith(DIGEST_MARK) and leaf[82:90] == ID_MARK and index <= MAX_INDEX:
                id_end = leaf.find(INDEX_MARK, 90)
                digits = b"%d" % index
                after = id_end + 10 + len(digits)
                if id_end > 90 and leaf[id_end + 10 : after] == digits:
                    known = shapes.get(leaf[after:])
                    rid_bytes = leaf[90:id_end]
                    if known is not None and not rid_bytes.translate(None, ID_BYTES):
                        kind, schema = known
                        rid = rid_bytes.decode()
                        digest = leaf[11:82].decode()
            if kind is None:
                entry = parse_leaf(leaf, expected_log=origin, expected_index=index)
                if entry["op"] == "publish":  # else examined by examine_leaf below
                    kind, schema = entry["kind"], entry["schema"]
                    rid, digest = entry["id"], entry["digest"]
                    _learn_tail(leaf, index, kind, schema, shapes)
            if (
                kind == GROUP
                and type(content) is dict
                and (verdict := verdicts.get(schema)) is not None
            ):
                if schema == GROUP_SCHEMA:
                    # the v2 group schema admits numbers only in its NUMBER_FIELDS: a record
                    # valid against it with no float there has none at all, and orjson's
                    # ASCII bytes are then `canonical_parsed`'s without its float walk
                    data = _dumps(content, option=CANONICAL_OPTIONS)
                    if data.isascii() and bytes_digest(data) == digest and verdict(content):
                        # the key's signature: the record's bytes without the members the
                        # key ignores (`SIGNATURE_CUTS`); one seen before had its key made,
                        # its counts and the numbers in it checked (floats print apart
                        # from integers): only the numbers cut out are left to look at
                        first = data.find(b'"biobank":')
                        cut = data.find(b',"id":"', first)
                        back = data.find(b',"sample_type":"', cut)
                        sig = data[first:cut] + data[back:] if 0 < first < cut < back else b""
                        number = numbers.get(sig) if sig else None
                        if number is not None:
                            if no_float_in(content, NUMBERS_CUT):
                                hashes.append(leaf_hash(leaf))
                                kinds.append(number)
                                ids.append(rid)
                                continue
                        elif (
                            no_float_in(content, NUMBER_FIELDS)
                            and impossible_counts(content) is None
                        ):
                            number = keys.setdefault(group_key(content, chapters), len(keys))
                            if sig:
                                if len(numbers) >= SIGNATURES:
                                    numbers.clear()
                                numbers[sig] = number
                            hashes.append(leaf_hash(leaf))
                            kinds.append(number)
                            ids.append(rid)
                            continue
                elif (
                    bytes_digest(canonical_parsed(content)) == digest
                    and verdict(content)
                    and impossible_counts(content) is None
                ):
                    hashes.append(leaf_hash(leaf))
                    kinds.append(keys.setdefault(group_key(content, chapters), len(keys)))
                    ids.append(rid)
                    continue
        except (BiobankError, ValueError, KeyError, TypeError):
            pass
        found = examine_leaf(origin, index, leaf, content, schemas, chapters)
        if type(found) is tuple:  # a valid group publish with content
            hashed, rid, key = cast(ValidGroup, found)
            hashes.append(hashed)
            kinds.append(keys.setdefault(key, len(keys)))
            ids.append(rid)
        else:
            ex = cast(Examined, found)
            hashes.append(ex.leaf_hash)
            kinds.append(-1)
            others[offset] = ex._replace(leaf_hash=b"")
    if failed:
        error = failed[0]
    del entries
    # httpx responses are reference cycles (response <-> stream) holding a whole page, and
    # automatic collection is off: collect the young generation once a task (cheap: it
    # holds this task's objects only)
    gc.collect(0)
    joined = b"".join(hashes)
    subtrees = range_subtrees(start, joined)
    new_keys = list(keys) if key_base == 0 else list(islice(keys, key_base, None))
    if session is None:
        return Chunk(joined, kinds.tobytes(), ids, others, new_keys, error, subtrees)
    return Chunk(
        joined, kinds.tobytes(), ids, others, new_keys, error, subtrees, key_base, os.getpid()
    )


# a publish leaf's canonical bytes: DIGEST_MARK, 64 hex digits, ID_MARK, the id, INDEX_MARK,
# the index, then the rest (its kind, log, op, schema, time): its "tail"
DIGEST_MARK = b'{"digest":"sha256:'
ID_MARK = b'","id":"'
INDEX_MARK = b'","index":'
MAX_INDEX = 2**53 - 1  # larger: parse_leaf refuses it (orjson's strict integers)
# the bytes an id in the common shape may hold: printable ASCII (0x20-0x7e) but the quote
# and the backslash, so that its JSON string is the bytes themselves
ID_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
TAILS = 4_096  # tails remembered per log and worker (a log's leaves share a few)


def _learn_tail(
    leaf: bytes, index: int, kind: str, schema: str, tails: dict[bytes, tuple[str, str]]
) -> None:
    """Remember the tail of a publish leaf that parse_leaf accepted at `index` of this log.

    A later leaf of this log in the same shape, with a tail remembered, is the same entry but
    for its digest, id and index: ASCII and canonical (sorted keys, strings without escapes,
    the integer's digits), every member's check passed for the first leaf, the id a non-empty
    string, the index the expected one: parse_leaf accepts it with the digest well-formed,
    which `examine_task` takes only when it equals the content's (hexadecimal by
    construction). tests/audit/test_examine_memo.py compares the two on edited leaves."""
    if not (leaf.startswith(DIGEST_MARK) and leaf[82:90] == ID_MARK and leaf.isascii()):
        return
    id_end = leaf.find(INDEX_MARK, 90)
    digits = b"%d" % index
    after = id_end + 10 + len(digits)
    if id_end > 90 and leaf[id_end + 10 : after] == digits and leaf[after : after + 1] == b",":
        if len(tails) >= TAILS:
            tails.clear()
        tails[leaf[after:]] = (kind, schema)


# the sample-group schema whose numbers the inline path knows, and the fields where a record
# valid against it can hold a number: the field itself or the values of its object
# (tests/audit/test_examine_memo.py derives them from the schema)
NUMBER_FIELDS = SCHEMA_NUMBER_FIELDS[GROUP_SCHEMA]
# the members of a v2 group that `group_key` ignores, cut out of its signature: in the
# canonical (sorted) order `age` comes first, then the key's members up to `donors`, then
# `id`, `nonce` and `period`, then the key's members from `sample_type` on
# (tests/audit/test_examine_memo.py derives the order and the markers from the schema)
SIGNATURE_CUTS = ("age", "id", "nonce", "period")
NUMBERS_CUT = tuple(name for name in NUMBER_FIELDS if name in SIGNATURE_CUTS)
SIGNATURES = 1 << 16  # signatures remembered per log and worker (~300 bytes each)


def signature(data: bytes) -> bytes | None:
    """The signature of a v2 group's key, from the record's canonical bytes: the bytes
    without `SIGNATURE_CUTS` (what `examine_task` computes inline); None when the bytes do
    not have the members it cuts at."""
    first = data.find(b'"biobank":')
    cut = data.find(b',"id":"', first)
    back = data.find(b',"sample_type":"', cut)
    return data[first:cut] + data[back:] if 0 < first < cut < back else None


def _decoded(lines: Iterable[bytes], failed: list[BaseException]) -> Iterator[tuple[bytes, Any]]:
    """The decoded lines, up to the first that cannot be decoded (its exception is put in
    `failed`)."""
    for line in lines:
        try:
            yield decode_line(line)
        except Exception as exc:  # noqa: BLE001 - handed back to be raised in log order
            failed.append(exc)
            return


def expand(chunk: Chunk) -> tuple[list[Examined], BaseException | None]:
    """The Examined leaves of a worker's compact chunk, and its error (None if none)."""
    if chunk.key_base is not None:
        raise ValueError("a chunk of a session numbers its keys across tasks: not expandable")
    kinds = array("i")
    kinds.frombytes(chunk.kinds)
    ids, keys, others, hashes = iter(chunk.ids), chunk.keys, chunk.others, chunk.hashes
    out = []
    for i, kind in enumerate(kinds):
        hashed = hashes[32 * i : 32 * i + 32]
        if kind >= 0:
            out.append(
                Examined(hashed, None, "publish", GROUP, next(ids), "", True, (), None, keys[kind])
            )
        else:
            out.append(others[i]._replace(leaf_hash=hashed))
    return out, chunk.error
