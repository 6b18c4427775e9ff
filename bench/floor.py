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

With `index=True` (`IndexedFloor`) the loop also does the rest of what a harvest does with a
node's verified log: it builds the catalogue's search index from it, the same rows in the
catalogue's own tables (`catalogue.models`: `combos`, `sample_groups`, `leaf_records`,
`records`, `rejections`), keyed by the harvest's own functions (`key_group`, `encode_multi`),
the latest leaf of each record winning, a withdrawal erasing its record's earlier contents
and a group breaking the node's k rejected, as `catalogue.harvest.index.index_step` does. This
is the single-core reference that does the same work as the harvest, which a ratio needs to be
honest about a harvest that indexes (bench/README.md, "The floor").

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
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
import orjson
from pybase64 import b64decode as fast_b64decode

from catalogue.db import SQLITE_PAGE_SIZE
from catalogue.enrol import DEFAULT_K, policy_k
from catalogue.harvest.index import GROUP, group_problems, missing_content_rejections
from protocol.canonical import CANONICAL_OPTIONS, bytes_digest, canonical_parsed, no_float_in
from protocol.entries import LeafShapes, parse_leaf
from protocol.merkle import CompactRange, leaf_hash
from protocol.note import Checkpoint
from protocol.schema import SchemaSet

CHUNK = 5000  # entries per transaction, as the harvest's CATALOGUE_HARVEST_CHUNK default
KEY_SPAN = 2**40  # the indexes below a log's number in the floor's key (`log << 40 | index`)


def save_pages(node_urls: list[str], path: Path) -> int:
    """Fetch every entries page of every node into ``path`` (one JSON page per line), each
    node's pages after a line ``{"checkpoint": <signed note>, "k": k, "country": c}`` (the
    root to check, and what the catalogue's enrolment takes from the node's descriptor for
    its index: its k and country)."""
    count = 0
    with path.open("wb") as out, httpx.Client(timeout=120) as client:
        for url in node_urls:
            note = client.get(f"{url}/v1/log/checkpoint")
            note.raise_for_status()
            about = client.get(f"{url}/.well-known/biobank-node")
            about.raise_for_status()
            descriptor = about.json()
            header = {
                "checkpoint": note.text,
                "k": policy_k(descriptor),
                "country": descriptor.get("country"),
            }
            out.write(orjson.dumps(header) + b"\n")
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


