"""Database engine for SQLite (default) or PostgreSQL (postgresql+psycopg://...)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import OperationalError

from catalogue.errors import WriteLockBusy
from catalogue.models import (
    RECORDS_VIEW,
    ROTATION,
    combos,
    leaf_records,
    leaves,
    metadata,
    nodes,
)

__all__ = [
    "SQLITE_PAGE_SIZE",
    "WalCheckpointer",
    "add_leaf_records",
    "bulk_insert",
    "copy_types",
    "executemany",
    "generic_plans",
    "make_engine",
    "update_from_rows",
    "write_tx",
]


def make_engine(
    url: str,
    *,
    create: bool = True,
    busy_timeout: float = 300,
    cache_mib: int = 16,
    autocheckpoint: bool = True,
) -> Engine:
    """Build an engine for `url` and create the tables if asked.

    `busy_timeout` (SQLite): how long a writer waits for another's transaction; harvest
    workers commit a whole step's index in one transaction, which can take a while.
    `cache_mib` (SQLite): the page cache of each connection.
    `autocheckpoint` (SQLite): False for a harvest lane's connections, whose commits then
    never copy the write-ahead log into the database themselves: a `WalCheckpointer` of
    the harvest does, in a thread of its own.
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(
            engine,
            "connect",
            lambda dbapi_conn, _record: _sqlite_pragmas(dbapi_conn, cache_mib, autocheckpoint),
        )
        event.listen(engine, "begin", _sqlite_begin)
    if create:
        # PostgreSQL: `leaf_records` is a view over `leaves`, made by `_records_view`
        postgres = engine.dialect.name == "postgresql"
        tables = [t for t in metadata.sorted_tables if not (postgres and t is leaf_records)]
        metadata.create_all(engine, tables=tables)
        _upgrade(engine)
    return engine


def _upgrade(engine: Engine) -> None:
    """Bring a database made by an earlier version to the current tables (idempotent):
        `leaf_records` replaced the (node_id, kind, record_id) index of `leaves`; `combos` gained
        `changed` (null in old rows: a server loads them all when it starts anyway); `nodes` gained
    `withholding_since`; `combos` gained `khash`, which replaced `ckey` in their unique key
    (`_hash_combo_keys`), then lost `ckey` (`_drop_combo_text_keys`: after the hashes, which
    are made from it); the combos' side tables were folded into their rows
    (`_fold_side_tables`); PostgreSQL stores `harvest_keyed.data` uncompressed
    (`_uncompressed_keyed`); SQLite drops the groups' index by combo
    (`ix_sample_groups_combo`: a recount there finds a combo's groups without it);
    PostgreSQL's `leaf_records` table became a view over an index of `leaves`
    (`_records_view`)."""
    with engine.begin() as conn:
        _uncompressed_keyed(conn)
        _records_view(conn)
        _hash_combo_keys(conn)
        _drop_combo_text_keys(conn)
        _fold_side_tables(conn)
        if "withholding_since" not in {c["name"] for c in inspect(conn).get_columns("nodes")}:
            conn.execute(text("ALTER TABLE nodes ADD COLUMN withholding_since VARCHAR(32)"))
        if "changed" not in {c["name"] for c in inspect(conn).get_columns("combos")}:
            conn.execute(text("ALTER TABLE combos ADD COLUMN changed BIGINT"))
            next(ix for ix in combos.indexes if ix.name == "ix_combos_changed").create(conn)
        if conn.dialect.name == "sqlite":  # unused there (`models.sample_groups`)
            conn.execute(text("DROP INDEX IF EXISTS ix_sample_groups_combo"))
        names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
        if "ix_leaves_rotations" not in names:
            next(ix for ix in leaves.indexes if ix.name == "ix_leaves_rotations").create(conn)
        if "ix_leaves_record" in names:  # every accepted leaf, as commit_final adds them
            add_leaf_records(  # (SQLite; PostgreSQL's view reads them all already)
                conn,
                leaves.c.idx
                < select(nodes.c.tree_size).where(nodes.c.id == leaves.c.node_id).scalar_subquery(),
            )
            conn.execute(text("DROP INDEX ix_leaves_record"))


