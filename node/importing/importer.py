"""Import exports: stage rows, apply the privacy policy, diff, append in ONE transaction."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node import highwater, privacy, store
from node.home import Home
from node.importing import encode
from node.importing.codes import Codes
from node.importing.diff import Differ
from node.importing.encode import ImportHelper
from node.importing.mapping import Mapping
from node.importing.sources import directory, fhir, tabular
from node.importing.sources.base import Sink
from node.importing.staging import Staging
from node.policy import Policy
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError, Problem
from protocol.schema import SchemaSet

__all__ = [
    "FORMATS",
    "ImportReport",
    "PhaseStart",
    "Progress",
    "detect_format",
    "read_files",
    "run_import",
]

FORMATS = ("csv", "tsv", "fhir", "directory")
# progress(phase, rows done since the last call); phase_start(phase, total rows or None)
Progress = Callable[[str, int], None]
PhaseStart = Callable[[str, "int | None"], None]


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


def detect_format(path: Path, mapping: Mapping | None) -> str:
    """csv/tsv with a mapping, fhir for .json, directory for a Directory CSV without one."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "fhir"
    if mapping is not None:
        return "tsv" if suffix in (".tsv", ".tab") else "csv"
    return "directory"


def read_files(
    files: list[Path],
    fmt: str | None,
    mapping: Mapping | None,
    sink: Sink,
    codes: Codes,
    helper: ImportHelper | None = None,
) -> int:
    """Run the right reader over every file; return the number of rows/entries read."""
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
    """Import ``files``; publish nothing unless every record is valid or ``skip_invalid``.

    Three phases: stage the files (rows read and checked into TEMP tables), apply the
    privacy policy to the staged samples, publish the differences in one transaction.
    """
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
    report = ImportReport(files=[str(p) for p in files])
    conn = store.connect(home.db_path)
    helper: ImportHelper | None = None
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
        report.size_before = report.size_after = store.log_size(conn)
        # staging and privacy write only TEMP tables; one transaction keeps SQLite's page
        # cache of the temp database across statements (else every statement re-reads it)
        conn.execute("BEGIN")
        if (
            mapping is not None
            and mapping.kind == "sample"
            and sum(p.stat().st_size for p in files) >= encode.HELPER_MIN_BYTES
        ):
            helper = ImportHelper(home.secret)  # checks rows now, encodes samples later
        stage = _stage(conn, files, fmt, mapping, helper, progress, report)
        if report.problems and not skip_invalid:
            return report
        if helper is None and report.staged_samples >= encode.HELPER_MIN_ROWS:
            helper = ImportHelper(home.secret)  # starts now: its start-up overlaps privacy
        kinds = _apply_privacy(conn, home, report, progress, phase_start)
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
            helper,
        )
        if snapshot and stage.unkeyed:
            report.notes.append(
                f"snapshot withdrawals skipped: {stage.unkeyed} problem(s) "
                "could not be tied to a record id, so absence proves nothing"
            )
        return report
    finally:
        if helper is not None:
            helper.close()
        conn.close()


def _stage(
    conn: sqlite3.Connection,
    files: list[Path],
    fmt: str | None,
    mapping: Mapping | None,
    helper: ImportHelper | None,
    progress: Progress | None,
    report: ImportReport,
) -> Staging:
    """Phase 1: read every file into the staging tables; count rows, problems, ignored."""
    stage = Staging(conn, "staging", progress)
    report.rows = read_files(files, fmt, mapping, stage, Codes.default(), helper)
    stage.duplicates()
    report.staged_samples = conn.execute("SELECT count(*) FROM staging").fetchone()[0]
    report.staged_records = conn.execute("SELECT count(*) FROM others").fetchone()[0]
    report.ignored = stage.ignored_counts
    report.problems = list(stage.problems)
    return stage


def _apply_privacy(
    conn: sqlite3.Connection,
    home: Home,
    report: ImportReport,
    progress: Progress | None,
    phase_start: PhaseStart | None,
) -> set[str]:
    """Phase 2: the node's policy on the staged samples; return the kinds the import holds."""
    if phase_start:
        phase_start("privacy", report.staged_samples)
    report.privacy = privacy.apply(conn, "staging", Policy.load(home.policy_path))
    if progress:
        progress("privacy", report.staged_samples)
    kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM others")}
    kinds |= {k for (k,) in conn.execute("SELECT DISTINCT kind FROM present")}
    if report.staged_samples:
        kinds.add("sample")
    return kinds


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
    """Phase 3: diff against the log and append, in ONE transaction (rolled back on problems
    unless ``skip_invalid``)."""
    schemas = SchemaSet.default()
    schema_ids = {k: schemas.schema_id(k) for k in ("biobank", "collection", "sample")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        writer = LogWriter(conn, home.config.origin, home.signer)
        differ = Differ(conn, writer, schema_ids, schemas, Pseudonymiser(home.secret), pool)
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
        differ.relink("staging")
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
    highwater.record_latest(home.path)
    report.applied = True
    report.published = dict(differ.published)
    report.unchanged = dict(differ.unchanged)
    report.withdrawn = dict(differ.withdrawn)
    report.size_after = writer.size
