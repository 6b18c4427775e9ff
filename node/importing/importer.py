"""Import exports: stage rows, merge them into the holding, apply the privacy policy over
the holding, and publish the records and the group change set in ONE transaction."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from node import groups, highwater, store
from node.groups import Pending
from node.home import Home
from node.importing import encode
from node.importing.codes import Codes
from node.importing.diff import Differ
from node.importing.encode import ImportHelper
from node.importing.mapping import Mapping
from node.importing.sources import beacon, directory, fhir, tabular, xlsx
from node.importing.sources.base import Sink
from node.importing.staging import Staging
from node.policy import Policy
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError, Problem
from protocol.schema import SchemaSet

__all__ = [
    "FORMATS",
    "ROLES",
    "ImportReport",
    "PhaseStart",
    "Progress",
    "detect_format",
    "parse_file_role",
    "read_files",
    "check_references",
    "run_import",
]

FORMATS = ("csv", "tsv", "fhir", "directory", "beacon", "xlsx")
# a file's role as an operator names it -> the role the readers use
ROLES = {
    "biobanks": "biobank",
    "biobank": "biobank",
    "collections": "collection",
    "collection": "collection",
    "samples": "sample",
    "sample": "sample",
    "persons": "persons",
    "contacts": "persons",
    "fhir": "fhir",
    "beacon": "beacon",
}
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
    pending: Pending | None = None
    erased_skipped: int = 0
    notes: list[str] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)
    applied: bool = False
    size_before: int = 0
    size_after: int = 0

    @property
    def appended(self) -> int:
        return self.size_after - self.size_before

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` summary of the import."""
        return {
            "applied": self.applied,
            "rows": self.rows,
            "staged": {"samples": self.staged_samples, "records": self.staged_records},
            "problems": len(self.problems),
            "published": dict(sorted(self.published.items())),
            "unchanged": dict(sorted(self.unchanged.items())),
            "withdrawn": dict(sorted(self.withdrawn.items())),
            "erased_skipped": self.erased_skipped,
            "privacy": self.privacy.to_dict() if self.privacy is not None else None,
            "pending": self.pending.to_dict() if self.pending is not None else None,
            "size_before": self.size_before,
            "size_after": self.size_after,
        }