def _records_view(conn: Connection) -> None:
    """PostgreSQL: `leaf_records` as a view over `leaves` (`models.RECORDS_VIEW`), read
    through the partial index `ix_leaves_records`, instead of a table filled as chunks are
    stored. The index is built once over every stored leaf (staged ones too: the table held
    theirs as well) before the table is dropped; a step the version before staged is
    accepted as it is (its keyed rows' format is read as the current one)."""
    if conn.dialect.name != "postgresql":
        return
    if "leaf_records" in inspect(conn).get_view_names():
        return
    names = {ix["name"] for ix in inspect(conn).get_indexes("leaves")}
    if "ix_leaves_records" not in names:
        next(ix for ix in leaves.indexes if ix.name == "ix_leaves_records").create(conn)
    if "leaf_records" in inspect(conn).get_table_names():  # the version before
        conn.exec_driver_sql("DROP TABLE leaf_records")
    conn.exec_driver_sql(RECORDS_VIEW)


def _uncompressed_keyed(conn: Connection) -> None:
    """PostgreSQL: store `harvest_keyed.data` out of line but not compressed (STORAGE
    EXTERNAL). A chunk's keyed groups are about 650 KB; pglz, the default, took a backend
    11-12 ms to compress them and more to read them back, against 2 ms stored as they are
    (about 2 µs of CPU an entry; bench/README.md "On PostgreSQL"). The rows live only while
    their step is staged.

    And UNLOGGED: written to no WAL. A crash empties the table; the staged leaves stay, and
    the final commit keys the groups of a chunk without a row here from those leaves, as it
    did before the table existed (`index.StagedKeys`)."""
    if conn.dialect.name != "postgresql":
        return
    persistence = conn.exec_driver_sql(
        "SELECT relpersistence FROM pg_class WHERE oid = 'harvest_keyed'::regclass"
    ).scalar()
    if persistence != "u":
        conn.exec_driver_sql("ALTER TABLE harvest_keyed SET UNLOGGED")
    storage = conn.exec_driver_sql(
        "SELECT attstorage FROM pg_attribute"
        " WHERE attrelid = 'harvest_keyed'::regclass AND attname = 'data'"
    ).scalar()
    if storage != "e":
        conn.exec_driver_sql("ALTER TABLE harvest_keyed ALTER COLUMN data SET STORAGE EXTERNAL")


def _hash_combo_keys(conn: Connection, batch: int = 50_000) -> None:
    """Give combos made before `combos.khash` theirs (the SHA-256 of `ckey`), then key them
    by it instead of by `ckey`: an index of 32 bytes a combo instead of the key's text."""
    if "khash" in {c["name"] for c in inspect(conn).get_columns("combos")}:
        return
    kind = combos.c.khash.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE combos ADD COLUMN khash {kind}"))
    last = -1
    while True:  # by id, a batch at a time (a large catalogue has millions of combos)
        rows = conn.execute(  # `ckey`: no longer a column of `models.combos`
            text("SELECT id, ckey FROM combos WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": batch},
        ).all()
        if not rows:
            break
        executemany(
            conn,
            "UPDATE combos SET khash = ? WHERE id = ?",
            [(hashlib.sha256(ckey.encode()).digest(), cid) for cid, ckey in rows],
        )
        last = rows[-1][0]
    if conn.dialect.name == "postgresql":  # SQLite cannot add the constraint to a column
        conn.execute(text("ALTER TABLE combos ALTER COLUMN khash SET NOT NULL"))
    next(ix for ix in combos.indexes if ix.name == "ix_combos_khash").create(conn)
    if "ix_combos_key" in {ix["name"] for ix in inspect(conn).get_indexes("combos")}:
        conn.execute(text("DROP INDEX ix_combos_key"))