class IndexedFloor:
    """What the harvest adds to a verified log, at single-core speed: the catalogue's search
    index, built from the entries `floor`'s loop has verified, in the catalogue's own tables.

    The fastest correct way found for one process (a whole log at a time, its node's state
    in dicts): each group keyed where it is verified (`key_group`, as the harvest's lanes key
    it), the latest leaf of each record kept, and at the log's end its combos summed from
    the live groups and every row written by one sorted `executemany` a table, in one
    transaction. The same rows as `index_step` writes for the same log harvested into an
    empty catalogue (tests/e2e/test_bench_floor.py compares them table by table); a combo's
    `changed` stamp is the log's number (the harvest's: its own log's size) and its ids follow
    its groups' ids (the harvest's: their keys' order in a batch)."""

    def __init__(self, conn: sqlite3.Connection, db_path: str) -> None:
        from sqlalchemy import create_engine

        from catalogue.harvest.index import encode_multi, key_group
        from catalogue.models import (
            combos,
            leaf_records,
            metadata,
            records,
            rejections,
            sample_groups,
        )
        from catalogue.search.codes import Vocabulary

        # the catalogue's tables and indexes for SQLite, made by its own metadata (setup)
        engine = create_engine(f"sqlite:///{db_path}")
        tables = [combos, sample_groups, leaf_records, records, rejections]
        metadata.create_all(engine, tables=tables)
        engine.dispose()
        self.conn = conn
        self.key_group, self.encode_multi = key_group, encode_multi
        self.vocab = Vocabulary.default()
        # `key_group`'s memo, one for the run: one object per distinct string and list of
        # codes (a few hundred). The harvest's is a chunk's, for the bytes it stages; a page's
        # here was 3.5% slower and a chunk's 1.5% (alternated on the saved 1M pages)
        self.memo: dict[Any, Any] = {}
        self.encoded: dict[tuple[Any, ...], tuple[str | None, str | None, str | None]] = {}
        self.next_combo = 1
        self.open({})

    def open(self, header: dict[str, Any], origin: str = "") -> None:
        """A log begins: its node's k and country (`save_pages` saves them with its root)."""
        self.origin = origin
        self.k = int(header.get("k", DEFAULT_K))
        self.country: str | None = header.get("country")
        self.groups: dict[str, Any] = {}  # group id -> its keyed latest leaf (None: gone)
        self.records: dict[tuple[str, str], tuple[int, Any] | None] = {}
        self.leaves: list[tuple[str, str, int]] = []  # (kind, record id, index): leaf_records
        self.erase: list[tuple[str, str, int]] = []  # withdrawn (kind, id) before an index
        self.missing: dict[tuple[str, str], int] = {}  # latest leaf a publish without content
        self.refused: list[tuple[int, str, str, str]] = []

    def add(self, idx: int, entry: dict[str, Any], content: Any) -> None:
        """One verified entry (`content`: its verified record; None for a withdrawal, or a
        publish whose content the node no longer serves)."""
        kind = entry.get("kind")
        if kind is None:
            return  # rotate-key: no record
        rid = entry["id"]
        self.leaves.append((kind, rid, idx))
        if self.missing:
            self.missing.pop((kind, rid), None)
        if content is None:  # withdrawn, or its content missing (rejected if it stays so)
            if entry["op"] == "withdraw":
                self.erase.append((kind, rid, idx))
            else:
                self.missing[(kind, rid)] = idx
            if kind == GROUP:
                self.groups[rid] = None
            else:
                self.records[(kind, rid)] = None
        elif kind == GROUP:
            keyed = self.key_group(idx, content, self.memo, rid)
            if keyed is None:
                raise FloorError(f"leaf {idx}: a schema-valid group the harvest cannot key")
            donors, samples = keyed[6], keyed[5]
            if donors is not None and (
                donors < self.k or (samples is not None and samples < donors)
            ):
                problems = group_problems({"samples": samples, "donors": donors}, self.k)
                self.refused.append((idx, kind, rid, orjson.dumps(problems).decode()))
                self.groups[rid] = None
            else:
                self.groups[rid] = keyed
        else:  # (a few: as the harvest reads it back, from its canonical bytes)
            self.records[(kind, rid)] = (idx, orjson.loads(canonical_parsed(content)))

    def close(self, node: int) -> None:
        """The log's index, written in one transaction."""
        conn = self.conn
        countries = {
            rid: ch[1].get("country")
            for (kind, rid), ch in self.records.items()
            if kind == "biobank" and ch is not None
        }
        sums: dict[bytes, list[Any]] = {}  # combo hash -> [id, key, n_min, n_max, d_min, d_max]
        groups = []
        for rid, keyed in sorted(g for g in self.groups.items() if g[1] is not None):
            _, khash, key, s_iv, d_iv = keyed[:5]
            combo = sums.get(khash)
            if combo is None:
                combo = sums[khash] = [self.next_combo, key, 0, 0, 0, 0]
                self.next_combo += 1
            combo[2] += s_iv[0]
            combo[3] += s_iv[1]
            if d_iv[0] > combo[4]:
                combo[4] = d_iv[0]
            combo[5] += d_iv[1]
            groups.append((node, rid, keyed[0], combo[0], *s_iv, *d_iv))
        combo_rows = []
        for khash, (cid, key, n_min, n_max, d_min, d_max) in sums.items():
            lists = key[9:]
            multi = self.encoded.get(lists)
            if multi is None:
                multi = self.encoded[lists] = self.encode_multi(key, self.vocab)
            country = countries.get(key[0]) or self.country
            combo_rows.append(
                (cid, node, _bytes(khash), *key[:9], *multi, country, n_min, n_max, d_min, d_max)
            )
        combo_rows.sort(key=_first)  # (in id order: the table's B-tree is appended to)
        conn.execute("BEGIN")
        conn.executemany(_COMBO_ROW, [(*row, node) for row in combo_rows])
        conn.executemany("INSERT INTO sample_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?)", groups)
        conn.executemany(
            "INSERT INTO leaf_records VALUES (?, ?, ?, ?)",
            [(node, *leaf) for leaf in sorted(self.leaves)],
        )
        conn.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    node,
                    kind,
                    rid,
                    ch[0],
                    ch[1].get("country") if kind == "biobank" else None,
                    ch[1].get("biobank") if kind == "collection" else None,
                    orjson.dumps(ch[1]).decode(),
                )
                for (kind, rid), ch in sorted(self.records.items())
                if ch is not None
            ],
        )
        conn.executemany(
            "INSERT INTO rejections VALUES (?, ?, ?, ?, ?)",
            [(node, *row) for row in self.refused]
            + [
                (r["node_id"], r["idx"], r["kind"], r["record_id"], r["problems"])
                for r in missing_content_rejections(node, self.origin, self.missing)
            ],
        )
        if self.erase:  # a withdrawn record's earlier leaves keep no content
            earlier: dict[tuple[str, str], list[int]] = {}
            for kind, rid, idx in self.leaves:
                earlier.setdefault((kind, rid), []).append(idx)
            conn.executemany(
                "UPDATE leaves SET content = NULL WHERE key = ?",
                [
                    (node << 40 | idx,)
                    for kind, rid, upto in self.erase
                    for idx in earlier[(kind, rid)]
                    if idx < upto
                ],
            )
        conn.execute("COMMIT")


_COMBO_ROW = (
    "INSERT INTO combos (id, node_id, khash, biobank, collection, sample_type,"
    " storage_temperature, sex, age_min, age_max, year_from, year_to, diagnoses,"
    " use_conditions, dataset_types, country, n_min, n_max, d_min, d_max, changed)"
    " VALUES (" + ", ".join(["?"] * 21) + ")"
)
_first = itemgetter(0)


def floor(pages_path: str, db_path: str, *, index: bool = False) -> dict[str, float]:
    """Process every saved page; runs in its own process. Times the loop, not the setup.
    `index`: build the catalogue's search index too (`IndexedFloor`)."""
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
    indexer = IndexedFloor(conn, db_path) if index else None
    collecting = gc.isenabled()
    gc.collect()
    gc.freeze()  # the schemas and validators compiled above are never scanned
    gc.disable()  # no cycles are made below: reference counting frees each page
    try:
        return _loop(conn, pages_path, validators, kinds, numbers_of, indexer)
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
    indexer: IndexedFloor | None,
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
        if indexer is not None and signed is not None:
            conn.execute("COMMIT")  # the log's leaves, then its index in a transaction of its own
            indexer.close(logid)
            conn.execute("BEGIN")

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
                if indexer is not None:
                    indexer.open(page, origin)
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
                            if indexer is not None:
                                indexer.add(expected, entry, content)
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
                if indexer is not None:
                    indexer.add(expected, entry, content)
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
    close_log()
    conn.execute("COMMIT")
    conn.close()
    return {"records": total, "seconds": time.perf_counter() - start}
