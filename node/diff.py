"""Compare staged records with what is published and append only the differences."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from hashlib import sha256
from typing import Any

import orjson

from node import store
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, content_digest
from protocol.canonical import canonical
from protocol.errors import Problem

Validate = Callable[[str, dict[str, Any], str], list[Problem]]
BATCH = 5000
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER

UPSERT = (
    "INSERT INTO records (kind, id, biobank, local_id, donor_hash, digest, nonce, last_index, live)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT(kind, id) DO UPDATE SET"
    " biobank = excluded.biobank, local_id = excluded.local_id, donor_hash = excluded.donor_hash,"
    " digest = excluded.digest, nonce = excluded.nonce, last_index = excluded.last_index, live = 1"
)


class Differ:
    """Runs inside the import transaction; counts what it did and collects schema problems."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        writer: LogWriter,
        schema_ids: dict[str, str],
        validate: Validate,
        pseudonyms: Pseudonymiser,
    ) -> None:
        self.conn = conn
        self.writer = writer
        self.schema_ids = schema_ids
        self.validate = validate
        self.pseudonyms = pseudonyms
        self.published: Counter[str] = Counter()
        self.unchanged: Counter[str] = Counter()
        self.withdrawn: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self._upserts: list[tuple[object, ...]] = []
        self.progress: Callable[[int], None] | None = None  # called with rows done per batch
        # per sample field, the values seen in valid records (see samples())
        self._valid_values: list[set[object]] = [set() for _ in range(13)]

    def _upsert(self, row: tuple[object, ...]) -> None:
        self._upserts.append(row)
        if len(self._upserts) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.writer.flush()
        if self._upserts:
            self.conn.executemany(UPSERT, self._upserts)
            self._upserts.clear()

    def _encode(
        self, kind: str, content: dict[str, Any], location: str
    ) -> tuple[bytes, str] | None:
        """Canonical bytes and digest of valid content; None (problems kept) when invalid."""
        problems = self.validate(kind, content, location)
        if not problems:
            try:
                data = canonical(content)
            except ValueError as exc:  # e.g. a float: schema-valid JSON, but not canonical
                problems = [Problem(location, "/", None, str(exc))]
        if problems:
            self.problems.extend(problems)
            return None
        return data, content_digest(data)

    def records(self) -> None:
        """Biobank then collection records from the ``others`` temp table."""
        for kind in ("biobank", "collection"):
            rows = self.conn.execute(
                "SELECT o.id, o.biobank, o.content, o.location, r.digest, r.live FROM others o "
                "LEFT JOIN records r ON r.kind = o.kind AND r.id = o.id WHERE o.kind = ? "
                "ORDER BY o.rowid",
                (kind,),
            ).fetchall()  # few: biobanks and collections
            for id, biobank, text, location, old, live in rows:
                encoded = self._encode(kind, orjson.loads(text), location)
                if encoded is None:
                    continue
                data, digest = encoded
                if live and digest == old:
                    self.unchanged[kind] += 1
                    continue
                index = self.writer.publish(kind, id, self.schema_ids[kind], data, digest)
                self.published[kind] += 1
                self._upsert((kind, id, biobank, None, None, digest, None, index))
            if self.progress:
                self.progress(len(rows))
        self.flush()

    def samples(self, table: str) -> None:
        """Sample rows of the staging table that privacy did not hold back."""
        columns = (
            "s.local_id, s.donor_id, s.biobank, s.collection, s.sample_type, "
            "s.storage_temperature, s.sex, s.age_min, s.age_max, s.period_from, s.period_to, "
            "s.diagnoses, s.use_conditions, s.dataset_types, s.row_location"
        )
        published = "WHERE s.held_back IS NULL OR s.held_back = 0 ORDER BY s.rowid"
        self.conn.execute("DROP TABLE IF EXISTS temp.joined")
        first = self.conn.execute(
            "SELECT 1 FROM records WHERE kind = 'sample' LIMIT 1").fetchone() is None
        held = self.conn.execute("SELECT count(*) FROM records").fetchone()[0]
        if first:  # nothing to compare with: read the staging table itself
            new = self.conn.execute(
                f"SELECT count(*) FROM {table} s WHERE s.held_back IS NULL OR s.held_back = 0"
            ).fetchone()[0]
            source = f"SELECT {columns}, NULL, NULL, NULL, NULL FROM {table} s {published}"
        else:
            self.conn.execute(
                f"CREATE TEMP TABLE joined AS SELECT {columns}, r.id, r.digest, r.nonce, "
                f"r.live FROM {table} s LEFT JOIN records r "
                f"ON r.kind = 'sample' AND r.local_id = s.local_id {published}"
            )
            new = self.conn.execute(
                "SELECT count(*) FROM temp.joined WHERE id IS NULL").fetchone()[0]
            # read from a copy: the loop below writes to ``records``, which the join reads
            source = "SELECT * FROM temp.joined ORDER BY rowid"
        # a bulk append (more new samples than records so far, e.g. a first import) drops
        # the secondary indexes and sorts them afresh at the end: same transaction, so a
        # crash or rollback restores them with everything else
        bulk = new >= 1000 and new > held
        if bulk:
            store.drop_indexes(self.conn)
        rows = self.conn.execute(source)  # (after the DDL: no statement may be pending)
        lists: dict[str, Any] = {}  # JSON list text -> parsed (shared, never mutated)
        (seen_keys, seen_biobank, seen_collection, seen_type, seen_storage, seen_sex,
         seen_age_min, seen_age_max, seen_from, seen_to, seen_diagnoses, seen_use,
         seen_datasets) = self._valid_values
        sample_id = self.pseudonyms.sample_id
        donor_hash = self.pseudonyms.donor_hash
        publish = self.writer.publish
        upsert = self._upsert
        schema = self.schema_ids["sample"]
        nonces = _Nonces()
        unchanged = published = done = 0
        for row in rows:
            done += 1
            if done == BATCH:
                if self.progress:
                    self.progress(done)
                done = 0
            (local_id, donor_id, biobank, collection, sample_type, storage, sex, age_min,
             age_max, period_from, period_to, diagnoses, use, datasets, location, old_id,
             old_digest, old_nonce, live) = row
            id = old_id or sample_id(local_id)
            content: dict[str, Any] = {"id": id, "biobank": biobank}
            if collection:
                content["collection"] = collection
            content["sample_type"] = sample_type
            if storage:
                content["storage_temperature"] = storage
            if sex:
                content["sex"] = sex
            if age_min is not None and age_max is not None:
                content["age"] = {"min": age_min, "max": age_max}
            if period_from is not None and period_to is not None:
                content["period"] = {"from": period_from, "to": period_to}
            # list fields: a few combinations repeat, so each JSON text is parsed once
            if diagnoses and diagnoses != "[]":
                content["diagnoses"] = lists.get(diagnoses) or _parse(lists, diagnoses)
            if use and use != "[]":
                content["use_conditions"] = lists.get(use) or _parse(lists, use)
            if datasets and datasets != "[]":
                content["dataset_types"] = lists.get(datasets) or _parse(lists, datasets)
            content["nonce"] = old_nonce or nonces.next()
            # The gate: a record whose key set and every value already occurred in a record
            # that passed the schema AND protocol.canonical.canonical() is valid and
            # canonicalisable too (the sample schema has no cross-property rules), so only
            # records with something new take the checked path. The gate is type-exact:
            # strings equal only strings, list fields are compared as their JSON text, and
            # the integer columns have INTEGER affinity (SQLite returns int for every
            # integral value, and a non-integral float never equals a seen int).
            keys = tuple(content)
            if (keys in seen_keys and biobank in seen_biobank
                    and collection in seen_collection and sample_type in seen_type
                    and storage in seen_storage and sex in seen_sex
                    and age_min in seen_age_min and age_max in seen_age_max
                    and period_from in seen_from and period_to in seen_to
                    and diagnoses in seen_diagnoses and use in seen_use
                    and datasets in seen_datasets):
                data = _checked_bytes(content)
            else:
                encoded = self._encode("sample", content, location)
                if encoded is None:
                    continue
                data = encoded[0]
                for v, seen in zip(
                    (keys, biobank, collection, sample_type, storage, sex, age_min, age_max,
                     period_from, period_to, diagnoses, use, datasets),
                    self._valid_values,
                    strict=True,
                ):
                    seen.add(v)
            digest = "sha256:" + sha256(data).hexdigest()
            if live and digest == old_digest:
                unchanged += 1
                continue
            if old_digest is not None:
                # changed content gets a fresh nonce: old and new digests stay unlinkable
                content["nonce"] = nonces.next()
                data = _checked_bytes(content)
                digest = "sha256:" + sha256(data).hexdigest()
            index = publish("sample", id, schema, data, digest)
            published += 1
            upsert(("sample", id, biobank, local_id, donor_hash(donor_id), digest,
                    content["nonce"], index))
        if unchanged:
            self.unchanged["sample"] += unchanged
        if published:
            self.published["sample"] += published
        if self.progress:
            self.progress(done)
        self.flush()
        if bulk:
            store.create_indexes(self.conn)

    def withdraw(self, kind: str, id: str) -> None:
        """Withdraw one live record: a ``withdraw`` entry, contents erased, state not live."""
        self.flush()
        index = self.writer.withdraw(kind, id)
        self.conn.execute(
            "UPDATE records SET live = 0, digest = NULL, nonce = NULL, "
            "last_index = ? WHERE kind = ? AND id = ?",
            (index, kind, id),
        )
        self.withdrawn[kind] += 1

    def withdraw_missing(self, table: str, kinds: set[str]) -> None:
        """Snapshot semantics: withdraw live records of the covered scope not in the import.

        Scope: samples and collections of the biobanks this import holds (valid rows); for
        biobank records, every biobank record (a file of biobanks lists them all). Records
        whose rows were present but invalid are kept (TEMP table ``present``), and so are
        rows privacy held back only if they were never published (held back = withdrawn).
        """
        self.flush()
        self.conn.execute("DROP TABLE IF EXISTS temp.covered")
        self.conn.execute(
            f"CREATE TEMP TABLE covered AS SELECT DISTINCT biobank FROM {table} "
            "UNION SELECT DISTINCT biobank FROM others"
        )
        gone: list[tuple[str, str]] = []
        if "sample" in kinds:
            gone += self.conn.execute(
                "SELECT kind, id FROM records WHERE kind = 'sample' AND live = 1 "
                "AND biobank IN (SELECT biobank FROM covered) "
                f"AND local_id NOT IN (SELECT local_id FROM {table} "
                "WHERE held_back IS NULL OR held_back = 0) "
                "AND local_id NOT IN (SELECT key FROM present WHERE kind = 'sample') "
                "ORDER BY last_index"
            ).fetchall()
        for kind in ("collection", "biobank"):
            if kind not in kinds:
                continue
            scope = "AND biobank IN (SELECT biobank FROM covered) " if kind == "collection" else ""
            gone += self.conn.execute(
                f"SELECT kind, id FROM records WHERE kind = ? AND live = 1 {scope}"
                "AND id NOT IN (SELECT id FROM others WHERE kind = ?) "
                "AND id NOT IN (SELECT key FROM present WHERE kind = ?) "
                "ORDER BY last_index",
                (kind, kind, kind),
            ).fetchall()
        for kind, id in gone:
            self.withdraw(kind, id)


def _parse(memo: dict[str, Any], text: str) -> Any:
    """``orjson.loads(text)``, kept in ``memo`` (shared values: never mutated)."""
    if len(memo) >= BATCH * 10:
        memo.clear()
    parsed = memo[text] = orjson.loads(text)
    return parsed


class _Nonces:
    """Fresh random 128-bit nonces (hex), drawn from the OS in blocks, not one call each."""

    def __init__(self) -> None:
        self._block = ""
        self._at = 0

    def next(self) -> str:
        if self._at >= len(self._block):
            self._block = os.urandom(16 * BATCH).hex()
            self._at = 0
        self._at += 32
        return self._block[self._at - 32 : self._at]


def _checked_bytes(content: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of content whose every value passed ``canonical()`` before (the gate).

    Equal to :func:`protocol.canonical.canonical` for such content: no float, no integer
    beyond ±(2^53−1) and no non-string key can occur, so orjson's sorted output of an
    all-ASCII value IS the canonical form; anything non-ASCII takes ``canonical()`` itself
    (NFC check, UTF-16 key order). ``tests/node/test_canonical_gate.py`` holds the proof.
    """
    data = orjson.dumps(content, option=_SORTED)
    return data if data.isascii() else canonical(content)