def _drop_combo_text_keys(conn: Connection) -> None:
    """Drop `combos.ckey`, the key's JSON text of an earlier version: every part of the key
    is a column of the row and `khash` its SHA-256 (about 250 bytes a combo saved). Needs
    SQLite 3.35 (ALTER TABLE DROP COLUMN); its index went with `_hash_combo_keys`."""
    if "ckey" in {c["name"] for c in inspect(conn).get_columns("combos")}:
        conn.execute(text("ALTER TABLE combos DROP COLUMN ckey"))


# the tables that held the combos' multi-valued attributes, a row per value, before they
# became columns of `combos`: (table, column of `combos`, the columns that made a value)
_SIDE_TABLES = (
    ("combo_diagnoses", "diagnoses", ("system", "code", "code3", "chapter")),
    ("combo_uses", "use_conditions", ("code",)),
    ("combo_datasets", "dataset_types", ("code",)),
)


def _fold_side_tables(conn: Connection, batch: int = 50_000) -> None:
    """Give `combos` the columns of its multi-valued attributes (`models.combos`), fill them
    from the side tables of an earlier version, and drop those: the same JSON arrays a
    harvest writes (`harvest.index.encode_multi`: values sorted as the combo's key sorts
    them, a diagnosis as [system, code, code3, chapter], null for none), so every reader
    finds what a fresh harvest would have stored. Either shape of side table (keyed by
    combo, or an older rowid table) is read; a value stored twice counts once."""
    have = {c["name"] for c in inspect(conn).get_columns("combos")}
    for _table, column, _values in _SIDE_TABLES:
        if column not in have:
            conn.execute(text(f"ALTER TABLE combos ADD COLUMN {column} TEXT"))
    tables = set(inspect(conn).get_table_names())
    side = [entry for entry in _SIDE_TABLES if entry[0] in tables]
    if not side:
        return
    last = -1
    while True:  # a batch of combos at a time (a large catalogue has millions)
        ids = (
            conn.execute(
                select(combos.c.id).where(combos.c.id > last).order_by(combos.c.id).limit(batch)
            )
            .scalars()
            .all()
        )
        if not ids:
            break
        found: dict[int, dict[str, str | None]] = defaultdict(dict)
        for table, column, values in side:
            per: dict[int, set[tuple[Any, ...]]] = defaultdict(set)
            for cid, *value in conn.execute(
                text(
                    f"SELECT combo_id, {', '.join(values)} FROM {table} "
                    "WHERE combo_id BETWEEN :lo AND :hi"
                ),
                {"lo": ids[0], "hi": ids[-1]},
            ):
                per[cid].add(tuple(value))
            for cid, got in per.items():  # sorted as `combo_key` sorts: system, then code
                rows = sorted(got, key=_by_code) if len(values) > 1 else sorted(v[0] for v in got)
                found[cid][column] = orjson.dumps(rows).decode()
        executemany(
            conn,
            "UPDATE combos SET diagnoses = ?, use_conditions = ?, dataset_types = ? WHERE id = ?",
            [
                (cols.get("diagnoses"), cols.get("use_conditions"), cols.get("dataset_types"), cid)
                for cid, cols in sorted(found.items())
            ],
        )
        last = ids[-1]
    for table, _column, _values in side:
        conn.execute(text(f"DROP TABLE {table}"))


def _by_code(value: tuple[Any, ...]) -> tuple[Any, ...]:
    return value[:2]  # (system, code): unique in a combo


def add_leaf_records(conn: Connection, *where: ColumnElement[bool]) -> None:
    """Index the record leaves matching `where` by record, in key order (one sorted insert).
    Nothing to do on PostgreSQL, where `leaf_records` is a view over every stored leaf
    (`_records_view`)."""
    if conn.dialect.name == "postgresql":
        return
    cols = (leaves.c.node_id, leaves.c.kind, leaves.c.record_id, leaves.c.idx)
    rows = select(*cols).where(leaves.c.kind != ROTATION, *where).order_by(*cols)
    conn.execute(leaf_records.insert().from_select([c.name for c in cols], rows))


