"""The floor for harvesting: every check the harvest makes, on the same records, in a tight loop.

An independent loop over the bench's own saved entry pages (each node's /v1/log/entries
responses, saved once to a file so the loop reads them from the page cache), on one core,
with no web framework, ORM, HTTP or process hand-over in between. Per entry:

- base64 of the leaf, and the JSON of the page and the leaf, by orjson;
- the leaf's checks as the harvest makes them (`protocol.entries.parse_leaf`): the canonical
  check, re-encoded by orjson with sorted keys and compared byte for byte (the full RFC 8785
  rule for any leaf that is not a flat ASCII object), the entry's fields, its index and its
  log; a valid record's publish leaf in the shape of its log's earlier leaves read off its
  bytes as the harvest's verifier reads it (`protocol.entries.LeafShapes`), its floats looked
  for where its schema admits numbers (`SchemaSet.number_fields`);
- the RFC 6962 leaf hash and the compact Merkle range append (the root per log at the end,
  compared with the node's signed checkpoint root saved with the pages);
- the content digest over the content's canonical bytes (`canonical_parsed`: orjson's
  sorted-key bytes when ASCII and float-free, else the full walk), compared with the entry's;
- schema validation by jsonschema-rs (the shipped schema of the entry's `$id`), the schema's
  kind against the entry's kind, and the content's id against the entry's;
- one bulk SQLite insert (`executemany`) of (log, index, leaf, hash, content) per page: one row
  an entry, keyed by its log's number and its index as one integer (`log << 40 | index`, the
  table's rowid: one B-tree; a key of (log, index) beside the rowid is a second B-tree and made
  the loop about 8% slower; the log's origin as text in every row and key, about 6% more), in
  one transaction per 5,000 entries (the harvest's chunk), into a database of the harvest's page
  size (16 KiB; about 10% faster here than SQLite's default 4 KiB), its blobs bound as
  bytearrays (sqlite3 binds a bytes value through its adapter look-up: about 7% slower).

The loop runs with Python's cyclic garbage collector off (what exists before it frozen, then
`gc.disable()`): it makes no reference cycles, so reference counting frees every page as it
goes. With the collector's default thresholds the same loop ran about 13% slower on the saved
1M pages (a collection every 700 net allocations rescanned the live pages and the compiled
validators); the harvest's workers calm the collector the same way (`_calm_gc`).
"""

from __future__ import annotations

import gc
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from pybase64 import b64decode as fast_b64decode

from catalogue.db import SQLITE_PAGE_SIZE
from protocol.canonical import CANONICAL_OPTIONS, bytes_digest, canonical_parsed, no_float_in
from protocol.entries import LeafShapes, parse_leaf
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint
from protocol.schema import SchemaSet

CHUNK = 5000  # entries per transaction, as the harvest's CATALOGUE_HARVEST_CHUNK default
KEY_SPAN = 2**40  # the indexes below a log's number in the floor's key (`log << 40 | index`)


def save_pages(node_urls: list[str], path: Path) -> int:
    """Fetch every entries page of every node into ``path`` (one JSON page per line), each
    node's pages after a line ``{"checkpoint": <signed note>}`` (the root to check)."""
    count = 0
    with path.open("wb") as out, httpx.Client(timeout=120) as client:
        for url in node_urls:
            note = client.get(f"{url}/v1/log/checkpoint")
            note.raise_for_status()
            out.write(orjson.dumps({"checkpoint": note.text}) + b"\n")
            start: int | None = 0
            while start is not None:
                resp = client.get(f"{url}/v1/log/entries", params={"start": start})
                resp.raise_for_status()
                page = orjson.loads(resp.content)
                out.write(orjson.dumps(page) + b"\n")
                count += len(page["entries"])
                start = page.get("next")
    return count


# bytes are bound by sqlite3 through its adapter look-up (about 0.3 µs a value), a bytearray
# directly: the leaf, its hash and the content go in as bytearrays, as the harvest's chunks
# bind the leaf and its hash (`catalogue.harvest.apply.Chunk`): about 7% faster here
_bytes = bytearray


class FloorError(ValueError):
    """A saved entry fails a check (the floor's records are the node's: never expected)."""


