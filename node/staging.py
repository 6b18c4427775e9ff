"""The staging table: parsed sample rows wait here between parsing and publication.

Contract with ``node/privacy.py`` (``node.privacy.apply(conn, staging_table, policy) -> report``):

The importer creates one TEMP table per import with :func:`create` and fills it with one
row per *valid* sample row of the import.  Input columns (filled by the importer, read by
privacy):

=====================  =======================================================================
column                 meaning
=====================  =======================================================================
``local_id``           the biobank's local sample id (never published; pseudonymised later)
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

Until privacy runs, :func:`default_generalise` fills the output columns with a 10-year age
band and a 5-year period; it is the one function to replace when privacy lands.
"""

from __future__ import annotations

import sqlite3

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


def default_generalise(
    conn: sqlite3.Connection, name: str, age_width: int = 10, period_width: int = 5
) -> dict[str, int]:
    """Fallback privacy step: exact age to a band, year to a period (no k-anonymity)."""
    conn.execute(
        f"UPDATE {name} SET "
        "age_min = CASE WHEN age IS NULL THEN NULL ELSE (age / ?) * ? END, "
        "age_max = CASE WHEN age IS NULL THEN NULL ELSE (age / ?) * ? + ? - 1 END, "
        "period_from = CASE WHEN year IS NULL THEN NULL ELSE (year / ?) * ? END, "
        "period_to = CASE WHEN year IS NULL THEN NULL ELSE (year / ?) * ? + ? - 1 END",
        (
            age_width,
            age_width,
            age_width,
            age_width,
            age_width,
            period_width,
            period_width,
            period_width,
            period_width,
            period_width,
        ),
    )
    return {
        "generalised": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0],
        "held_back": 0,
    }
