"""The holding and its sample groups: what the node holds, what it publishes, and when.

The node keeps every sample it holds in the ``holding`` table (``node/store.py``). After
any change to the holding (an import, a consent withdrawal) :func:`settle` applies the
privacy policy over the WHOLE live holding and sets each sample's ``target_group``: the
keyed id of the published attributes it is counted under (NULL: held back, or removed).

The pending change set is every sample whose ``published_group`` differs from its
``target_group`` (removed samples included). :func:`publish` publishes all of it at once:
each changed group's record with counts from the target assignments (or a ``withdraw``
when no sample is left), sorted by group id, then marks everything published. The caller
decides whether to publish: only when the change set involves at least k distinct donors
(:attr:`Pending.waiting`), unless the operator forces it.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from node import privacy
from node.importing import staging
from node.policy import Policy
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter
from protocol.canonical import bytes_digest, canonical
from protocol.errors import ConfigError
from protocol.schema import SchemaSet

__all__ = [
    "KIND",
    "DONOR",
    "Pending",
    "bounds",
    "canonical_bytes",
    "group_content",
    "pending",
    "publish",
    "settle",
    "target_groups",
]

KIND = "sample-group"
#: A sample's donor for counting: its donor hash, or the sample itself when it has none.
DONOR = "COALESCE('d:' || donor_hash, 's:' || local_id)"
_WORK = "holding_work"
# the published attributes of a row after privacy (what makes its group)
_KEY = (
    "json_array(biobank, collection, sample_type, storage_temperature, sex, age_min, age_max, "
    "period_from, period_to, diagnoses, use_conditions, dataset_types)"
)
_CHANGED = "published_group IS NOT target_group"


@dataclass(frozen=True)
class Pending:
    """The change set that waits: samples whose published group is not their group now."""

    samples: int
    donors: int
    k: int

    @property
    def waiting(self) -> bool:
        """True when there is a change and it involves fewer than k distinct donors."""
        return self.samples > 0 and self.donors < self.k

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "donors": self.donors,
            "k": self.k,
            "waiting": self.waiting,
        }

    def message(self) -> str:
        """One line for status, preview and the import summary."""
        if not self.samples:
            return "nothing waits: the log shows the holding"
        if self.waiting:
            return (
                f"{self.samples} samples of {self.donors} donors wait: a publication must "
                f"involve at least {self.k} donors"
            )
        return f"{self.samples} samples of {self.donors} donors change: enough to publish"

    def risk(self) -> str:
        """What an observer comparing the checkpoints before and after can learn (--now)."""
        return (
            f"publishing now: the changed groups involve only {self.donors} donor(s), fewer "
            f"than k = {self.k}; anyone comparing the checkpoint before and after this "
            f"publication can attribute the change to that few donors"
        )


def bounds(samples: int, donors: int, k: int) -> tuple[Any, Any]:
    """The published (samples, donors): exact at k donors or more, else ``{"lt": B}``."""
    if donors >= k:
        return samples, donors
    bound = k if samples < k else k * (samples // k + 1)
    return {"lt": bound}, {"lt": k}


def group_content(key: str) -> dict[str, Any]:
    """The group's attributes (no id, counts or nonce) from its SQL key (``_KEY``)."""
    (bb, coll, stype, storage, sex, age_min, age_max, p_from, p_to, dx, use, data) = orjson.loads(
        key
    )
    out: dict[str, Any] = {"biobank": bb, "collection": coll, "sample_type": stype}
    if storage:
        out["storage_temperature"] = storage
    if sex:
        out["sex"] = sex
    if age_min is not None and age_max is not None:
        out["age"] = {"min": age_min, "max": age_max}
    if p_from is not None and p_to is not None:
        out["period"] = {"from": p_from, "to": p_to}
    diagnoses = orjson.loads(dx or "[]")
    if diagnoses:
        out["diagnoses"] = sorted(diagnoses, key=lambda d: (d["system"], d["code"]))
    for name, text in (("use_conditions", use), ("dataset_types", data)):
        values = sorted(set(orjson.loads(text or "[]")))
        if values:
            out[name] = values
    return out