def detect_format(path: Path, mapping: Mapping | None) -> str:
    """csv/tsv/xlsx with a mapping, beacon or fhir for .json (by content), directory for
    a Directory CSV without one."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "beacon" if beacon.is_beacon(path) else "fhir"
    if suffix == ".xlsx":
        return "xlsx"
    if mapping is not None:
        return "tsv" if suffix in (".tsv", ".tab") else "csv"
    return "directory"


def parse_file_role(arg: str) -> tuple[Path, str | None]:
    """``FILE:ROLE`` -> (FILE, role); a plain FILE (or one whose own name holds a colon)
    -> (FILE, None). The role must be one of :data:`ROLES`."""
    head, sep, tail = arg.rpartition(":")
    if not sep or not head or Path(arg).exists():
        return Path(arg), None
    role = ROLES.get(tail.strip().lower())
    if role is None:
        raise ConfigError(f"{arg}: unknown role {tail!r}; use one of {', '.join(sorted(ROLES))}")
    return Path(head), role


def _format_for(path: Path, role: str | None, fmt: str | None, mapping: Mapping | None) -> str:
    """The reader for ``path`` given its explicit role (None: inferred)."""
    if role is None:
        return fmt or detect_format(path, mapping)
    if role in ("fhir", "beacon"):
        return role
    if path.suffix.lower() == ".xlsx" and (mapping is None or role in (mapping.kind, "persons")):
        return "xlsx"  # the role picks the sheet (node.importing.sources.xlsx.plan)
    if mapping is not None and role != "persons":
        if role != mapping.kind:
            raise ConfigError(
                f"{path.name}: role {role} but the mapping is for {mapping.kind} rows; "
                "give each mapping its own import"
            )
        return fmt if fmt in ("csv", "tsv", "xlsx") else detect_format(path, mapping)
    if role == "sample":
        raise ConfigError(f"{path.name}: sample files need --mapping MAP (see node/README.md)")
    return "directory"


def read_files(
    files: list[Path],
    fmt: str | None,
    mapping: Mapping | None,
    sink: Sink,
    codes: Codes,
    helper: ImportHelper | None = None,
    roles: dict[Path, str] | None = None,
    inferred: list[str] | None = None,
) -> int:
    """Run the right reader over every file; return the number of rows/entries read.

    ``roles`` gives files their role (see :data:`ROLES`); the others have it inferred,
    and each inference is appended to ``inferred`` as a sentence saying why.
    """
    rows = 0
    roles = roles or {}
    groups: dict[str, list[Path]] = {}
    for path in files:
        kind = _format_for(path, roles.get(path), fmt, mapping)
        if inferred is not None and path not in roles and fmt is None:
            if kind == "fhir":
                inferred.append(
                    f"{path.name}: read as a FHIR document (a .json file that is not Beacon v2)"
                )
            elif kind == "beacon":
                inferred.append(
                    f"{path.name}: read as Beacon v2 biosamples/individuals (a JSON array, or "
                    "Beacon keys without a FHIR resourceType)"
                )
            elif kind in ("csv", "tsv"):  # a workbook says each sheet's role itself
                inferred.append(
                    f"{path.name}: read as {mapping.kind if mapping else '?'} rows "
                    f"({kind}; the mapping's kind)"
                )
        groups.setdefault(kind, []).append(path)
    for kind, paths in groups.items():
        if kind not in FORMATS:
            raise ConfigError(f"unknown format {kind!r}; use one of {', '.join(FORMATS)}")
        if kind == "xlsx":  # role sheets split into their roles; a samples sheet needs a mapping
            for path in paths:
                rows += xlsx.read(path, mapping, sink, codes, helper, roles.get(path), inferred)
        elif kind in ("csv", "tsv"):
            if mapping is None:
                raise ConfigError(f"{kind.upper()} exports need --mapping MAP (see node/README.md)")
            for path in paths:
                rows += tabular.read(path, mapping, sink, codes, kind, helper)
        elif kind == "beacon":
            rows += beacon.read(paths, sink, codes, mapping)
        elif kind == "fhir":
            rows += fhir.read(paths, sink, codes)
        else:

            def note(path: Path, role: str, why: str) -> None:
                if inferred is not None:
                    inferred.append(f"{path.name}: read as Directory {role} table because {why}")

            rows += directory.read(paths, sink, codes, roles, note)
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
    roles: dict[Path, str] | None = None,
) -> ImportReport:
    """Import ``files``; publish nothing unless every record is valid or ``skip_invalid``.

    Stage the files (rows read and checked into TEMP tables); then, in ONE transaction,
    publish changed biobank and collection records, merge the staged samples into the
    holding, apply the privacy policy over the whole holding and publish the group change
    set when it involves at least k donors (else it waits). A failure changes nothing.
    ``roles`` gives files their role; inferred roles are listed in ``report.inferred``.
    A collection or sample whose biobank (or a sample whose collection) is neither in the
    import nor published is a problem.
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
        # staging writes only TEMP tables; one transaction keeps SQLite's page cache of the
        # temp database across statements (else every statement re-reads it)
        conn.execute("BEGIN")
        if (
            mapping is not None
            and mapping.kind == "sample"
            and sum(p.stat().st_size for p in files) >= encode.HELPER_MIN_BYTES
        ):
            helper = ImportHelper()  # checks rows of big sample files beside the reader
        stage = _stage(conn, files, fmt, mapping, helper, progress, report, roles)
        if report.problems and not skip_invalid:
            return report
        if conn.in_transaction:  # (a reader's executescript may have committed it already)
            conn.execute("COMMIT")
        _apply(
            conn, home, report, snapshot and stage.unkeyed == 0, skip_invalid, progress, phase_start
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
    roles: dict[Path, str] | None = None,
) -> Staging:
    """Read every file into the staging tables; count rows, problems, ignored."""
    stage = Staging(conn, "staging", progress)
    report.rows = read_files(
        files, fmt, mapping, stage, Codes.default(), helper, roles, report.inferred
    )
    stage.duplicates()
    check_references(
        conn, stage, report.notes, mapping.columns if mapping and mapping.kind == "sample" else None
    )
    report.staged_samples = conn.execute("SELECT count(*) FROM staging").fetchone()[0]
    report.staged_records = conn.execute("SELECT count(*) FROM others").fetchone()[0]
    report.ignored = stage.ignored_counts
    report.problems = list(stage.problems)
    return stage