# SQLite page size of a new catalogue database (an existing one keeps its own: in WAL mode
# it cannot change). A harvest writes about 1 KB of mirrored leaf a log entry and a combo,
# a group and a `leaf_records` row: with 16 KiB pages instead of SQLite's 4 KiB, fewer pages
# split, fewer WAL frames are written and checkpointed, and the chunk stores, their commits
# and the final commits' inserts cost about 1.5 µs less CPU an entry (catalogue/README.md,
# "SQLite's write path"); a point read costs about 1.5 µs more, a page of 1000 leaves less
SQLITE_PAGE_SIZE = 16384


def _sqlite_pragmas(dbapi_conn: Any, cache_mib: int, autocheckpoint: bool = True) -> None:
    # Let SQLAlchemy, not pysqlite, decide where transactions begin (BEGIN IMMEDIATE below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # before WAL mode: it takes effect only while the database is still empty (a new file)
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    # a larger page cache than the default 2 MiB: search reads the combos and side tables
    cur.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
    if not autocheckpoint:
        cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


class WalCheckpointer:
    """Copies a SQLite database's write-ahead log back into it from a thread of its own while
    a harvest's lanes write (their connections: `make_engine(autocheckpoint=False)`).

    SQLite's own checkpoint runs in the connection that commits, after its commit, whenever
    the log passed 1000 pages: that lane then writes the pages and waits for the disk
    (synchronous=NORMAL syncs the log and the database file), verifying nothing meanwhile.
    Here a PASSIVE checkpoint (it never blocks a writer or a reader) runs every `interval`
    seconds, and once more when the harvest ends (`stop`); a checkpoint with nothing new to
    copy costs nothing. The log restarts from its head after a complete checkpoint, as with
    SQLite's own."""

    def __init__(self, path: str, *, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # that copied something
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wal-checkpoint")

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        _busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if done > 0 and log > 0:
            self.checkpoints += 1

    def stop(self) -> None:
        """The last checkpoint, then the thread ends."""
        self._stop.set()
        self._thread.join()


def _sqlite_begin(conn: Any) -> None:
    # A writer takes the lock up front, so two harvesters never interleave read and write;
    # readers stay deferred so that search is not blocked by a harvest in WAL mode.
    if conn.get_execution_options().get("immediate"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


@contextmanager
def write_tx(engine: Engine, *, wait: bool = True) -> Iterator[Connection]:
    """One write transaction (BEGIN IMMEDIATE on SQLite), committed on success.

    `wait=False` (SQLite): raise `WriteLockBusy` at once, before anything is done, instead of
    waiting while another connection holds the write lock."""
    with engine.connect() as conn:
        conn.execution_options(immediate=True)
        if wait or engine.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        raw: Any = conn.connection.driver_connection
        (timeout,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute("PRAGMA busy_timeout=0")
        try:
            tx = conn.begin()
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise WriteLockBusy(str(exc.orig)) from exc
            raise
        finally:  # the lock is ours (or not taken): nothing else in it waits for another
            raw.execute(f"PRAGMA busy_timeout={int(timeout)}")
        with tx:
            yield conn


def bulk_insert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    into: str | None = None,
    many_rows: bool = False,
) -> None:
    """Insert many rows fast: binary COPY on PostgreSQL, the driver's executemany elsewhere.

    Bypasses SQLAlchemy's per-row parameter processing, which dominates large harvests. On
    PostgreSQL the rows go in COPY's binary format when every column's type is known
    (`copy_types`): the server then parses no text (bytea as hex, numbers as digits) and the
    client escapes none; a leaf row costs the server about 3.1 instead of 5.4 µs and the
    client 1.0 instead of 2.5 µs (bench/README.md, "What limits each figure").
    `into`: the name of another table with `table`'s columns (e.g. a temporary copy).
    `many_rows` (SQLite): hundreds of rows a statement (`INSERT ... VALUES (...), (...)`)
    instead of one: a sample group's row 1.15 -> 0.7 µs of CPU, measured alone (not for every
    table: a combo's, 21 columns, gained nothing measurable).

    On SQLite, give BLOB values as `bytearray`: Python's sqlite3 (3.11) binds int, float,
    str and bytearray directly but looks any other type up in its adapter registry first (a
    tuple built, a dict and two attribute look-ups: about 0.3 µs a `bytes` value, measured
    alone; a leaf row's insert 2.7 -> 2.0 µs with its leaf and hash as bytearray). The
    harvest's rows carry their BLOBs so (`harvest.apply.Chunk`, `harvest.index.ComboIds`);
    psycopg's COPY takes either.
    """
    if not rows:
        return
    cols = ", ".join(columns)
    name = into or table.name
    if conn.dialect.name == "postgresql":
        types = copy_types(table, columns)
        if types is not None and not _binary_ready(types, rows):
            types = None  # text COPY, as before (`_binary_ready`)
        binary = " WITH (FORMAT BINARY)" if types is not None else ""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if types is not None:
            _c_bytea(cursor)
        with cursor.copy(f"COPY {name} ({cols}) FROM STDIN{binary}") as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    if many_rows:
        rows = _insert_many_rows(conn, f"INSERT INTO {name} ({cols}) VALUES ", marks, rows)
    executemany(conn, f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)


# SQLite: rows a multi-row INSERT takes (`bulk_insert`'s `many_rows`), largest first; fewer
# are inserted one statement a row. Each size is one statement text, kept prepared by the
# driver's statement cache
MANY_ROWS = (512, 64, 8)


def _insert_many_rows(
    conn: Connection, head: str, marks: str, rows: Sequence[Sequence[Any]]
) -> Sequence[Sequence[Any]]:
    """SQLite: insert `rows` by statements of `MANY_ROWS` rows each (within the database's
    limit of bound values); the rows left over (fewer than the smallest size)."""
    dbapi: Any = conn.connection.dbapi_connection
    width = len(rows[0])
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    cursor = dbapi.cursor()
    at = 0
    try:
        for size in MANY_ROWS:
            if size * width > limit:
                continue
            if len(rows) - at >= size:
                sql = head + ", ".join([f"({marks})"] * size)
                while len(rows) - at >= size:
                    cursor.execute(sql, tuple(chain.from_iterable(rows[at : at + size])))
                    at += size
    finally:
        cursor.close()
    return rows[at:]


# PostgreSQL type of each column type, for binary COPY: it must be the column's exact type
# (an int4 column takes 4 bytes, not 8); varchar's binary form is text's. Checked in order
# (BigInteger is an Integer)
_PG_COPY_TYPES: tuple[tuple[type[Any], str], ...] = (
    (BigInteger, "int8"),
    (SmallInteger, "int2"),
    (Integer, "int4"),
    (LargeBinary, "bytea"),
    (String, "text"),  # Text and VARCHAR(n) too
    (Boolean, "bool"),
    (Float, "float8"),
)


# Python types each binary dumper takes as the text form would, and the range of the
# integer columns: psycopg's binary int2/int4 dumpers wrap what does not fit (2**31 is
# stored as -2**31), and refuse an int for a text column that text COPY would store as
# digits. A batch with any other value goes in text form, which keeps the old behaviour
# (the server refuses the value with its own error, or converts it as it always did)
_BINARY_TAKES: dict[str, tuple[type[Any], ...]] = {
    "int8": (int,),
    "int4": (int,),
    "int2": (int,),
    "bytea": (bytes, bytearray, memoryview),
    "text": (str,),
    "bool": (bool,),
    "float8": (float,),
}
_INT_BOUNDS = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),  # psycopg raises OverflowError past it, not the server
}