def canonical_bytes(content: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of a record of ASCII strings, integers, lists and objects.

    For such values orjson's sorted output IS the canonical encoding (as for log entries,
    see ``node.publish.entry_leaf``); anything else takes ``canonical()``.
    """
    data = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
    return data if data.isascii() else canonical(content)


def settle(
    conn: sqlite3.Connection, policy: Policy, pseudonyms: Pseudonymiser
) -> privacy.PrivacyReport:
    """Apply ``policy`` over the whole live holding and set every sample's target group.

    Runs in the caller's transaction. Leaves the TEMP table ``groups_now`` (group id ->
    attribute JSON) for :func:`publish` and :func:`target_groups`. After ``recover`` (live
    groups no sample is linked to), the samples of a group whose content is the
    published one are linked to it: they are no change.
    """
    staging.create(conn, _WORK)
    conn.execute(
        f"INSERT INTO {_WORK} (local_id, donor_id, biobank, collection, sample_type, "
        "storage_temperature, sex, age, year, diagnoses, use_conditions, dataset_types, "
        "row_location) SELECT local_id, donor_hash, biobank, collection, sample_type, "
        "storage_temperature, sex, age, year, diagnoses, use_conditions, dataset_types, '' "
        "FROM holding WHERE live = 1"
    )
    report = privacy.apply(conn, _WORK, policy)
    found: dict[str, tuple[str, str]] = {}  # SQL key -> (group id, attribute JSON)

    def group_of(key: str) -> str:
        known = found.get(key)
        if known is None:
            content = group_content(key)
            known = found[key] = (
                pseudonyms.group_id(canonical_bytes(content)),
                orjson.dumps(content).decode(),
            )
        return known[0]

    conn.create_function("bb_group_id", 1, group_of, deterministic=True)
    conn.execute("DROP TABLE IF EXISTS temp.targets")
    conn.execute(
        "CREATE TEMP TABLE targets (local_id TEXT PRIMARY KEY, gid TEXT NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        f"INSERT INTO targets SELECT local_id, bb_group_id({_KEY}) FROM {_WORK} WHERE held_back = 0"
    )
    conn.execute("DROP TABLE IF EXISTS temp.groups_now")
    conn.execute("CREATE TEMP TABLE groups_now (gid TEXT PRIMARY KEY, content TEXT NOT NULL)")
    conn.executemany("INSERT OR IGNORE INTO groups_now VALUES (?, ?)", found.values())
    conn.execute(
        "UPDATE holding SET target_group = NULL WHERE target_group IS NOT NULL "
        "AND local_id NOT IN (SELECT local_id FROM targets)"
    )
    conn.execute(
        "UPDATE holding SET target_group = t.gid FROM targets t "
        "WHERE t.local_id = holding.local_id AND holding.target_group IS NOT t.gid"
    )
    for name in (_WORK, "targets"):
        conn.execute(f"DROP TABLE temp.{name}")
    _adopt(conn, policy.k)
    return report


def _adopt(conn: sqlite3.Connection, k: int) -> None:
    """Link samples to live groups no sample counts in (after ``recover``) when the group's
    content from the holding is the published one: those samples are not a change."""
    conn.execute("DROP TABLE IF EXISTS temp.orphans")
    conn.execute(
        "CREATE TEMP TABLE orphans AS SELECT r.id AS gid, c.content AS published, "
        "g.content AS attributes FROM records r JOIN contents c ON c.idx = r.last_index "
        "JOIN temp.groups_now g ON g.gid = r.id WHERE r.kind = ? AND r.live = 1 "
        "AND r.id NOT IN (SELECT published_group FROM holding WHERE published_group IS NOT NULL)",
        (KIND,),
    )
    if conn.execute("SELECT 1 FROM temp.orphans LIMIT 1").fetchone() is None:
        conn.execute("DROP TABLE temp.orphans")  # the usual case: nothing was recovered
        return
    counts = {
        gid: (int(n), int(d))
        for gid, n, d in conn.execute(
            f"SELECT target_group, count(*), count(DISTINCT {DONOR}) FROM holding "
            "WHERE target_group IN (SELECT gid FROM temp.orphans) GROUP BY target_group"
        )
    }
    same = []
    for gid, published, attributes in conn.execute("SELECT * FROM temp.orphans").fetchall():
        shown, counted = bounds(*counts[gid], k)
        now = {"id": gid, **orjson.loads(attributes), "samples": shown, "donors": counted}
        before = orjson.loads(published)
        before.pop("nonce", None)
        if before == now:
            same.append((gid,))
    conn.execute("DELETE FROM temp.orphans")
    conn.executemany("INSERT INTO temp.orphans (gid) VALUES (?)", same)
    conn.execute(
        "UPDATE holding SET published_group = target_group WHERE published_group IS NULL "
        "AND target_group IN (SELECT gid FROM temp.orphans)"
    )
    conn.execute("DROP TABLE temp.orphans")


def pending(conn: sqlite3.Connection, k: int) -> Pending:
    """The change set as the holding says now."""
    samples, donors = conn.execute(
        f"SELECT count(*), count(DISTINCT {DONOR}) FROM holding WHERE {_CHANGED}"
    ).fetchone()
    return Pending(int(samples), int(donors), k)


def target_groups(conn: sqlite3.Connection, k: int) -> list[dict[str, Any]]:
    """Every group the holding makes now, as it would be published (no nonce), by id."""
    out = []
    for gid, text, samples, donors in conn.execute(
        f"SELECT h.target_group, g.content, count(*), count(DISTINCT {DONOR}) FROM holding h "
        "JOIN groups_now g ON g.gid = h.target_group GROUP BY h.target_group ORDER BY 1"
    ):
        shown, counted = bounds(samples, donors, k)
        out.append({"id": gid, **orjson.loads(text), "samples": shown, "donors": counted})
    return out


def publish(
    conn: sqlite3.Connection, writer: LogWriter, k: int, schemas: SchemaSet | None = None
) -> Counter[str]:
    """Publish the whole pending change set through ``writer`` (after :func:`settle`).

    Every changed group (and every live group no sample counts in any more, as after
    ``recover``) gets one entry, in group-id order: ``publish`` with counts from the
    target assignments and a fresh nonce, or ``withdraw`` when it holds no sample. A group
    whose content would be the published one (nonce aside) gets none. Returns counts of
    ``published``, ``withdrawn`` and ``unchanged`` groups.
    """
    schemas = schemas or SchemaSet.default()
    schema_id = schemas.schema_id(KIND)
    done: Counter[str] = Counter()
    conn.execute("DROP TABLE IF EXISTS temp.changed")
    conn.execute(
        "CREATE TEMP TABLE changed AS "
        f"SELECT published_group AS gid FROM holding WHERE {_CHANGED} "
        "AND published_group IS NOT NULL "
        f"UNION SELECT target_group FROM holding WHERE {_CHANGED} AND target_group IS NOT NULL "
        "UNION SELECT id FROM records WHERE kind = ? AND live = 1 AND id NOT IN "
        "(SELECT published_group FROM holding WHERE published_group IS NOT NULL)",
        (KIND,),
    )
    counts = {
        gid: (int(n), int(d))
        for gid, n, d in conn.execute(
            f"SELECT target_group, count(*), count(DISTINCT {DONOR}) FROM holding "
            "WHERE target_group IN (SELECT gid FROM temp.changed) GROUP BY target_group"
        )
    }
    rows = conn.execute(
        "SELECT c.gid, g.content, r.live, pc.content FROM temp.changed c "
        "LEFT JOIN temp.groups_now g ON g.gid = c.gid "
        "LEFT JOIN records r ON r.kind = ? AND r.id = c.gid "
        "LEFT JOIN contents pc ON pc.idx = r.last_index ORDER BY c.gid",
        (KIND,),
    ).fetchall()
    upserts = []
    for gid, attributes, live, old in rows:
        if gid not in counts or attributes is None:
            if live:
                index = writer.withdraw(KIND, gid)
                conn.execute(
                    "UPDATE records SET live = 0, digest = NULL, nonce = NULL, last_index = ? "
                    "WHERE kind = ? AND id = ?",
                    (index, KIND, gid),
                )
                done["withdrawn"] += 1
            continue
        samples, donors = counts[gid]
        shown, counted = bounds(samples, donors, k)
        content: dict[str, Any] = {
            "id": gid,
            **orjson.loads(attributes),
            "samples": shown,
            "donors": counted,
        }
        if live and old is not None:
            before = orjson.loads(old)
            before.pop("nonce", None)
            if before == content:
                done["unchanged"] += 1
                continue
        content["nonce"] = _nonce()
        problems = schemas.problems(KIND, content, f"group {gid}")
        if problems:
            raise ConfigError(
                f"group {gid} does not meet the {KIND} schema; nothing published",
                details=[str(p) for p in problems],
            )
        data = canonical_bytes(content)
        digest = bytes_digest(data)
        index = writer.publish(KIND, gid, schema_id, data, digest)
        upserts.append((KIND, gid, content["biobank"], digest, content["nonce"], index))
        done["published"] += 1
    writer.flush()
    conn.executemany(
        "INSERT INTO records (kind, id, biobank, digest, nonce, last_index, live) "
        "VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(kind, id) DO UPDATE SET "
        "biobank = excluded.biobank, digest = excluded.digest, nonce = excluded.nonce, "
        "last_index = excluded.last_index, live = 1",
        upserts,
    )
    conn.execute(f"UPDATE holding SET published_group = target_group WHERE {_CHANGED}")
    conn.execute("DELETE FROM holding WHERE live = 0")
    conn.execute("DROP TABLE temp.changed")
    return done


def _nonce() -> str:
    return os.urandom(16).hex()