_KNOWN_BIOBANKS = (
    "SELECT id FROM others WHERE kind = 'biobank' "
    "UNION SELECT id FROM records WHERE kind = 'biobank' AND live = 1"
)
_KNOWN_COLLECTIONS = (
    "SELECT id, biobank FROM others WHERE kind = 'collection' "
    "UNION SELECT id, biobank FROM records WHERE kind = 'collection' AND live = 1"
)


def check_references(
    conn: sqlite3.Connection,
    stage: Staging,
    notes: list[str],
    columns: dict[str, str] | None = None,
) -> None:
    """Every reference must hold: a collection whose biobank, or a sample whose biobank or
    collection, is neither in this import nor published is a problem named as such (it
    would be a card without a biobank or collection), as is a sample whose collection
    belongs to another biobank. ``notes`` is kept for callers; nothing is noted today.

    Staged biobanks are schema-checked first (few; the differ checks them again): an
    invalid one is not "in the import", so its collections and samples are problems too,
    reported in the same pass as the biobank's own problems. ``columns`` (a sample
    mapping's field -> column) names the operator's column in sample problems; a record's
    problems name the columns staged with it (``Sink.record(..., columns)``).
    """
    validate = SchemaSet.default().problems
    columns = columns or {}
    for id, text, location in conn.execute(
        "SELECT id, content, location FROM others WHERE kind = 'biobank'"
    ).fetchall():
        checked = encode.encode_content(validate, "biobank", orjson.loads(text), location)
        if isinstance(checked, list):
            for problem in checked:
                stage.problem(problem, "biobank", id)
            conn.execute("DELETE FROM others WHERE kind = 'biobank' AND id = ?", (id,))
    for id, biobank, location, named in conn.execute(
        "SELECT id, biobank, location, columns FROM others WHERE kind = 'collection' "
        f"AND biobank NOT IN ({_KNOWN_BIOBANKS})"
    ).fetchall():
        # the operator's own column, staged with the record (a Directory file's
        # ``biobanks``, a mapping's column, FHIR's partOf), else the field's name
        own: dict[str, str] = orjson.loads(named) if named else {}
        stage.problem(
            Problem(
                location,
                own.get("biobank", "biobank"),
                biobank,
                f"the biobank '{biobank}' of this collection is neither in this import nor "
                "published (import the biobanks file with it, or first)",
            ),
            "collection",
            id,
        )
        conn.execute("DELETE FROM others WHERE kind = 'collection' AND id = ?", (id,))
    biobanks = {id for (id,) in conn.execute(_KNOWN_BIOBANKS)}
    owners: dict[str, set[str]] = {}
    for id, owner in conn.execute(_KNOWN_COLLECTIONS):
        owners.setdefault(id, set()).add(owner)
    # few distinct pairs even in a big file: check those, then fetch the rows of bad ones
    reasons: dict[tuple[str, str | None], tuple[str, str | None, str]] = {}
    for biobank, collection in conn.execute(
        f"SELECT DISTINCT biobank, collection FROM {stage.table}"
    ).fetchall():
        if biobank not in biobanks:
            reasons[biobank, collection] = (
                columns.get("biobank", "biobank"),
                biobank,
                f"the biobank '{biobank}' of this sample is neither in this import nor "
                "published (import the biobanks file with it, or first)",
            )
        elif collection is not None and collection not in owners:
            reasons[biobank, collection] = (
                columns.get("collection", "collection"),
                collection,
                f"the collection '{collection}' of this sample is neither in this import nor "
                "published (import the collections file with it, or first)",
            )
        elif collection is not None and biobank not in owners[collection]:
            reasons[biobank, collection] = (
                columns.get("collection", "collection"),
                collection,
                f"the collection '{collection}' of this sample belongs to biobank "
                f"'{', '.join(sorted(owners[collection]))}', not to the biobank '{biobank}' "
                "of this sample",
            )
    for (biobank, collection), (field_, value, reason) in reasons.items():
        where = "biobank = ? AND collection IS ?"
        for local_id, location in conn.execute(
            f"SELECT local_id, row_location FROM {stage.table} WHERE {where} ORDER BY rowid",
            (biobank, collection),
        ).fetchall():
            stage.problem(Problem(location, field_, value, reason), "sample", local_id)
        conn.execute(f"DELETE FROM {stage.table} WHERE {where}", (biobank, collection))