def floor(pages_path: str, db_path: str) -> dict[str, float]:
    """Process every saved page; runs in its own process. Times the loop, not the setup."""
    schemas = SchemaSet.default()
    validators: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    numbers_of: dict[str, tuple[str, ...] | None] = {}
    for sid in schemas.ids:  # compiled before the clock starts
        validators[sid] = schemas.verdict(sid)
        kinds[sid] = schemas.kind_of(sid)
        numbers_of[sid] = schemas.number_fields(sid)
    conn = sqlite3.connect(db_path, isolation_level=None)
    # the harvest's page size (`catalogue.db.SQLITE_PAGE_SIZE`, 16 KiB): with SQLite's 4 KiB
    # the loop ran about 10% slower on the saved 1M pages (6 alternated runs); set before WAL
    conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        # (log, index) as the rowid: `log << 40 | index` (a saved page past 2**40 is refused)
        "CREATE TABLE IF NOT EXISTS leaves (key INTEGER PRIMARY KEY, leaf BLOB, "
        "hash BLOB, content BLOB)"
    )
    collecting = gc.isenabled()
    gc.collect()
    gc.freeze()  # the schemas and validators compiled above are never scanned
    gc.disable()  # no cycles are made below: reference counting frees each page
    try:
        return _loop(conn, pages_path, validators, kinds, numbers_of)
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


def _loop(
    conn: sqlite3.Connection,
    pages_path: str,
    validators: dict[str, Any],
    kinds: dict[str, str],
    numbers_of: dict[str, tuple[str, ...] | None],
) -> dict[str, float]:
    insert = "INSERT INTO leaves VALUES (? << 40 | ?, ?, ?, ?)"  # (KEY_SPAN)
    # the leaves by pybase64 (SIMD), as the harvest decodes a page (`fetcher.decode_page`)
    b64decode = fast_b64decode
    loads, dumps = orjson.loads, orjson.dumps
    shapes = LeafShapes()
    start = time.perf_counter()
    total = 0
    in_tx = 0
    logid = 0
    compact = CompactRange()
    signed: Checkpoint | None = None
    origin = ""
    expected = 0

    def close_log() -> None:
        if signed is not None and (compact.size, compact.root()) != (signed.size, signed.root):
            raise FloorError(f"{origin}: the saved leaves do not rebuild the signed root")

    conn.execute("BEGIN")
    with open(pages_path, "rb") as fh:
        for line in fh:
            page = loads(line)
            if "checkpoint" in page:  # the next node's pages follow
                close_log()
                signed = Checkpoint.from_text(page["checkpoint"].split("\n\n", 1)[0] + "\n")
                origin, expected, compact = signed.origin, 0, CompactRange()
                logid += 1  # the log's number, as the harvest's rows carry their node's id
                shapes = LeafShapes()
                continue
            rows: list[tuple[int, int, bytearray, bytearray, bytearray | None]] = []
            for item in page["entries"]:
                leaf = b64decode(item["leaf"], validate=True)
                content = item.get("content")
                # the verifier's fast path (`StepVerifier._feed_fast`): a valid record's
                # publish leaf in its log's learnt shape read off its bytes, its digest over
                # orjson's ASCII bytes, its floats looked for where its schema admits numbers
                if type(content) is dict:
                    try:
                        data = dumps(content, option=CANONICAL_OPTIONS)
                    except orjson.JSONEncodeError:
                        data = b"\x80"  # not ASCII: the full path says what is wrong
                    entry = (
                        shapes.read(leaf, expected, bytes_digest(data)) if data.isascii() else None
                    )
                    if entry is not None:
                        sid = entry["schema"]
                        validator = validators.get(sid)
                        numbers = numbers_of.get(sid)
                        if (
                            validator is not None
                            and numbers is not None
                            and kinds[sid] == entry["kind"]
                            and content.get("id") == entry["id"]
                            and validator(content)
                            and no_float_in(content, numbers)
                        ):
                            hashed = leaf_hash(leaf)
                            compact.append(hashed)
                            rows.append(
                                (logid, expected, _bytes(leaf), _bytes(hashed), _bytes(data))
                            )
                            expected += 1
                            continue
                entry = parse_leaf(leaf, expected_log=origin, expected_index=expected)
                hashed = leaf_hash(leaf)
                compact.append(hashed)
                body = None
                if content is not None:
                    shapes.learn(leaf, expected, entry)
                    body = canonical_parsed(content)
                    if bytes_digest(body) != entry["digest"]:
                        raise FloorError(f"leaf {expected}: content digest mismatch")
                    sid = entry["schema"]
                    validator = validators.get(sid)
                    if (
                        validator is None
                        or not validator(content)
                        or kinds[sid] != entry["kind"]
                        or content.get("id") != entry["id"]
                    ):
                        raise FloorError(f"leaf {expected}: content fails its schema")
                rows.append(
                    (
                        logid,
                        expected,
                        _bytes(leaf),
                        _bytes(hashed),
                        None if body is None else _bytes(body),
                    )
                )
                expected += 1
            if expected > KEY_SPAN:
                raise FloorError(f"{origin}: an index past 2**40 does not fit the floor's key")
            conn.executemany(insert, rows)
            total += len(rows)
            in_tx += len(rows)
            if in_tx >= CHUNK:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
                in_tx = 0
    conn.execute("COMMIT")
    close_log()
    conn.close()
    return {"records": total, "seconds": time.perf_counter() - start}