def _binary_ready(types: Sequence[str], rows: Sequence[Sequence[Any]]) -> bool:
    """Whether every value of `rows` is of a type its column's binary dumper stores as the
    text form would (bool is not an int here), and every integer value fits its column."""
    for i, name in enumerate(types):
        found = {type(row[i]) for row in rows}
        found.discard(type(None))
        if not found.issubset(_BINARY_TAKES[name]):
            return False
        bounds = _INT_BOUNDS.get(name)
        if bounds is not None and found:
            values = [v for row in rows if (v := row[i]) is not None]
            if min(values) < bounds[0] or max(values) > bounds[1]:
                return False
    return True


def _c_bytea(cursor: Any) -> None:
    """Binary COPY: bytea values through psycopg's C dumper. `copy.set_types` takes each
    column's dumper by type oid, and for bytea's that is the pure-Python dumper psycopg
    registers for its DB-API `Binary` wrapper (a Python call a value; a leaf row has two):
    0.95 -> 0.6 µs a leaf row of the client's CPU, measured alone. The values are bytes,
    bytearray or memoryview (`_binary_ready`), which the C dumper takes as they are."""
    from psycopg.types.string import BytesBinaryDumper

    cursor.adapters.register_dumper(bytes, BytesBinaryDumper)


def copy_types(table: Table, columns: Sequence[str]) -> list[str] | None:
    """The PostgreSQL type name of each of `columns` for a binary COPY into `table`, or None
    when one of them has a type not mapped here (the COPY is then made in text format)."""
    names = []
    for name in columns:
        column_type = table.c[name].type
        found = next((pg for kind, pg in _PG_COPY_TYPES if isinstance(column_type, kind)), None)
        if found is None:
            return None
        names.append(found)
    return names


