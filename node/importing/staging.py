"""The staging table: parsed sample rows wait here between parsing and publication.

Contract with ``node/privacy.py`` (``node.privacy.apply(conn, staging_table, policy) -> report``):

The importer creates one TEMP table per import with :func:`create` and fills it with one
row per *valid* sample row of the import.  Input columns (filled by the importer, read by
privacy):

=====================  =======================================================================
column                 meaning
=====================  =======================================================================
``local_id``           the biobank's local sample id (kept in the holding, never published)
``donor_id``           the biobank's local donor id, or NULL (never published; k is counted in
                       DISTINCT donors, a NULL donor counts as its own donor per sample)
``biobank``            biobank id (public identifier)
``collection``         collection id or NULL
``sample_type``        code from the ``sample-type`` list
``storage_temperature``code from ``storage-temperature`` or NULL
``sex``                code from ``sex`` or NULL
``age``                INTEGER exact age in years at collection, or NULL
``year``               INTEGER year of collection, or NULL
``diagnoses``          JSON array of ``{"system": "ICD-10"|"ORPHA", "code": ...}``
``use_conditions``     JSON array of DUO codes
``dataset_types``      JSON array of dataset-type codes
``row_location``       "file row N" / "file entry N (Specimen/x)", for reports
=====================  =======================================================================

Output columns (all NULL after staging; privacy writes them, the importer reads them):

=====================  =======================================================================
``age_min``/``age_max``          published age band in years (both NULL: age not published)
``period_from``/``period_to``    published collection period in years (NULL: not published)
``diagnoses`` (in place)         privacy may rewrite to a generalised JSON array
``held_back``                    1 when the row must not be published (class smaller than k
                                 after generalisation); 0 or NULL otherwise
=====================  =======================================================================

:class:`Staging` is the reader's :class:`node.importing.sources.base.Sink`: it writes
samples to this table and other records, and the keys of rows with problems, to TEMP
tables beside it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable

import orjson

from node.importing import wording
from protocol.errors import Problem
from protocol.schema import SchemaSet

__all__ = ["BATCH", "INPUT_COLUMNS", "Staging", "create", "index", "insert_sql"]

BATCH = 5000  # staged rows per INSERT

INPUT_COLUMNS: tuple[str, ...] = (
    "local_id",
    "donor_id",
    "biobank",
    "collection",
    "sample_type",
    "storage_temperature",
    "sex",
    "age",
    "year",
    "diagnoses",
    "use_conditions",
    "dataset_types",
    "row_location",
)

DDL = """
CREATE TEMP TABLE {name} (
    local_id TEXT NOT NULL,
    donor_id TEXT,
    biobank TEXT NOT NULL,
    collection TEXT,
    sample_type TEXT,
    storage_temperature TEXT,
    sex TEXT,
    age INTEGER,
    year INTEGER,
    diagnoses TEXT NOT NULL DEFAULT '[]',
    use_conditions TEXT NOT NULL DEFAULT '[]',
    dataset_types TEXT NOT NULL DEFAULT '[]',
    row_location TEXT NOT NULL,
    age_min INTEGER,
    age_max INTEGER,
    period_from INTEGER,
    period_to INTEGER,
    held_back INTEGER NOT NULL DEFAULT 0
)
"""

INSERT = (
    "INSERT INTO {name} ("
    + ", ".join(INPUT_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in INPUT_COLUMNS)
    + ")"
)


def create(conn: sqlite3.Connection, name: str = "staging") -> str:
    """Create (or recreate) the TEMP staging table ``name`` and return its name."""
    conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute(DDL.format(name=name))
    return name


def index(conn: sqlite3.Connection, name: str = "staging") -> None:
    """Index the staging table by local id, once it is filled (cheaper than while filling)."""
    conn.execute(f"CREATE INDEX IF NOT EXISTS temp.{name}_local ON {name}(local_id)")


def insert_sql(name: str = "staging") -> str:
    """The parameterised INSERT for the input columns, in :data:`INPUT_COLUMNS` order."""
    return INSERT.format(name=name)


class Staging:
    """The :class:`node.importing.sources.base.Sink` that writes parsed rows to TEMP tables:
    samples to the staging table ``table``, other records to ``others``, and the kind and
    key of every record with a problem to ``present``."""

    def __init__(
        self, conn: sqlite3.Connection, table: str, progress: Callable[[str, int], None] | None
    ) -> None:
        self.conn = conn
        self.table = create(conn, table)
        conn.execute("DROP TABLE IF EXISTS temp.others")
        conn.execute(
            "CREATE TEMP TABLE others (kind TEXT NOT NULL, id TEXT NOT NULL, "
            "biobank TEXT NOT NULL, content TEXT NOT NULL, location TEXT NOT NULL, "
            "columns TEXT)"
        )
        conn.execute("DROP TABLE IF EXISTS temp.present")
        conn.execute(
            "CREATE TEMP TABLE present (kind TEXT NOT NULL, key TEXT NOT NULL, location TEXT)"
        )
        self._insert = insert_sql(table)
        self._samples: list[tuple[object, ...]] = []
        self.samples = 0
        self.records = 0
        self.problems: list[Problem] = []
        self.unkeyed = 0
        self.ignored_counts: Counter[str] = Counter()
        self.progress = progress
        self._schemas: SchemaSet | None = None

    def sample(self, row: tuple[object, ...]) -> None:
        self._samples.append(row)
        self.samples += 1
        if len(self._samples) >= BATCH:
            self.flush()

    def record(
        self,
        kind: str,
        id: str,
        biobank: str,
        content: dict[str, object],
        location: str,
        columns: dict[str, str] | None = None,
    ) -> None:
        """Stage a record, or report its schema problems now (with the code problems of
        every other row: one pass, not a second round after those are fixed). ``columns``
        (field -> the operator's column) is kept for problems found later (references)."""
        if self._schemas is None:
            self._schemas = SchemaSet.default()
        problems = self._schemas.problems(kind, content, location)
        if problems:
            for p in problems:
                self.problem(p, kind, id or None)
            return
        self.conn.execute(
            "INSERT INTO others VALUES (?, ?, ?, ?, ?, ?)",
            (
                kind,
                id,
                biobank,
                orjson.dumps(content).decode(),
                location,
                orjson.dumps(columns).decode() if columns else None,
            ),
        )
        self.records += 1

    def problem(self, problem: Problem, kind: str | None = None, key: str | None = None) -> None:
        """Keep ``problem`` in plain words (node.importing.wording)."""
        self.problems.append(wording.plain(problem))
        if kind and key:
            self.conn.execute("INSERT INTO present VALUES (?, ?, ?)", (kind, key, problem.location))
        else:
            self.unkeyed += 1

    def ignored(self, what: str) -> None:
        self.ignored_counts[what] += 1

    def flush(self) -> None:
        if self._samples:
            self.conn.executemany(self._insert, self._samples)
            if self.progress:
                self.progress("staging", len(self._samples))
            self._samples.clear()

    def duplicates(self) -> None:
        """Every row of a local id that occurs twice is a problem (which one is right?)."""
        self.flush()
        index(self.conn, self.table)
        for local_id, locations in self.conn.execute(
            f"SELECT local_id, group_concat(row_location, '; ') FROM {self.table} "
            "GROUP BY local_id HAVING count(*) > 1"
        ).fetchall():
            self.problems.append(
                Problem(
                    locations,
                    "local_id",
                    local_id,
                    "duplicate local sample id; none of these rows is imported",
                )
            )
            self.conn.execute("INSERT INTO present VALUES ('sample', ?, NULL)", (local_id,))
            self.conn.execute(f"DELETE FROM {self.table} WHERE local_id = ?", (local_id,))
        for kind, id, locations in self.conn.execute(
            "SELECT kind, id, group_concat(location, '; ') FROM others "
            "GROUP BY kind, id HAVING count(*) > 1"
        ).fetchall():
            self.problems.append(
                Problem(locations, "id", id, f"duplicate {kind} id; none of these is imported")
            )
            self.conn.execute("INSERT INTO present VALUES (?, ?, NULL)", (kind, id))
            self.conn.execute("DELETE FROM others WHERE kind = ? AND id = ?", (kind, id))
        self._shared_with_invalid_rows()

    def _shared_with_invalid_rows(self) -> None:
        """A valid row whose id is also the id of a row with problems is a duplicate too:
        both rows are named, neither is imported (which one is right?)."""
        shared = self.conn.execute(
            "SELECT DISTINCT p.kind, p.key, p.location FROM present p "
            "WHERE p.location IS NOT NULL AND ("
            "(p.kind = 'sample' AND EXISTS "
            f"(SELECT 1 FROM {self.table} s WHERE s.local_id = p.key)) OR "
            "EXISTS (SELECT 1 FROM others o WHERE o.kind = p.kind AND o.id = p.key))"
        ).fetchall()
        invalid: dict[tuple[str, str], list[str]] = {}
        for kind, key, location in shared:
            invalid.setdefault((kind, key), []).append(location)
        for (kind, key), locations in invalid.items():
            if kind == "sample":
                valid = [
                    loc
                    for (loc,) in self.conn.execute(
                        f"SELECT row_location FROM {self.table} WHERE local_id = ?", (key,)
                    )
                ]
                self.conn.execute(f"DELETE FROM {self.table} WHERE local_id = ?", (key,))
                field, what = "local_id", "local sample id"
            else:
                valid = [
                    loc
                    for (loc,) in self.conn.execute(
                        "SELECT location FROM others WHERE kind = ? AND id = ?", (kind, key)
                    )
                ]
                self.conn.execute("DELETE FROM others WHERE kind = ? AND id = ?", (kind, key))
                field, what = "id", f"{kind} id"
            self.problems.append(
                Problem(
                    "; ".join(sorted(set(valid + locations), key=_row_order)),
                    field,
                    key,
                    f"duplicate {what}; none of these rows is imported (one of them has "
                    "problems of its own, reported with it)",
                )
            )


def _row_order(location: str) -> tuple[str, int, str]:
    """Sort key of a location: file, then row number."""
    name, sep, row = location.rpartition(" row ")
    return (name, int(row), "") if sep and row.isdigit() else (location, 0, location)
