"""Import exports: stage rows, apply the privacy policy, diff, append in ONE transaction."""

from __future__ import annotations

import importlib
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from node import encode, staging, store
from node.codes import Codes
from node.diff import Differ
from node.encode import ImportHelper
from node.home import Home
from node.mapping import Mapping
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError, Problem
from protocol.schema import SchemaSet

FORMATS = ("csv", "tsv", "fhir", "directory")
BATCH = 5000
# progress(phase, rows done since the last call); phase_start(phase, total rows or None)
Progress = Callable[[str, int], None]
PhaseStart = Callable[[str, "int | None"], None]
PHASES = ("staging", "privacy", "publishing")


@dataclass
class ImportReport:
    """What one import did (or would have done, when ``applied`` is False)."""

    files: list[str]
    rows: int = 0
    staged_samples: int = 0
    staged_records: int = 0
    problems: list[Problem] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    published: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)
    privacy: Any = None
    notes: list[str] = field(default_factory=list)
    applied: bool = False
    size_before: int = 0
    size_after: int = 0

    @property
    def appended(self) -> int:
        return self.size_after - self.size_before


class Staging:
    """The :class:`node.sources.base.Sink` that writes parsed rows to TEMP tables."""

    def __init__(self, conn: sqlite3.Connection, table: str, progress: Progress | None) -> None:
        self.conn = conn
        self.table = staging.create(conn, table)
        conn.execute("DROP TABLE IF EXISTS temp.others")
        conn.execute(
            "CREATE TEMP TABLE others (kind TEXT NOT NULL, id TEXT NOT NULL, "
            "biobank TEXT NOT NULL, content TEXT NOT NULL, location TEXT NOT NULL)"
        )
        conn.execute("DROP TABLE IF EXISTS temp.present")
        conn.execute("CREATE TEMP TABLE present (kind TEXT NOT NULL, key TEXT NOT NULL)")
        self._insert = staging.insert_sql(table)
        self._samples: list[tuple[object, ...]] = []
        self.samples = 0
        self.records = 0
        self.problems: list[Problem] = []
        self.unkeyed = 0
        self.ignored: Counter[str] = Counter()
        self.progress = progress

    def sample(self, row: tuple[object, ...]) -> None:
        self._samples.append(row)
        self.samples += 1
        if len(self._samples) >= BATCH:
            self.flush()

    def record(
        self, kind: str, id: str, biobank: str, content: dict[str, object], location: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO others VALUES (?, ?, ?, ?, ?)",
            (kind, id, biobank, orjson.dumps(content).decode(), location),
        )
        self.records += 1

    def problem(self, problem: Problem, kind: str | None = None, key: str | None = None) -> None:
        self.problems.append(problem)
        if kind and key:
            self.conn.execute("INSERT INTO present VALUES (?, ?)", (kind, key))
        else:
            self.unkeyed += 1

    def ignored_item(self, what: str) -> None:
        self.ignored[what] += 1

    def flush(self) -> None:
        if self._samples:
            self.conn.executemany(self._insert, self._samples)
            if self.progress:
                self.progress("staging", len(self._samples))
            self._samples.clear()

    def duplicates(self) -> None:
        """Every row of a local id that occurs twice is a problem (which one is right?)."""
        self.flush()
        staging.index(self.conn, self.table)
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
            self.conn.execute("INSERT INTO present VALUES ('sample', ?)", (local_id,))
            self.conn.execute(f"DELETE FROM {self.table} WHERE local_id = ?", (local_id,))
        for kind, id, locations in self.conn.execute(
            "SELECT kind, id, group_concat(location, '; ') FROM others "
            "GROUP BY kind, id HAVING count(*) > 1"
        ).fetchall():
            self.problems.append(
                Problem(locations, "id", id, f"duplicate {kind} id; none of these is imported")
            )
            self.conn.execute("INSERT INTO present VALUES (?, ?)", (kind, id))
            self.conn.execute("DELETE FROM others WHERE kind = ? AND id = ?", (kind, id))


class _SinkAdapter:
    """Gives readers the Sink method names while Staging keeps a Counter named ``ignored``."""

    def __init__(self, staging_: Staging) -> None:
        self.s = staging_
        self.conn = staging_.conn

    def sample(self, row: tuple[object, ...]) -> None:
        self.s.sample(row)

    def record(
        self, kind: str, id: str, biobank: str, content: dict[str, object], location: str
    ) -> None:
        self.s.record(kind, id, biobank, content, location)

    def problem(self, problem: Problem, kind: str | None = None, key: str | None = None) -> None:
        self.s.problem(problem, kind, key)

    def ignored(self, what: str) -> None:
        self.s.ignored_item(what)


