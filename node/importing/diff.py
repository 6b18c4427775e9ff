"""Compare staged biobank and collection records with what is published; append the differences."""

from __future__ import annotations

import sqlite3
from collections import Counter

import orjson

from node.importing.encode import encode_content
from node.publish import LogWriter
from protocol.errors import Problem
from protocol.schema import SchemaSet

__all__ = ["Differ", "UPSERT"]

UPSERT = (
    "INSERT INTO records (kind, id, biobank, digest, nonce, last_index, live)"
    " VALUES (?, ?, ?, ?, NULL, ?, 1) ON CONFLICT(kind, id) DO UPDATE SET"
    " biobank = excluded.biobank, digest = excluded.digest, nonce = NULL,"
    " last_index = excluded.last_index, live = 1"
)
KINDS = ("biobank", "collection")


class Differ:
    """Runs inside the import transaction; counts what it did and collects schema problems."""

    def __init__(self, conn: sqlite3.Connection, writer: LogWriter, schemas: SchemaSet) -> None:
        self.conn = conn
        self.writer = writer
        self.schemas = schemas
        self.published: Counter[str] = Counter()
        self.unchanged: Counter[str] = Counter()
        self.withdrawn: Counter[str] = Counter()
        self.problems: list[Problem] = []

    def records(self) -> None:
        """Biobank then collection records from the ``others`` temp table."""
        for kind in KINDS:
            rows = self.conn.execute(
                "SELECT o.id, o.biobank, o.content, o.location, r.digest, r.live FROM others o "
                "LEFT JOIN records r ON r.kind = o.kind AND r.id = o.id WHERE o.kind = ? "
                "ORDER BY o.rowid",
                (kind,),
            ).fetchall()  # few: biobanks and collections
            for id, biobank, text, location, old, live in rows:
                encoded = encode_content(self.schemas.problems, kind, orjson.loads(text), location)
                if isinstance(encoded, list):
                    self.problems.extend(encoded)
                    continue
                data, digest = encoded
                if live and digest == old:
                    self.unchanged[kind] += 1
                    continue
                schema = self.schemas.schema_id(kind)
                index = self.writer.publish(kind, id, schema, data, digest)
                self.published[kind] += 1
                self.conn.execute(UPSERT, (kind, id, biobank, digest, index))

    def withdraw(self, kind: str, id: str) -> None:
        """Withdraw one live record: a ``withdraw`` entry, contents erased, state not live."""
        index = self.writer.withdraw(kind, id)
        self.conn.execute(
            "UPDATE records SET live = 0, digest = NULL, nonce = NULL, "
            "last_index = ? WHERE kind = ? AND id = ?",
            (index, kind, id),
        )
        self.withdrawn[kind] += 1

    def withdraw_missing(self, kinds: set[str]) -> None:
        """Snapshot semantics for biobank and collection records not in the import.

        Collections of the biobanks this import holds (TEMP table ``covered``), and every
        biobank record (a file of biobanks lists them all); records whose rows were present
        but invalid are kept (TEMP table ``present``).
        """
        gone: list[tuple[str, str]] = []
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
