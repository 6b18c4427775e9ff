"""Compare staged records with what is published and append only the differences."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from node import store
from node.importing import encode
from node.importing.encode import (
    BATCH,
    Bulk,
    ImportHelper,
    LeafPlan,
    SampleEncoder,
    encode_content,
)
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter
from protocol.errors import Problem
from protocol.schema import SchemaSet

__all__ = ["Differ", "UPSERT"]

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
        schemas: SchemaSet,
        pseudonyms: Pseudonymiser,
        pool: ImportHelper | None = None,
    ) -> None:
        """``pool``: a helper process that encodes big sample imports (see ``encode``)."""
        self.conn = conn
        self.writer = writer
        self.schema_ids = schema_ids
        self.validate = schemas.problems
        self.pseudonyms = pseudonyms
        self.encoder = SampleEncoder(pseudonyms, schemas)
        self.pool = pool
        self.published: Counter[str] = Counter()
        self.unchanged: Counter[str] = Counter()
        self.withdrawn: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self._upserts: list[tuple[object, ...]] = []
        self.progress: Callable[[int], None] | None = None  # called with rows done per batch

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
        encoded = encode_content(self.validate, kind, content, location)
        if isinstance(encoded, list):
            self.problems.extend(encoded)
            return None
        return encoded

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

    def relink(self, table: str) -> int:
        """After ``recover``: give sample records known only by published id (the mirror has
        no local ids) their local id and donor hash back, from the staged rows whose keyed
        pseudonym is that id; return how many. Nothing to do (one look-up) otherwise."""
        if (
            self.conn.execute(
                "SELECT 1 FROM records WHERE kind = 'sample' AND local_id IS NULL LIMIT 1"
            ).fetchone()
            is None
        ):
            return 0
        sample_id, donor_hash = self.pseudonyms.sample_id, self.pseudonyms.donor_hash
        rows = [
            (local, donor_hash(donor), sample_id(local))
            for local, donor in self.conn.execute(f"SELECT local_id, donor_id FROM {table}")
        ]
        before = self.conn.total_changes
        self.conn.executemany(
            "UPDATE records SET local_id = ?, donor_hash = ? "
            "WHERE kind = 'sample' AND id = ? AND local_id IS NULL",
            rows,
        )
        return self.conn.total_changes - before

    def samples(self, table: str) -> None:
        """Sample rows of the staging table that privacy did not hold back."""
        columns = (
            "s.local_id, s.donor_id, s.biobank, s.collection, s.sample_type, "
            "s.storage_temperature, s.sex, s.age_min, s.age_max, s.period_from, s.period_to, "
            "s.diagnoses, s.use_conditions, s.dataset_types, s.row_location"
        )
        where = "WHERE s.held_back IS NULL OR s.held_back = 0 ORDER BY s.rowid"
        self.conn.execute("DROP TABLE IF EXISTS temp.joined")
        first = (
            self.conn.execute("SELECT 1 FROM records WHERE kind = 'sample' LIMIT 1").fetchone()
            is None
        )
        held = self.conn.execute("SELECT count(*) FROM records").fetchone()[0]
        if first:  # nothing to compare with: read the staging table itself
            new = self.conn.execute(
                f"SELECT count(*) FROM {table} s WHERE s.held_back IS NULL OR s.held_back = 0"
            ).fetchone()[0]
            total = new
            source = f"SELECT json_array({columns}, NULL, NULL, NULL, NULL) FROM {table} s {where}"
        else:
            self.conn.execute(
                f"CREATE TEMP TABLE joined AS SELECT {columns}, r.id, r.digest, r.nonce, "
                f"r.live FROM {table} s LEFT JOIN records r "
                f"ON r.kind = 'sample' AND r.local_id = s.local_id {where}"
            )
            new, total = self.conn.execute(
                "SELECT count(*) FILTER (WHERE id IS NULL), count(*) FROM temp.joined"
            ).fetchone()
            # read from a copy: the loop below writes to ``records``, which the join reads
            names = ", ".join(c.removeprefix("s.") for c in columns.split(", "))
            source = (
                f"SELECT json_array({names}, id, digest, nonce, live) "
                "FROM temp.joined ORDER BY rowid"
            )
        # a bulk append (more new samples than records so far, e.g. a first import) drops
        # the secondary indexes and sorts them afresh at the end: same transaction, so a
        # crash or rollback restores them with everything else
        bulk = new >= 1000 and new > held
        if bulk:
            store.drop_indexes(self.conn)
        # each row as one JSON array text (what SampleEncoder.encode takes): one object per
        # row to fetch and to send to the helper, not nineteen
        rows = self.conn.execute(source)  # (after the DDL: no statement may be pending)
        batches = iter(lambda: [r[0] for r in rows.fetchmany(BATCH)], [])
        if self.pool is not None and total >= encode.HELPER_MIN_ROWS:
            writer = self.writer

            def plan(unconsumed: int) -> LeafPlan:  # the helper builds leaves too
                schema = self.schema_ids["sample"]
                return LeafPlan(writer.origin, schema, writer.time, writer.size + unconsumed)

            encoded = self.pool.encode(batches, plan=plan, here=self.encoder)
        else:
            encoded = ((batch, self.encoder.encode(batch)) for batch in batches)
        publish = self.writer.publish
        upsert = self._upsert
        schema = self.schema_ids["sample"]
        unchanged = published = 0
        for batch, results in encoded:
            if isinstance(results, Bulk):
                if self.writer.append_built(
                    "sample", schema, results.base, results.leaves, results.contents
                ):
                    self._upserts += results.upserts
                    if len(self._upserts) >= BATCH:
                        self.flush()
                    published += len(results.upserts)
                else:  # the indexes the helper assumed are taken: publish one by one
                    for (_, id, biobank, local_id, donor, digest, nonce, _), (_, text) in zip(
                        results.upserts, results.contents, strict=True
                    ):
                        index = publish("sample", str(id), schema, str(text), str(digest))
                        published += 1
                        upsert(("sample", id, biobank, local_id, donor, digest, nonce, index))
                if self.progress:
                    self.progress(len(batch))
                continue
            for result in results:
                if result is None:
                    unchanged += 1
                elif isinstance(result, list):
                    self.problems.extend(result)
                else:
                    id, data, digest, nonce, donor, built, biobank, local_id = result
                    index = publish("sample", id, schema, data, digest, built)
                    published += 1
                    upsert(("sample", id, biobank, local_id, donor, digest, nonce, index))
            if self.progress:
                self.progress(len(batch))
        if unchanged:
            self.unchanged["sample"] += unchanged
        if published:
            self.published["sample"] += published
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