def detect_format(path: Path, mapping: Mapping | None) -> str:
    """csv/tsv with a mapping, fhir for .json, directory for a Directory CSV without one."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "fhir"
    if mapping is not None:
        return "tsv" if suffix in (".tsv", ".tab") else "csv"
    return "directory"


def read_files(
    files: list[Path], fmt: str | None, mapping: Mapping | None, sink: _SinkAdapter, codes: Codes,
    helper: ImportHelper | None = None,
) -> int:
    """Run the right reader over every file; return the number of rows/entries read."""
    from node.sources import directory, fhir, tabular

    rows = 0
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(fmt or detect_format(path, mapping), []).append(path)
    for kind, paths in groups.items():
        if kind not in FORMATS:
            raise ConfigError(f"unknown format {kind!r}; use one of {', '.join(FORMATS)}")
        if kind in ("csv", "tsv"):
            if mapping is None:
                raise ConfigError("CSV/TSV exports need --mapping MAP (see node/README.md)")
            for path in paths:
                rows += tabular.read(path, mapping, sink, codes, kind, helper)
        elif kind == "fhir":
            rows += fhir.read(paths, sink, codes)
        else:
            rows += directory.read(paths, sink, codes)
    return rows


def apply_privacy(conn: sqlite3.Connection, table: str, home: Home) -> Any:
    """node.privacy.apply when the privacy module exists, else the fallback bands."""
    try:
        privacy = importlib.import_module("node.privacy")
        policy_mod = importlib.import_module("node.policy")
    except ImportError:
        return staging.default_generalise(conn, table)
    policy = policy_mod.Policy.load(home.policy_path)
    return privacy.apply(conn, table, policy)


def run_import(
    home: Home,
    files: list[Path],
    *,
    fmt: str | None = None,
    mapping: Mapping | None = None,
    snapshot: bool = False,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    phase_start: PhaseStart | None = None,
) -> ImportReport:
    """Import ``files``; publish nothing unless every record is valid or ``skip_invalid``."""
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
    report = ImportReport(files=[str(p) for p in files])
    conn = store.connect(home.db_path)
    pool: ImportHelper | None = None
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
        report.size_before = report.size_after = store.log_size(conn)
        stage = Staging(conn, "staging", progress)
        # staging and privacy write only TEMP tables; one transaction keeps SQLite's page
        # cache of the temp database across statements (else every statement re-reads it)
        conn.execute("BEGIN")
        if (mapping is not None and mapping.kind == "sample"
                and sum(p.stat().st_size for p in files) >= encode.HELPER_MIN_BYTES):
            pool = ImportHelper(home.secret)  # checks rows now, encodes samples later
        report.rows = read_files(files, fmt, mapping, _SinkAdapter(stage), Codes.default(),
                                 pool)
        stage.duplicates()
        report.staged_samples = conn.execute("SELECT count(*) FROM staging").fetchone()[0]
        report.staged_records = conn.execute("SELECT count(*) FROM others").fetchone()[0]
        report.ignored = stage.ignored
        report.problems = list(stage.problems)
        if report.problems and not skip_invalid:
            return report
        if pool is None and report.staged_samples >= encode.HELPER_MIN_ROWS:
            pool = ImportHelper(home.secret)  # starts now: its start-up overlaps privacy
        if phase_start:
            phase_start("privacy", report.staged_samples)
        report.privacy = apply_privacy(conn, "staging", home)
        if progress:
            progress("privacy", report.staged_samples)
        kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM others")}
        kinds |= {k for (k,) in conn.execute("SELECT DISTINCT kind FROM present")}
        if report.staged_samples:
            kinds.add("sample")
        if conn.in_transaction:  # (a reader's executescript may have committed it already)
            conn.execute("COMMIT")
        _publish(
            conn,
            home,
            report,
            kinds,
            snapshot and stage.unkeyed == 0,
            skip_invalid,
            progress,
            phase_start,
            pool,
        )
        if snapshot and stage.unkeyed:
            report.notes.append(
                f"snapshot withdrawals skipped: {stage.unkeyed} problem(s) "
                "could not be tied to a record id, so absence proves nothing"
            )
        return report
    finally:
        if pool is not None:
            pool.close()
        conn.close()


def _publish(
    conn: sqlite3.Connection,
    home: Home,
    report: ImportReport,
    kinds: set[str],
    snapshot: bool,
    skip_invalid: bool,
    progress: Progress | None = None,
    phase_start: PhaseStart | None = None,
    pool: ImportHelper | None = None,
) -> None:
    schemas = SchemaSet.default()
    schema_ids = {k: schemas.schema_id(k) for k in ("biobank", "collection", "sample")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        writer = LogWriter(conn, home.config.origin, home.signer)
        differ = Differ(conn, writer, schema_ids, schemas.problems, Pseudonymiser(home.secret),
                        pool)
        if progress and phase_start:
            total = (
                report.staged_records
                + conn.execute(
                    "SELECT count(*) FROM staging WHERE held_back IS NULL OR held_back = 0"
                ).fetchone()[0]
            )
            phase_start("publishing", total)
            differ.progress = lambda n: progress("publishing", n)
        differ.records()
        differ.samples("staging")
        if differ.problems:
            report.problems.extend(differ.problems)
            if not skip_invalid:
                conn.execute("ROLLBACK")
                return
        if snapshot:
            differ.withdraw_missing("staging", kinds)
        writer.finish()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    report.applied = True
    report.published = dict(differ.published)
    report.unchanged = dict(differ.unchanged)
    report.withdrawn = dict(differ.withdrawn)
    report.size_after = writer.size