def _apply(
    conn: sqlite3.Connection,
    home: Home,
    report: ImportReport,
    snapshot: bool,
    skip_invalid: bool,
    progress: Progress | None = None,
    phase_start: PhaseStart | None = None,
) -> None:
    """Records, holding, privacy, groups: ONE transaction (rolled back on problems unless
    ``skip_invalid``)."""
    policy = Policy.load(home.policy_path)
    pseudonyms = Pseudonymiser(home.secret)
    kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM others")}
    kinds |= {k for (k,) in conn.execute("SELECT DISTINCT kind FROM present")}
    if report.staged_samples:
        kinds.add("sample")
    conn.execute("BEGIN IMMEDIATE")
    try:
        writer = LogWriter(conn, home.config.origin, home.signer)
        differ = Differ(conn, writer, SchemaSet.default())
        differ.records()
        if differ.problems:
            report.problems.extend(differ.problems)
            if not skip_invalid:
                conn.execute("ROLLBACK")
                return
        if phase_start:
            phase_start("privacy", report.staged_samples)
        if snapshot:
            conn.execute("DROP TABLE IF EXISTS temp.covered")
            conn.execute(
                "CREATE TEMP TABLE covered AS SELECT DISTINCT biobank FROM staging "
                "UNION SELECT DISTINCT biobank FROM others"
            )
            differ.withdraw_missing(kinds)
        report.erased_skipped = merge(conn, pseudonyms, snapshot and "sample" in kinds)
        report.privacy = groups.settle(conn, policy, pseudonyms)
        if progress:
            progress("privacy", report.staged_samples)
        change = groups.pending(conn, policy.k)
        if change.samples and not change.waiting:
            done = groups.publish(conn, writer, policy.k)
            for what, counter in (
                ("published", report.published),
                ("unchanged", report.unchanged),
                ("withdrawn", report.withdrawn),
            ):
                if done[what]:
                    counter[groups.KIND] = done[what]
        report.pending = groups.pending(conn, policy.k)
        writer.finish()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    highwater.record_latest(home.path)
    report.applied = True
    for what, counter in (
        ("published", differ.published),
        ("unchanged", differ.unchanged),
        ("withdrawn", differ.withdrawn),
    ):
        getattr(report, what).update(counter)
    report.size_after = writer.size


_ATTRIBUTES = (
    "biobank, collection, sample_type, storage_temperature, sex, age, year, diagnoses, "
    "use_conditions, dataset_types"
)


def merge(conn: sqlite3.Connection, pseudonyms: Pseudonymiser, snapshot: bool) -> int:
    """Merge the staged samples into the holding; return how many were skipped as erased.

    A staged row replaces the holding's row of the same local id (a removed one comes
    back); samples and donors withdrawn by consent (table ``erased``) stay out. With
    ``snapshot``, live samples of the biobanks the import covers (TEMP table ``covered``)
    that it does not list
    (and whose rows had no problem) are removed. Removed samples never published go at
    once; the others stay as tombstones until their removal is published.
    """
    conn.create_function("bb_donor_hash", 1, pseudonyms.donor_hash, deterministic=True)
    keep = (
        "NOT EXISTS (SELECT 1 FROM erased e WHERE e.what = 'sample' AND e.key = s.local_id) "
        "AND NOT EXISTS (SELECT 1 FROM erased e WHERE e.what = 'donor' "
        "AND e.key = bb_donor_hash(s.donor_id))"
    )
    skipped = 0
    if conn.execute("SELECT 1 FROM erased LIMIT 1").fetchone() is not None:
        skipped = conn.execute(f"SELECT count(*) FROM staging s WHERE NOT ({keep})").fetchone()[0]
    names = ["donor_hash", *(c.strip() for c in _ATTRIBUTES.split(","))]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names)
    differs = " OR ".join(f"holding.{n} IS NOT excluded.{n}" for n in names)
    conn.execute(
        f"INSERT INTO holding (local_id, {', '.join(names)}) "
        f"SELECT local_id, bb_donor_hash(donor_id), {_ATTRIBUTES} FROM staging s WHERE {keep} "
        f"ON CONFLICT(local_id) DO UPDATE SET {updates}, live = 1 "
        f"WHERE holding.live = 0 OR {differs}"
    )
    if snapshot:
        conn.execute(
            "UPDATE holding SET live = 0, target_group = NULL WHERE live = 1 "
            "AND biobank IN (SELECT biobank FROM covered) "
            "AND local_id NOT IN (SELECT local_id FROM staging) "
            "AND local_id NOT IN (SELECT key FROM present WHERE kind = 'sample')"
        )
    conn.execute("DELETE FROM holding WHERE live = 0 AND published_group IS NULL")
    return int(skipped)
