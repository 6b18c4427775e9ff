"""Withdraw records by published id, local sample id or local donor id (erasure).

A withdrawal appends a ``withdraw`` entry per record and erases (NULLs) every stored
content of it in the same transaction, then signs the next checkpoint. Withdrawing samples
can shrink another published class below k distinct donors; the node has no staging rows
between imports, so it re-checks k over the published contents of the classes the
withdrawn samples were in and withdraws the rest of any class that fell below k
(``held_back``). The next import re-applies the policy to the whole export and republishes
those samples generalised where it can (see docs/privacy.md, "Erasure").
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from node import highwater, store
from node.home import Home
from node.importing.diff import Differ
from node.policy import Policy
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter, ensure_checkpoint
from protocol.errors import ConfigError
from protocol.schema import SchemaSet

# The class key of a published sample (quasi-identifiers, docs/privacy.md): full age and
# period objects, so a class is never coarser than the one privacy.apply formed.
_CLASS_KEY = (
    "json_array(json_extract(c.content, '$.biobank'), json_extract(c.content, '$.collection'),"
    " json_extract(c.content, '$.sex'), json_extract(c.content, '$.age'),"
    " json_extract(c.content, '$.period'), json_extract(c.content, '$.diagnoses'))"
)
_LIVE_SAMPLES = (
    "FROM records r JOIN contents c ON c.idx = r.last_index WHERE r.kind = 'sample' AND r.live = 1"
)


@dataclass
class WithdrawReport:
    """What one withdrawal did; ``size`` is the tree size from which it is in effect."""

    withdrawn: list[tuple[str, str]] = field(default_factory=list)
    donors: dict[str, int] = field(default_factory=dict)
    held_back: list[tuple[str, str]] = field(default_factory=list)
    size: int = 0


def withdraw(home: Home, ids: list[str]) -> list[tuple[str, str]]:
    """Withdraw every named live record in ONE transaction; unknown ids fail it all."""
    return erase(home, ids).withdrawn


def erase(home: Home, ids: Sequence[str] = (), donors: Sequence[str] = ()) -> WithdrawReport:
    """Withdraw records by id and all live samples of each local donor id, atomically.

    Raises ConfigError (and changes nothing) when an id names no live record or a donor
    has no live sample.
    """
    if not ids and not donors:
        raise ConfigError("nothing to withdraw: name record ids or --donor LOCAL_DONOR_ID")
    pseudonyms = Pseudonymiser(home.secret)
    k = Policy.load(home.policy_path).k
    conn = store.connect(home.db_path)
    try:
        store.create_schema(conn)
        ensure_checkpoint(conn, home.config.origin, home.signer)
        conn.execute("BEGIN IMMEDIATE")
        try:
            report = WithdrawReport()
            targets = _resolve(conn, ids, donors, pseudonyms, report)
            affected = _classes_of(conn, [i for kind, i in targets if kind == "sample"])
            writer = LogWriter(conn, home.config.origin, home.signer)
            differ = Differ(conn, writer, {}, SchemaSet.default(), pseudonyms)
            for kind, id in targets:
                differ.withdraw(kind, id)
            report.withdrawn = targets
            report.held_back = _below_k(conn, affected, k)
            for kind, id in report.held_back:
                differ.withdraw(kind, id)
            writer.finish()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        report.size = writer.size
        highwater.record_latest(home.path)
        return report
    finally:
        conn.close()


def _resolve(
    conn: sqlite3.Connection,
    ids: Sequence[str],
    donors: Sequence[str],
    pseudonyms: Pseudonymiser,
    report: WithdrawReport,
) -> list[tuple[str, str]]:
    targets: dict[tuple[str, str], None] = {}
    missing: list[str] = []
    for name in ids:
        rows = conn.execute(
            "SELECT kind, id FROM records WHERE live = 1 AND "
            "(id = ? OR (kind = 'sample' AND local_id = ?)) ORDER BY last_index",
            (name, name),
        ).fetchall()
        if not rows:
            missing.append(f"id or local sample id {name!r}")
        targets.update(((str(k), str(i)), None) for k, i in rows)
    for donor in donors:
        rows = conn.execute(
            "SELECT kind, id FROM records WHERE kind = 'sample' AND live = 1 "
            "AND donor_hash = ? ORDER BY last_index",
            (pseudonyms.donor_hash(donor),),
        ).fetchall()
        if not rows:
            missing.append(f"local donor id {donor!r}")
        report.donors[donor] = len(rows)
        targets.update(((str(k), str(i)), None) for k, i in rows)
    if missing:
        raise ConfigError("nothing withdrawn: no live record with " + ", ".join(missing))
    return list(targets)


def _classes_of(conn: sqlite3.Connection, sample_ids: list[str]) -> set[str]:
    """Class keys of these live samples, read before their content is erased."""
    keys: set[str] = set()
    for start in range(0, len(sample_ids), 500):
        chunk = sample_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        keys.update(
            key
            for (key,) in conn.execute(
                f"SELECT DISTINCT {_CLASS_KEY} {_LIVE_SAMPLES} AND r.id IN ({marks})", chunk
            )
        )
    return keys


def _below_k(conn: sqlite3.Connection, keys: set[str], k: int) -> list[tuple[str, str]]:
    """Remaining live samples in those classes when a class now has fewer than k donors."""
    if not keys:
        return []
    members: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    conn.execute("DROP TABLE IF EXISTS temp.erase_classes")
    conn.execute("CREATE TEMP TABLE erase_classes (key TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO erase_classes VALUES (?)", [(key,) for key in keys])
    for id, donor, key in conn.execute(
        f"SELECT r.id, r.donor_hash, {_CLASS_KEY} AS key {_LIVE_SAMPLES} "
        "AND key IN (SELECT key FROM temp.erase_classes) ORDER BY r.last_index"
    ):
        members[key].append((id, donor))
    out: list[tuple[str, str]] = []
    for rows in members.values():
        # a sample without a donor id counts as a donor of its own (as in node.privacy)
        donors = {d if d is not None else f"s:{id}" for id, d in rows}
        if len(donors) < k:
            out += [("sample", id) for id, _ in rows]
    return out
