"""Consent withdrawal and publishing what waits (``biobank-node withdraw`` and ``publish``).

Withdrawn samples leave the holding at once: they become tombstones, are remembered in
``erased`` (so a later import of the same export does not bring them back), the privacy
policy is re-applied over the holding and every sample's group recomputed. The published
effect is one more change set: it goes out when it involves at least k distinct donors
(or the operator forces it, ``--publish-now``), else it waits for the next publication.

Biobank and collection records named by id are withdrawn at once (they concern no donor).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from node import groups
from node.groups import Pending
from node.home import Home
from node.importing.diff import Differ
from node.policy import Policy
from node.pseudonym import Pseudonymiser
from node.publish import LogWriter
from protocol.errors import ConfigError
from protocol.schema import SchemaSet

__all__ = ["Publication", "WithdrawReport", "erase", "publish", "withdraw"]

#: called with the change set before a forced publication of fewer than k donors
Warn = Callable[[Pending], None]


@dataclass
class Publication:
    """What a publication did: the change set, group entries, the log size after."""

    change: Pending
    published: bool = False
    groups: Counter[str] = field(default_factory=Counter)
    pending: Pending | None = None
    size: int = 0


@dataclass
class WithdrawReport:
    """What one withdrawal did; ``publication`` says whether its effect went out yet."""

    withdrawn: list[tuple[str, str]] = field(default_factory=list)
    samples: int = 0
    donors: dict[str, int] = field(default_factory=dict)
    publication: Publication | None = None


def withdraw(home: Home, ids: list[str]) -> list[tuple[str, str]]:
    """Withdraw records by published id (biobank, collection or ``grp_`` group)."""
    return erase(home, ids).withdrawn


def erase(
    home: Home,
    ids: Sequence[str] = (),
    donors: Sequence[str] = (),
    samples: Sequence[str] = (),
    *,
    now: bool = False,
    warn: Warn | None = None,
) -> WithdrawReport:
    """Withdraw records by id, and samples by local sample id or local donor id, atomically.

    A ``grp_`` id withdraws every sample of that group. Raises ConfigError (and changes
    nothing) when a name matches nothing live.
    """
    if not ids and not donors and not samples:
        raise ConfigError("nothing to withdraw: name record ids, --donor or --sample")
    pseudonyms = Pseudonymiser(home.secret)
    report = WithdrawReport()
    with home.signing() as (conn, writer):
        locals_, records = _resolve(conn, ids, donors, samples, pseudonyms, report)
        differ = Differ(conn, writer, SchemaSet.default())
        for kind, id in records:
            differ.withdraw(kind, id)
        report.withdrawn = records
        report.samples = len(locals_)
        conn.executemany(
            "INSERT OR IGNORE INTO erased VALUES ('sample', ?)", [(x,) for x in locals_]
        )
        conn.executemany(
            "INSERT OR IGNORE INTO erased VALUES ('donor', ?)",
            [(pseudonyms.donor_hash(d),) for d in donors],
        )
        conn.executemany(
            "UPDATE holding SET live = 0, target_group = NULL WHERE local_id = ?",
            [(x,) for x in locals_],
        )
        conn.execute("DELETE FROM holding WHERE live = 0 AND published_group IS NULL")
        report.publication = _settle_and_publish(conn, home, writer, now, warn)
    report.publication.size = writer.size
    return report


def publish(home: Home, *, now: bool = False, warn: Warn | None = None) -> Publication:
    """Publish the change set that waits: when it involves k donors, or with ``now``."""
    with home.signing() as (conn, writer):
        done = _settle_and_publish(conn, home, writer, now, warn)
    done.size = writer.size
    return done


def _settle_and_publish(
    conn: sqlite3.Connection, home: Home, writer: LogWriter, now: bool, warn: Warn | None
) -> Publication:
    """Privacy over the holding, then publish the change set if it may go (or ``now``)."""
    policy = Policy.load(home.policy_path)
    groups.settle(conn, policy, Pseudonymiser(home.secret))
    change = groups.pending(conn, policy.k)
    done = Publication(change)
    if change.samples and (now or not change.waiting):
        if change.waiting and warn is not None:
            warn(change)
        done.groups = groups.publish(conn, writer, policy.k)
        done.published = True
    done.pending = groups.pending(conn, policy.k)
    return done


def _resolve(
    conn: sqlite3.Connection,
    ids: Sequence[str],
    donors: Sequence[str],
    samples: Sequence[str],
    pseudonyms: Pseudonymiser,
    report: WithdrawReport,
) -> tuple[list[str], list[tuple[str, str]]]:
    """(local ids of the samples to remove, biobank/collection records to withdraw)."""
    locals_: dict[str, None] = {}
    records: list[tuple[str, str]] = []
    missing: list[str] = []
    for name in ids:
        if name.startswith("grp_"):
            rows = conn.execute(
                "SELECT local_id FROM holding WHERE live = 1 "
                "AND (published_group = ? OR target_group = ?)",
                (name, name),
            ).fetchall()
            locals_.update((str(r[0]), None) for r in rows)
        else:
            rows = conn.execute(
                "SELECT kind, id FROM records WHERE live = 1 AND id = ? AND kind != ?",
                (name, groups.KIND),
            ).fetchall()
            records += [(str(k), str(i)) for k, i in rows]
        if not rows:
            missing.append(f"published id {name!r}")
    for name in samples:
        row = conn.execute(
            "SELECT local_id FROM holding WHERE live = 1 AND local_id = ?", (name,)
        ).fetchone()
        if row is None:
            missing.append(f"local sample id {name!r}")
        else:
            locals_[name] = None
    for donor in donors:
        rows = conn.execute(
            "SELECT local_id FROM holding WHERE live = 1 AND donor_hash = ?",
            (pseudonyms.donor_hash(donor),),
        ).fetchall()
        if not rows:
            missing.append(f"local donor id {donor!r}")
        report.donors[donor] = len(rows)
        locals_.update((str(r[0]), None) for r in rows)
    if missing:
        raise ConfigError("nothing withdrawn: nothing live with " + ", ".join(missing))
    return list(locals_), records