def update_from_rows(
    conn: Connection,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    statement: str,
    params: dict[str, Any] | None = None,
    *,
    skip_empty: bool = True,
) -> None:
    """PostgreSQL: `rows` into a temporary table `name` (`columns`: each column's name and
    PostgreSQL type), then `statement` (with `:name` parameters), which joins it, e.g.
    `UPDATE combos ... FROM name`; the table is dropped again in the same transaction.

    One statement for many rows instead of `executemany`'s statement per row: a backend
    updates a combo row for about 9 instead of 15 µs of CPU, and the client spends 0.3
    instead of 6 µs on it (bench/README.md, "On PostgreSQL"). The table is analysed, so the
    statement is planned for the rows at hand (an index lookup each for a few, a hash join
    for many)."""
    if not rows and skip_empty:  # nothing to join: `statement` would change nothing
        return
    types = [kind for _name, kind in columns]
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {name} ("
        + ", ".join(f"{col} {kind}" for col, kind in columns)
        + ") ON COMMIT DROP"
    )
    binary = _binary_ready(types, rows)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    if binary:
        _c_bytea(cursor)
    with cursor.copy(
        f"COPY {name} FROM STDIN" + (" WITH (FORMAT BINARY)" if binary else "")
    ) as copy:
        if binary:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    conn.exec_driver_sql(f"ANALYZE {name}")
    conn.execute(text(statement), params or {})
    conn.exec_driver_sql(f"DROP TABLE {name}")


@contextmanager
def generic_plans(conn: Connection) -> Iterator[None]:
    """PostgreSQL: plan the statements run in this block for any parameters (a generic
    plan), not for the values of each (a custom plan); the setting is restored after.

    For lookups by key made per row in a harvest's transaction: planned with the values,
    PostgreSQL takes the statistics of a table a harvest has just filled (by autovacuum's
    analyse while the node had no rows there, or a few) at their word and, for the erasing
    of a withdrawn record's earlier leaves, read all of the node's leaves for each record
    (160-320 µs of a backend a record in some 1M harvests, 0.7 µs in others); the generic
    plan looks the record up by its key and its leaves by theirs whatever the statistics."""
    if conn.dialect.name != "postgresql":
        yield
        return
    before = conn.exec_driver_sql("SELECT current_setting('plan_cache_mode')").scalar()
    conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
    try:
        yield
    finally:
        conn.execute(text("SELECT set_config('plan_cache_mode', :v, true)"), {"v": before})


def executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement (with `?` placeholders) for many rows through the driver directly."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()
