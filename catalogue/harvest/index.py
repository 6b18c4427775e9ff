"""Apply verified record changes of one node to the search index (records, groups, combos)."""

from __future__ import annotations

import hashlib
import marshal
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import countOf, itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    and_,
    func,
    select,
    text,
)

from catalogue.db import bulk_insert, executemany, generic_plans, update_from_rows
from catalogue.models import (
    combos,
    harvest_keyed,
    leaves,
    nodes,
    records,
    rejections,
    sample_groups,
)
from catalogue.search.codes import Vocabulary
from protocol.entries import KINDS
from protocol.errors import Problem
from protocol.verify import MISSING_CONTENT

__all__ = [
    "COMBO_COLUMNS",
    "ERASE_PG",
    "GROUP",
    "MISSING_CONTENT",
    "REJECTION_COLUMNS",
    "apply_groups",
    "prepare_step",
    "write_counts",
    "combo_hash",
    "combo_key",
    "count_interval",
    "encode_multi",
    "group_problems",
    "index_step",
    "key_group",
    "RECORDED_FORMAT",
    "ReadAhead",
    "pack_keyed",
    "unpack_keyed",
    "missing_content_rejections",
]

# change per record: (leaf index, content) to publish, or None to remove from the index
Change = tuple[int, Any] | None
GROUP = "sample-group"
_CHUNK = 500
BATCH = 5000  # leaves read back per query while a step is indexed
# memory bounds of one step's index: the leaves keyed before the write transaction (about
# 0.6 KB each; the rest are keyed in it, batch by batch), and the new combos held back to be
# written once with their counts (their keys; beyond it, they are written at once with
# none, and their counts are added at the end like an existing combo's)
# (quartered from 50,000 and 100,000: at 10M samples the harvest's peak fell from 630-651 to
# 477-493 MB, both processes together, for about 3% more CPU in the final commits at 10M
# and 5-10% at 1M: bench/README.md "Memory")
# (then 12,500 -> 35,000: a group keyed where it was verified holds 0.6 instead of 1.6 KB
# prepared, its key's parts shared within its chunk; tracemalloc over the 1M DE step: 23.9 MB
# for the first 15,000 leaves before, 21.6 MB for 35,000 after)
# and NEW_COMBO_BUDGET 25,000 -> 50,000: a held combo's key shares its chunk's strings; the
# 10M harvest with both raised peaked at 272 MB in one process, 467 MB both (before this
# round, the same hour: 283 and 482 MB); at 1M no DE combo is written early any more, so
# none is counted by an UPDATE at the end (the final commit 16.6-18.0 -> 13.6-14.7 µs)
PREPARE_BUDGET = 35_000
NEW_COMBO_BUDGET = 50_000
# SQLite: new combo rows and the counts combos gained are written this many at a time, in
# order, so that a big step's final commit never holds them all as rows (about 10 MB less at
# the peak of a 167,000-group node's final commit at 10M)
INSERT_SLICE = 10_000
# PostgreSQL: from this many combos to update, a step's counts are written by one statement
# joining a temporary table (`write_counts`), not by a statement per combo (fewer: a
# join planned on a big harvest's stale statistics could scan all combos for a few rows)
BULK_UPDATE = 1000


def combo_key(s: dict[str, Any]) -> tuple[Any, ...]:
    """The coded attributes that make sample groups interchangeable for counting: the lists
    sorted (a diagnosis as (system, code)), an absent attribute None, an absent list ()."""
    get = s.get  # once per leaf of a harvest: written for speed (1.45 -> 1.35 µs a group)
    age = get("age") or _NONE
    per = get("period") or _NONE
    diags = get("diagnoses")
    uses = get("use_conditions")
    datasets = get("dataset_types")
    return (
        s["biobank"],
        s["collection"],
        get("sample_type"),
        get("storage_temperature"),
        get("sex"),
        age.get("min"),
        age.get("max"),
        per.get("from"),
        per.get("to"),
        tuple(sorted(map(_system_code, diags))) if diags else (),
        tuple(sorted(uses)) if uses else (),
        tuple(sorted(datasets)) if datasets else (),
    )


_NONE: dict[str, Any] = {}
_system_code = itemgetter("system", "code")
_first = itemgetter(0)


def apply_records(conn: Connection, node_id: int, kind: str, changes: dict[str, Change]) -> None:
    """Replace live biobank or collection records by their latest version (or remove them)."""
    if not changes:
        return
    ids = list(changes)
    for i in range(0, len(ids), _CHUNK):
        conn.execute(
            records.delete().where(
                and_(
                    records.c.node_id == node_id,
                    records.c.kind == kind,
                    records.c.record_id.in_(ids[i : i + _CHUNK]),
                )
            )
        )
    rows = [
        {
            "node_id": node_id,
            "kind": kind,
            "record_id": rid,
            "idx": ch[0],
            "country": ch[1].get("country") if kind == "biobank" else None,
            "biobank": ch[1].get("biobank") if kind == "collection" else None,
            "content": orjson.dumps(ch[1]).decode(),
        }
        for rid, ch in changes.items()
        if ch is not None
    ]
    if rows:
        conn.execute(records.insert(), rows)


def count_interval(value: Any) -> tuple[int, int]:
    """The interval a published count states: exact ``n`` -> (n, n); ``{"lt": B}`` ->
    (1, B - 1) (a published group is not empty)."""
    if isinstance(value, dict):
        return 1, int(value["lt"]) - 1
    return int(value), int(value)


def group_problems(group: dict[str, Any], k: int) -> list[str]:
    """Why a schema-valid group breaks the node's declared policy (empty: it does not)."""
    samples, donors = group.get("samples"), group.get("donors")
    problems = []
    if isinstance(donors, int) and donors < k:
        problems.append(f"exact donors {donors} below the node's k = {k}")
    if isinstance(samples, int) and isinstance(donors, int) and samples < donors:
        problems.append(f"exact samples {samples} fewer than its donors {donors}")
    return problems


# a group change made ready outside the write lock: (leaf index, combo hash, combo key,
# samples interval, donors interval, and three values `apply_groups` ignores: a `Keyed` as it
# was staged, or None, None, None), or None to remove the group from the index
Ready = tuple[int, bytes, tuple[Any, ...], tuple[int, int], tuple[int, int], Any, Any, Any]


# a sample group keyed where it was verified (`key_group`): (leaf index, combo hash, combo
# key, samples interval, donors interval, exact samples or None, exact donors or None, its
# record id); the first five are its Ready change, the next two what the node's k policy is
# asked of, the record id what its leaf would be read back for (`_prepare_batch`)
Keyed = tuple[int, bytes, tuple[Any, ...], tuple[int, int], tuple[int, int], Any, Any, Any]
_KEYED_FORMAT = b"k2"  # the staged rows' format (another is ignored: keyed from the leaves)
# the format before, without the record id (its groups' leaves are read back, as then)
KEYED_FORMAT_BEFORE = b"k1"
# the same, written by the version that stored a chunk's `leaf_records` rows with it on
# PostgreSQL (now a view over the leaves: `db._records_view`); read back as the one above
RECORDED_FORMAT = b"r1"


def key_group(idx: int, record: dict[str, Any], memo: dict[Any, Any], rid: str) -> Keyed | None:
    """Key a schema-valid group's content as `_prepare_batch` would (None: it cannot be, and
    the final commit keys it from its stored leaf, which names the problem as before).

    The key is `combo_key`'s, its hash `combo_hash`'s (tests/catalogue/test_keyed_staging.py
    compares them on generated and external groups), built with `memo` (one per chunk):
    equal strings of the chunk's keys are one object each, so that `pack_keyed` writes each
    once and the final commit builds it once (a chunk of the saved 1M federation: half the
    bytes, 0.8 -> 0.3 µs a group to read back); a list attribute's sorted tuple is looked up
    by the list as published (a few distinct lists a chunk: 6 of use conditions, 7 of dataset
    types and 242 of diagnoses in 39,291 groups of the saved DE node), instead of sorted and
    shared again for every group, and so are its count intervals (4.2-4.6 -> 3.5-3.6 µs a
    group, measured alone; catalogue/README.md)."""
    try:
        samples, donors = record["samples"], record["donors"]
        get = record.get
        lists = memo.get(_LISTS)
        if lists is None:
            lists = memo[_LISTS] = ({}, {}, {}, {}, {})
        diags = get("diagnoses")
        d = _sorted_codes(lists[0], tuple(map(_system_code, diags))) if diags else ()
        uses = get("use_conditions")
        u = _sorted_codes(lists[1], tuple(uses)) if uses else ()
        datasets = get("dataset_types")
        ds = _sorted_codes(lists[2], tuple(datasets)) if datasets else ()
        age = get("age") or _NONE
        per = get("period") or _NONE
        share = memo.setdefault  # (its keys: strings, None and `_LISTS`)
        b, c = record["biobank"], record["collection"]
        t, temp, sex = get("sample_type"), get("storage_temperature"), get("sex")
        key = (
            share(b, b),
            share(c, c),
            share(t, t),
            share(temp, temp),
            share(sex, sex),
            age.get("min"),
            age.get("max"),
            per.get("from"),
            per.get("to"),
            d,
            u,
            ds,
        )
        # the count intervals (`count_interval`), one tuple per value of the chunk: most are
        # the same few ("lt" 10), and a shared tuple is packed as a reference and read back
        # as one object (unpacking a chunk's groups 0.6 -> 0.3 µs a group, measured alone);
        # values equal in Python give the same interval (int() of equal numbers is equal)
        bounded: dict[Any, tuple[int, int]] = lists[3]
        exact: dict[Any, tuple[int, int]] = lists[4]
        if type(samples) is dict:
            lt = samples["lt"]
            s_iv = bounded.get(lt)
            if s_iv is None:
                s_iv = bounded[lt] = (1, int(lt) - 1)
        else:
            s_iv = exact.get(samples)
            if s_iv is None:
                s_iv = exact[samples] = (n := int(samples), n)
        if type(donors) is dict:
            lt = donors["lt"]
            d_iv = bounded.get(lt)
            if d_iv is None:
                d_iv = bounded[lt] = (1, int(lt) - 1)
        else:
            d_iv = exact.get(donors)
            if d_iv is None:
                d_iv = exact[donors] = (n := int(donors), n)
        return (
            idx,
            _sha256(_dumps(key)).digest(),  # combo_hash(key)
            key,
            s_iv,
            d_iv,
            samples if isinstance(samples, int) else None,
            donors if isinstance(donors, int) else None,
            rid,
        )
    except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONEncodeError):
        return None


_LISTS = object()  # `key_group`'s slot in a chunk's memo for its lists' sorted tuples
_sha256 = hashlib.sha256
_dumps = orjson.dumps


def _sorted_codes(seen: dict[tuple[Any, ...], tuple[Any, ...]], raw: tuple[Any, ...]) -> Any:
    """`tuple(sorted(raw))`, one object per distinct `raw` of a chunk. Only a tuple of strings
    (or of pairs of strings: diagnoses) is kept: equal to another tuple only when its items
    are the same strings, so a hit is exact (JSON's 1 and true are equal in Python)."""
    found = seen.get(raw)
    if found is None:
        found = tuple(sorted(raw))
        if all(type(x) is str or (type(x) is tuple and _strings(x)) for x in raw):
            seen[raw] = found
    return found


def _strings(items: tuple[Any, ...]) -> bool:
    return all(type(x) is str for x in items)


def pack_keyed(keyed: list[Keyed], *, recorded: bool = False, before: bool = False) -> bytes:
    """A chunk's keyed groups as stored in `harvest_keyed.data` (marshal: our own rows,
    read back by this process or another lane of the same code: `unpack_keyed`).
    `recorded`, `before`: as the versions before wrote them (`RECORDED_FORMAT`,
    `KEYED_FORMAT_BEFORE`: without the record ids)."""
    if recorded or before:
        head = RECORDED_FORMAT if recorded else KEYED_FORMAT_BEFORE
        return head + marshal.dumps([kd[:7] for kd in keyed])
    return _KEYED_FORMAT + marshal.dumps(keyed)


def unpack_keyed(data: bytes) -> list[Keyed] | None:
    """What `pack_keyed` stored; None for another format (the leaves are keyed instead).
    Rows of a format before carry no record ids: theirs are None."""
    data = bytes(data)
    if not data.startswith((_KEYED_FORMAT, KEYED_FORMAT_BEFORE, RECORDED_FORMAT)):
        return None
    try:
        items = marshal.loads(data[2:])  # noqa: S302 - our own rows
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(items, list):
        return None
    if not data.startswith(_KEYED_FORMAT):
        return [(*kd, None) for kd in items]
    return items


class StagedKeys:
    """The keyed groups of a node's staged chunks, read chunk by chunk as the step's
    batches ask for them (in index order), each let go once its batch has it.

    `complete`: every staged row read carries its groups' record ids (`_KEYED_FORMAT`); a
    batch whose leaves are all staged so then reads back only its other leaves."""

    def __init__(self, node_id: int, start: int) -> None:
        self.node_id = node_id
        self.read_to = start  # the staged rows ending at or before this are read
        self.items: dict[int, Keyed] = {}
        self.complete = True

    def take(self, conn: Connection, lo: int, hi: int) -> dict[int, Keyed | None]:
        """The keyed groups of leaves [lo, hi), by index, None for a leaf with none (an empty
        dict: none staged)."""
        if hi > self.read_to:
            rows = conn.execute(
                select(harvest_keyed.c.hi, harvest_keyed.c.data)
                .where(
                    harvest_keyed.c.node_id == self.node_id,
                    harvest_keyed.c.hi > self.read_to,
                    harvest_keyed.c.lo < hi,
                )
                .order_by(harvest_keyed.c.lo)
            ).all()
            for end, data in rows:
                got = unpack_keyed(data) or ()
                if bytes(data[:2]) != _KEYED_FORMAT:
                    self.complete = False
                self.items.update(zip(map(_first, got), got, strict=True))  # (a later chunk's wins)
                self.read_to = max(self.read_to, int(end))
        items = self.items
        if not items:
            return {}
        before, span = len(items), range(lo, hi)
        # every index of the span, None where no group is staged (as `dict.get` says)
        taken = dict(zip(span, map(items.pop, span, repeat(None)), strict=True))
        return taken if len(items) < before else {}


@dataclass
class Batch:
    """One batch of a step's leaves, parsed and keyed: what `index_step` applies."""

    changes: dict[str, dict[str, Any]]  # kind -> record id -> (idx, record) | Ready | None
    erase: dict[tuple[str, str], int]  # withdrawn (kind, id) -> the withdraw's leaf index
    refused: list[tuple[Any, ...]]  # rejection rows (`REJECTION_COLUMNS`) of groups breaking k


@dataclass
class PreparedStep:
    """A step's leaves read back, parsed and keyed BEFORE its write transaction (on SQLite
    every other harvest waits for that lock): the transaction only writes."""

    node_id: int
    start: int
    end: int
    k: int
    batches: list[Batch]
    combo_ids: ComboIds
    # group id -> combo id of the node's groups indexed before the step (`apply_groups`)
    live: dict[str, int]
    origin: str = ""
    # records whose latest leaf in the step is a publish served without content (and no
    # withdraw erased it): rejected (MISSING_CONTENT) when the step is applied
    missing: dict[tuple[str, str], int] = field(default_factory=dict)
    upto: int = 0  # the batches cover [start, upto); the rest is keyed in the transaction
    staged: StagedKeys | None = None  # the groups keyed as they were verified
    ahead: ReadAhead | None = None  # the rest keyed in a thread instead (`ReadAhead`)


def prepare_step(
    conn: Connection, node_id: int, start: int, end: int, *, budget: int | None = None
) -> PreparedStep:
    """Read the stored leaves [start, end) and make each batch's changes ready (reads only),
    up to `budget` leaves (`PREPARE_BUDGET` if None; the rest is keyed later).

    Valid for the write transaction as long as the node's position is unchanged (which
    `apply._check_position` checks in it): only this node's harvest writes its leaves,
    groups and combos."""
    k, origin = conn.execute(select(nodes.c.k, nodes.c.origin).where(nodes.c.id == node_id)).one()
    k = int(k)
    combo_ids = ComboIds(conn, node_id)
    # the combo of each live group, read once (a fresh log has none before this step):
    # looking groups up 500 ids at a time made PostgreSQL scan the table per look-up
    # (no statistics yet mid-harvest), 0.4 s each at 40,000 groups
    live: dict[str, int] = {}
    if start > 0:
        live.update(
            conn.execute(
                select(sample_groups.c.group_id, sample_groups.c.combo_id).where(
                    sample_groups.c.node_id == node_id
                )
            ).all()
        )
    batches = []
    missing: dict[tuple[str, str], int] = {}
    staged = StagedKeys(node_id, start)
    upto = start
    limit = PREPARE_BUDGET if budget is None else budget
    while upto < end and upto - start < limit:
        hi = min(upto + BATCH, end)
        batches.append(_prepare_batch(conn, node_id, upto, hi, k, missing, staged))
        upto = hi
    return PreparedStep(
        node_id, start, end, k, batches, combo_ids, live, str(origin), missing, upto, staged
    )


class ReadAhead:
    """PostgreSQL: the rest of a prepared step's batches (from `upto`) read back and keyed in a
    thread, on a connection of its own, while the write transaction applies the batches before
    them: this process keys a batch while its backends store the previous one and read the
    next, instead of each waiting for the other. At most `depth` batches wait to be applied.

    Reading outside the write transaction reads what it would read: a batch changes only the
    step's leaves up to its own end (erased contents, refused groups), which are read by then;
    and the node's position is checked in the transaction (`apply._check_position`)."""

    def __init__(self, conn: Connection, prepared: PreparedStep, depth: int = 2) -> None:
        self.prepared = prepared
        self.count = len(range(prepared.upto, prepared.end, BATCH))
        self.queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._read, args=(conn,), name="harvest-read-ahead", daemon=True
        )
        prepared.ahead = self
        self.thread.start()

    def _read(self, conn: Connection) -> None:
        p = self.prepared
        try:
            for lo in range(p.upto, p.end, BATCH):
                batch = _prepare_batch(
                    conn, p.node_id, lo, min(lo + BATCH, p.end), p.k, p.missing, p.staged
                )
                if not self._put(batch):
                    return
        except BaseException as exc:  # handed to the transaction, which raises it
            self._put(exc)

    def _put(self, item: Batch | BaseException) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def batches(self) -> Iterator[Batch]:
        for _ in range(self.count):
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading (the transaction failed, or is done) and wait for the thread."""
        self.stopped.set()
        self.thread.join()
        self.prepared.ahead = None


def _batches(conn: Connection, prepared: PreparedStep) -> Iterator[Batch]:
    """The prepared batches (each let go once applied), then the rest of the step's, keyed
    one by one (`PREPARE_BUDGET`), or as a `ReadAhead` thread keys them."""
    while prepared.batches:
        yield prepared.batches.pop(0)
    if prepared.ahead is not None:
        yield from prepared.ahead.batches()
        return
    for lo in range(prepared.upto, prepared.end, BATCH):
        hi = min(lo + BATCH, prepared.end)
        yield _prepare_batch(
            conn, prepared.node_id, lo, hi, prepared.k, prepared.missing, prepared.staged
        )


def _prepare_batch(
    conn: Connection,
    node_id: int,
    lo: int,
    hi: int,
    k: int,
    missing: dict[tuple[str, str], int],
    staged: StagedKeys | None = None,
) -> Batch:
    # the batch's rejected leaves (index -> kind, record id: as their leaves state them)
    rejected: dict[int, tuple[str, str]] = {
        int(idx): (kind, rid)
        for idx, kind, rid in conn.execute(
            select(rejections.c.idx, rejections.c.kind, rejections.c.record_id).where(
                rejections.c.node_id == node_id, rejections.c.idx >= lo, rejections.c.idx < hi
            )
        )
    }
    # the leaf of an erased or withdrawn entry (to tell which), else the content; through the
    # driver's cursor (SQLAlchemy's row processing cost as much as the parsing)
    # (a group keyed as it was verified is not read back: its content only when it was not)
    keyed = staged.take(conn, lo, hi) if staged is not None else {}
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    leaves_of: Iterable[tuple[Any, ...]] | None = None
    if keyed and staged is not None and staged.complete:
        # every group keyed as it was verified carries its record id: only the other leaves
        # are read back (other kinds, erased, withdrawn, and any group not keyed)
        others = [i for i, kd in keyed.items() if kd is None]
        if len(others) * POINT_READS <= hi - lo:
            # few: looked up by index, not a scan of the batch's every stored leaf (a 1M
            # harvest's batches hold about 5% of these; the scan read each leaf's row)
            rows: list[Any] = []
            for first in range(0, len(others), _IN_LIST):
                part = others[first : first + _IN_LIST]
                marks = ", ".join([mark] * len(part))
                cursor.execute(_UNKEYED_AT.format(mark=mark, marks=marks), (node_id, *part))
                rows += cursor.fetchall()
            rows.sort(key=_first)
        else:
            cursor.execute(_UNKEYED.format(mark=mark), (node_id, lo, hi))
            rows = cursor.fetchall()
        if rejected:  # a rejected group with its content: its kind and id are all it needs
            at = {row[0] for row in rows}
            rows += [
                (i, kind, rid, None, None)
                for i, (kind, rid) in rejected.items()
                if i not in at and keyed[i] is None
            ]
            rows.sort(key=_first)
        staged_n = len(keyed) - countOf(keyed.values(), None)
        read = sum(1 for row in rows if keyed[row[0]] is None)
        if read + staged_n == hi - lo:  # each leaf read back or keyed (else read as before)
            leaves_of = _merged(rows, keyed)
    if leaves_of is None:
        content_col = (
            f"CASE WHEN kind = '{GROUP}' THEN NULL ELSE content END" if keyed else "content"
        )
        cursor.execute(
            f"SELECT idx, kind, record_id, CASE WHEN content IS NULL THEN leaf END, "
            f"{content_col} FROM leaves WHERE node_id = {mark} AND idx >= {mark} "
            f"AND idx < {mark} ORDER BY idx",
            (node_id, lo, hi),
        )
        leaves_of = cursor
    changes: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    erase: dict[tuple[str, str], int] = {}
    refused: list[tuple[Any, ...]] = []
    groups = changes[GROUP]
    loads, dumps, sha256 = orjson.loads, orjson.dumps, hashlib.sha256
    take = keyed.get
    for idx, kind, rid, gone, content in leaves_of:
        # the common leaf first: a group keyed as it was verified (`key_group`), not
        # rejected, within k (`group_problems` is asked only of exact donors below k or above
        # exact samples); the same as the branches below give it
        if (
            gone is None
            and (kd := take(idx)) is not None
            and kind == GROUP
            and idx not in rejected
            and ((donors := kd[6]) is None or (donors >= k and (kd[5] is None or kd[5] >= donors)))
        ):
            if missing:
                missing.pop((kind, rid), None)
            groups[rid] = kd
            continue
        if kind not in changes:
            continue  # rotate-key (no record), or a kind no schema knows (rejected)
        if missing:
            missing.pop((kind, rid), None)
        if gone is not None:
            changes[kind][rid] = None  # withdrawn, or its content is missing
            if loads(gone)["op"] == "withdraw":
                erase[(kind, rid)] = idx
            else:
                missing[(kind, rid)] = idx
        elif idx in rejected:
            changes[kind][rid] = None
        elif kind == GROUP and (kd := take(idx)) is not None:
            # keyed as it was verified and breaking k (the first branch took the others)
            problems = group_problems({"samples": kd[5], "donors": kd[6]}, k)
            groups[rid] = None
            refused.append((node_id, idx, kind, rid, orjson.dumps(problems).decode()))
        elif kind == GROUP:
            if content is None:  # not keyed where it was verified: read back after all
                content = _content(conn, node_id, idx)
            record = loads(content)
            samples, donors = record["samples"], record["donors"]
            # only exact donors can break the policy (`group_problems`)
            if isinstance(donors, int) and (problems := group_problems(record, k)):
                groups[rid] = None
                refused.append((node_id, idx, kind, rid, orjson.dumps(problems).decode()))
            else:
                key = combo_key(record)
                groups[rid] = (
                    idx,
                    sha256(dumps(key)).digest(),  # combo_hash(key)
                    key,
                    # `count_interval`, inline
                    (1, int(samples["lt"]) - 1)
                    if type(samples) is dict
                    else (n := int(samples), n),
                    (1, int(donors["lt"]) - 1) if type(donors) is dict else (n := int(donors), n),
                    None,  # (a Keyed's exact counts: asked of the policy above already)
                    None,
                    None,
                )
        else:
            changes[kind][rid] = (idx, loads(content))
    cursor.close()
    return Batch(changes, erase, refused)


# the leaves of a batch not keyed where they were verified, as `_prepare_batch` reads them
_UNKEYED = (
    "SELECT idx, kind, record_id, CASE WHEN content IS NULL THEN leaf END, content FROM leaves"
    " WHERE node_id = {mark} AND idx >= {mark} AND idx < {mark}"
    f" AND (kind <> '{GROUP}' OR content IS NULL) ORDER BY idx"
)
# the same, of the batch's leaves with no keyed group, by index (`_prepare_batch`: when at
# most one in POINT_READS of the batch's leaves is such a leaf)
_UNKEYED_AT = (
    "SELECT idx, kind, record_id, CASE WHEN content IS NULL THEN leaf END, content FROM leaves"
    " WHERE node_id = {mark} AND idx IN ({marks})"
    f" AND (kind <> '{GROUP}' OR content IS NULL)"
)
POINT_READS = 4
_IN_LIST = 500  # the leaves looked up a statement (`_UNKEYED_AT`)


def _merged(
    rows: list[tuple[Any, ...]], keyed: dict[int, Keyed | None]
) -> Iterator[tuple[Any, ...]]:
    """A batch's leaves in index order as `_prepare_batch` reads them: those read back
    (`rows`), and each group keyed where it was verified as (index, kind, record id, None,
    None), its content not read (as the full read gives a keyed group's)."""
    at = {row[0]: row for row in rows}
    get = at.get
    for idx, kd in keyed.items():
        row = get(idx) if at else None
        if row is not None:
            yield row
        elif kd is not None:
            yield (idx, GROUP, kd[7], None, None)


def _content(conn: Connection, node_id: int, idx: int) -> Any:
    return conn.execute(
        select(leaves.c.content).where(leaves.c.node_id == node_id, leaves.c.idx == idx)
    ).scalar_one()


def index_step(
    conn: Connection,
    node_id: int,
    start: int,
    end: int,
    *,
    country: str | None,
    vocab: Vocabulary,
    stamp: Callable[[], int],
    prepared: PreparedStep | None = None,
) -> None:
    """Index the stored leaves [start, end) of a verified step, in batches.

    The latest leaf of each record wins: publish indexes its content (unless erased or
    rejected), withdraw removes the record and erases the content of its earlier leaves. A
    group breaking the node's declared k (`group_problems`) is rejected here.
    `prepared`: the same leaves made ready before this transaction (`prepare_step`); read
    here when not given (or when the node's k changed meanwhile).
    `stamp`: called once, just before the combos' counts change, it returns the size the
    catalogue's own log will have when this transaction commits (`combos.changed`).
    Combos new in the step are inserted once, at the end, with their counts, country and
    stamp (their text columns encoded just before the stamp); existing combos get their
    counts by delta or by a recount.
    """
    k = int(conn.execute(select(nodes.c.k).where(nodes.c.id == node_id)).scalar_one())
    if prepared is None or (prepared.node_id, prepared.start, prepared.end, prepared.k) != (
        node_id,
        start,
        end,
        k,
    ):
        prepared = prepare_step(conn, node_id, start, end)
    combo_ids, live = prepared.combo_ids, prepared.live
    # group leaves a later leaf of the same group in this step replaces: not written at all
    later = superseded(conn, node_id, start, end)
    recount: set[int] = set()  # combos that lost a group: counted again from their groups
    deltas: dict[int, list[int]] = {}  # combos that only gained groups: what they gained
    biobanks = False  # a biobank record changed: the country of existing combos may too
    for batch in _batches(conn, prepared):
        changes = batch.changes
        if batch.refused:
            bulk_insert(conn, rejections, REJECTION_COLUMNS, batch.refused)
        if batch.erase and conn.dialect.name == "sqlite":  # through the driver (`_ERASE`)
            executemany(
                conn,
                _ERASE,
                [(node_id, node_id, kind, r, w) for (kind, r), w in batch.erase.items()],
            )
        elif batch.erase:  # PostgreSQL: the batch's withdrawals in one statement (`ERASE_PG`)
            erase = batch.erase
            with generic_plans(conn):
                conn.execute(
                    text(ERASE_PG),
                    {
                        "n": node_id,
                        "k": [kind for kind, _r in erase],
                        "r": [r for _kind, r in erase],
                        "w": list(erase.values()),
                    },
                )
        apply_records(conn, node_id, "biobank", changes["biobank"])
        apply_records(conn, node_id, "collection", changes["collection"])
        apply_groups(conn, node_id, changes[GROUP], combo_ids, live, recount, deltas, later)
        if len(combo_ids.new) > NEW_COMBO_BUDGET:  # written now, counted at the end by delta
            combo_ids.encode_new(vocab)
            combo_ids.insert_new(conn, {}, set(), None, node_country=country)
        biobanks = biobanks or bool(changes["biobank"])
    if prepared.missing:
        conn.execute(
            rejections.insert(),
            missing_content_rejections(node_id, prepared.origin, prepared.missing),
        )
    combo_ids.encode_new(vocab)  # before `stamp` (on PostgreSQL, a lock)
    changed = stamp()
    if biobanks:  # the combos indexed before (new ones get their country as inserted)
        refresh_countries(conn, node_id, country, changed)
    new = combo_ids.insert_new(conn, deltas, recount, changed, node_country=country)
    # (most combos that gained are new: filtered before the rest is sorted)
    gained = sorted(cid for cid in deltas if cid not in new and cid not in recount)
    if conn.dialect.name == "postgresql":  # (in one statement from BULK_UPDATE rows on)
        added = _added(deltas, gained, changed)
        write_counts(conn, sorted(recount), added, changed, node_id=node_id)
        return
    write_counts(conn, sorted(recount), [], changed, node_id=node_id)
    for first in range(0, len(gained), INSERT_SLICE):  # (a slice's rows at a time in memory)
        executemany(conn, _ADD, _added(deltas, gained[first : first + INSERT_SLICE], changed))


def _added(
    deltas: Mapping[int, list[int]], cids: Iterable[int], changed: int
) -> list[tuple[int, ...]]:
    """`_ADD`'s parameters: what each combo of `cids` gained, stamped `changed`."""
    return [
        (n_min, n_max, d_min, d_min, d_max, changed, cid)
        for cid in cids
        for n_min, n_max, d_min, d_max in (deltas[cid],)
    ]


# SQLite: erase the contents of a withdrawn record's earlier leaves, found by `leaf_records`
# (the same statement as the SQLAlchemy one PostgreSQL runs with generic plans; through the
# driver, a withdrawal cost about 18 µs of CPU in SQLAlchemy's executemany, 1M harvest)
_ERASE = """UPDATE leaves SET content = NULL WHERE node_id = ? AND idx IN (SELECT idx
 FROM leaf_records WHERE node_id = ? AND kind = ? AND record_id = ? AND idx < ?)"""


# PostgreSQL: the same for all of a batch's withdrawn records at once, joined to their
# earlier leaves through `leaf_records` (a view over an index of `leaves`: `db._records_view`);
# planned generically (`db.generic_plans`), a nested loop over the records by their keys
# (a statement a record cost a backend and the client about 0.75 µs an entry more at 1M)
ERASE_PG = """UPDATE leaves SET content = NULL FROM (SELECT r.idx
 FROM unnest(CAST(:k AS text[]), CAST(:r AS text[]), CAST(:w AS bigint[])) AS w(kind, rid, upto)
 JOIN leaf_records r ON r.node_id = :n AND r.kind = w.kind AND r.record_id = w.rid
  AND r.idx < w.upto) e
WHERE leaves.node_id = :n AND leaves.idx = e.idx"""


def missing_content_rejections(
    node_id: int, origin: str, missing: Mapping[tuple[str, str], int]
) -> list[dict[str, Any]]:
    """Rejection rows for live records whose latest publish entry came without content
    (the auditor applies the same rule: `audit.livestate.NodeLive.missing_content`)."""
    return [
        {
            "node_id": node_id,
            "idx": idx,
            "kind": kind,
            "record_id": rid,
            "problems": orjson.dumps(
                [str(Problem(f"{origin} leaf {idx}", "/content", None, MISSING_CONTENT))]
            ).decode(),
        }
        for (kind, rid), idx in sorted(missing.items(), key=lambda item: item[1])
    ]


# a combo's counts from its groups' bounds: samples add up, donors are at least the largest
# group's lower bound and at most the sum of the upper bounds (PostgreSQL, by the groups'
# index on their combo; SQLite has no such index: `_recount_sqlite`)
_RECOUNT = """UPDATE combos SET
 n_min = (SELECT COALESCE(SUM(g.s_min), 0) FROM sample_groups g WHERE g.combo_id = combos.id),
 n_max = (SELECT COALESCE(SUM(g.s_max), 0) FROM sample_groups g WHERE g.combo_id = combos.id),
 d_min = (SELECT COALESCE(MAX(g.d_min), 0) FROM sample_groups g WHERE g.combo_id = combos.id),
 d_max = (SELECT COALESCE(SUM(g.d_max), 0) FROM sample_groups g WHERE g.combo_id = combos.id),
 changed = ?
WHERE id = ?"""
# the same for a combo that only gained groups, by delta (a sum grows, a maximum can only rise)
_ADD = """UPDATE combos SET n_min = n_min + ?, n_max = n_max + ?,
 d_min = CASE WHEN d_min < ? THEN ? ELSE d_min END, d_max = d_max + ?, changed = ?
WHERE id = ?"""

# the same two on PostgreSQL, for many combos at once (`write_counts`, `db.update_from_rows`)
_RECOUNT_PG = """UPDATE combos SET n_min = COALESCE(s.n_min, 0), n_max = COALESCE(s.n_max, 0),
 d_min = COALESCE(s.d_min, 0), d_max = COALESCE(s.d_max, 0), changed = :changed
FROM harvest_recount t LEFT JOIN (
 SELECT g.combo_id, SUM(g.s_min) AS n_min, SUM(g.s_max) AS n_max, MAX(g.d_min) AS d_min,
  SUM(g.d_max) AS d_max
 FROM sample_groups g JOIN harvest_recount r ON g.combo_id = r.id GROUP BY g.combo_id
) s ON s.combo_id = t.id
WHERE combos.id = t.id"""
_ADD_PG = """UPDATE combos SET n_min = combos.n_min + t.n_min, n_max = combos.n_max + t.n_max,
 d_min = CASE WHEN combos.d_min < t.d_min THEN t.d_min ELSE combos.d_min END,
 d_max = combos.d_max + t.d_max, changed = t.changed
FROM harvest_add t WHERE combos.id = t.id"""


def write_counts(
    conn: Connection,
    recount: Sequence[int],
    added: Sequence[tuple[int, ...]],
    changed: int,
    *,
    node_id: int | None = None,
) -> None:
    """Recount the combos `recount` from their groups (`_RECOUNT`) and add to others what
    they gained (`added`: `_ADD`'s parameters); both stamped `changed`. On PostgreSQL, from
    `BULK_UPDATE` combos on, by one statement each (`_RECOUNT_PG`, `_ADD_PG`). On SQLite,
    which keeps no index of the groups by combo, the combos to recount are node `node_id`'s
    (required there) and their groups are found in one pass over the node's groups
    (`_recount_sqlite`)."""
    if conn.dialect.name == "postgresql" and len(recount) + len(added) >= BULK_UPDATE:
        ids = [(cid,) for cid in recount]
        update_from_rows(
            conn, "harvest_recount", (("id", "int4"),), ids, _RECOUNT_PG, {"changed": changed}
        )
        columns = ("n_min", "n_max", "d_min", "d_max", "changed", "id")
        update_from_rows(
            conn,
            "harvest_add",
            [(name, "int4" if name == "id" else "int8") for name in columns],
            [(a, b, c, e, ch, cid) for a, b, c, _c, e, ch, cid in added],
            _ADD_PG,
        )
        return
    if conn.dialect.name == "sqlite" and recount:
        if node_id is None:
            raise ValueError("write_counts on SQLite recounts a node's combos: name the node")
        executemany(conn, _SET_COUNTS, _recount_sqlite(conn, node_id, recount, changed))
    else:
        executemany(conn, _RECOUNT, [(changed, cid) for cid in recount])
    executemany(conn, _ADD, added)


_SET_COUNTS = (
    "UPDATE combos SET n_min = ?, n_max = ?, d_min = ?, d_max = ?, changed = ? WHERE id = ?"
)


def _recount_sqlite(
    conn: Connection, node_id: int, recount: Sequence[int], changed: int
) -> list[tuple[int, ...]]:
    """`_SET_COUNTS`' parameters: the counts of each combo of `recount` from the bounds of
    its groups, as `_RECOUNT` counts them, read in one pass over node `node_id`'s groups (its
    key's first column: a range of the table's B-tree). SQLite keeps no index of the groups
    by combo: it cost every group written about 0.7 µs of CPU (its entry, and its pages at
    the commit) for the few recounts. (Found before in the group ids the harvest held for
    the node, which at 10M samples held about 30 MB in a node's first step for no recount;
    a step on a node already indexed reads all its groups at its start anyway.)"""
    sums: dict[int, list[int]] = {cid: [0, 0, 0, 0] for cid in recount}
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            "SELECT combo_id, s_min, s_max, d_min, d_max FROM sample_groups WHERE node_id = ?",
            (node_id,),
        )
        for cid, s_min, s_max, d_min, d_max in cursor:
            got = sums.get(cid)
            if got is not None:
                got[0] += s_min
                got[1] += s_max
                got[2] = d_min if d_min > got[2] else got[2]
                got[3] += d_max
    finally:
        cursor.close()
    return [(*sums[cid], changed, cid) for cid in recount]


def superseded(conn: Connection, node_id: int, start: int, end: int) -> set[int]:
    """The group leaves of [start, end) that a later leaf of the same group in [start, end)
    replaces (from `leaf_records`, which the final commit fills for the step first; without
    them, none)."""
    postgres = conn.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    later: set[int] = set()
    try:  # the step's leaves of each group, in key order (a window function cost 3 times this)
        if postgres:  # sorted in memory, by one backend (`_SORT_SETTINGS`)
            cursor.execute(_SORT_SETTINGS)
        cursor.execute(
            f"SELECT record_id, idx FROM leaf_records WHERE node_id = {mark} AND kind = {mark} "
            f"AND idx >= {mark} AND idx < {mark} ORDER BY record_id, idx",
            (node_id, GROUP, start, end),
        )
        last_id, last_idx = None, 0
        for rid, idx in cursor:
            if rid == last_id:
                later.add(last_idx)
            last_id, last_idx = rid, idx
        if postgres:
            cursor.execute(_SORT_DEFAULTS)
    finally:
        cursor.close()
    return later


# PostgreSQL, for `superseded` only (then back to the server's settings): a 1M node's step
# (60,000 groups, 3 MB to sort) sorted on disk with the default 4 MB `work_mem` (a merge of
# runs) and, some runs, by parallel workers each started for it: about 0.5 µs an entry more
# of the backends than one sort in memory
_SORT_SETTINGS = (
    "SELECT set_config('work_mem', '64MB', true),"
    " set_config('max_parallel_workers_per_gather', '0', true)"
)
_SORT_DEFAULTS = (
    "SELECT set_config('work_mem', reset_val, true) FROM pg_settings WHERE name = 'work_mem'"
    " UNION ALL SELECT set_config('max_parallel_workers_per_gather', reset_val, true)"
    " FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'"
)


def apply_groups(
    conn: Connection,
    node_id: int,
    changes: dict[str, Ready | None],
    combo_ids: ComboIds,
    live: dict[str, int],
    recount: set[int],
    deltas: dict[int, list[int]],
    later: set[int] | frozenset[int] = frozenset(),
) -> None:
    """Replace live groups by their latest version (or remove them).

    `changes` maps group id -> a Ready change, or None to remove; `live` (group id -> combo
    id of the node's groups indexed before this step) loses each group replaced or removed.
    The groups this step writes are not added to it: a group's version written here is its
    step's latest (`later` holds the others), so no later batch of the step replaces it, and
    at 10M samples a node's first step held about 30 MB of them only to find them again in
    a recount (which reads the node's groups instead: `write_counts`). A combo that loses a
    group goes into `recount`; what a combo gains is added to `deltas[combo]` ([n_min,
    n_max, d_min, d_max]).
    `later`: leaves (`superseded`) that a later batch of the step replaces. Such a version
    is not written (it used to be written, then deleted and its combo recounted); its combo
    gets its id as before, and is recounted if it was written before (a new combo's counts
    are the deltas of the groups it ends with, which is what a recount finds)."""
    if not changes:
        return
    ids = combo_ids.ids
    # only the combos the node does not have yet; no look-ups in `live` for a node without
    # indexed groups (its first step): 1.2 -> 1.1 µs of Python a group (1M DE step)
    fresh = {ch[1]: ch[2] for ch in changes.values() if ch is not None and ch[1] not in ids}
    if fresh:
        combo_ids.ensure(conn, fresh)
    old = {gid: live.pop(gid) for gid in changes if gid in live} if live else {}
    recount.update(old.values())
    if old and conn.dialect.name == "postgresql":  # one statement, planned for any node
        with generic_plans(conn):
            conn.execute(
                text("DELETE FROM sample_groups WHERE node_id = :n AND group_id = ANY(:gids)"),
                {"n": node_id, "gids": list(old)},
            )
    elif old:  # through the driver: 0.9 instead of 2.7-4.8 µs a group in SQLAlchemy's
        executemany(conn, _DELETE_GROUP, [(node_id, gid) for gid in old])
    rows: list[tuple[Any, ...]] = []
    append, gains = rows.append, deltas.get
    new = combo_ids.new
    for gid, ch in changes.items():
        if ch is not None:
            idx, chash, _key, (s_min, s_max), (d_min, d_max), _, _, _ = ch
            if idx in later:
                cid = ids[chash]
                if cid not in new:
                    recount.add(cid)
                continue
            cid = ids[chash]
            gained = gains(cid)
            if gained is None:
                deltas[cid] = [s_min, s_max, d_min, d_max]
            else:
                gained[0] += s_min
                gained[1] += s_max
                if d_min > gained[2]:
                    gained[2] = d_min
                gained[3] += d_max
            append((node_id, gid, idx, cid, s_min, s_max, d_min, d_max))
    # in key order: the groups' B-tree is written page after page, not at random (by the
    # group id alone: the node is the same in every row)
    rows.sort(key=_group_id)
    bulk_insert(conn, sample_groups, _GROUP_COLUMNS, rows, many_rows=True)


REJECTION_COLUMNS = ("node_id", "idx", "kind", "record_id", "problems")
_DELETE_GROUP = "DELETE FROM sample_groups WHERE node_id = ? AND group_id = ?"
_group_id = itemgetter(1)
_GROUP_COLUMNS = ("node_id", "group_id", "idx", "combo_id", "s_min", "s_max", "d_min", "d_max")


def combo_hash(key: tuple[Any, ...]) -> bytes:
    """What a combo is known by: the SHA-256 of its key as compact JSON, stored as
    `combos.khash` (the key itself is stored as the row's columns, not as text)."""
    return hashlib.sha256(orjson.dumps(key)).digest()


class ComboIds:
    """The combo ids of one node by key: read once, then kept up to date as combos are added.

    Looking up a few hundred long keys at a time with `key IN (...)` made PostgreSQL filter
    every combo of the node (while a harvest's rows have no statistics yet its plan uses the
    index on `node_id` alone), so harvesting grew quadratic. One read of the node's combos,
    kept by the SHA-256 of each key (about 150 bytes a combo), makes it linear on both
    databases. Combos new in a step get their ids at once (`ensure`) and are written once at
    its end (`encode_new`, `insert_new`), with their counts: no row is written twice.
    """

    def __init__(self, conn: Connection, node_id: int) -> None:
        self.node_id = node_id
        self.ids: dict[bytes, int] = {
            bytes(h): cid
            for h, cid in conn.execute(
                select(combos.c.khash, combos.c.id).where(combos.c.node_id == node_id)
            )
        }
        self.new: dict[int, tuple[Any, ...]] = {}  # id -> key of the combos not written yet
        self.hashes: dict[int, bytes] = {}  # id -> combo_hash of the combos not written yet
        # id -> the text columns of the combos not written yet (`encode_new`)
        self.encoded: dict[int, tuple[str | None, str | None, str | None]] = {}
        self._multi: dict[tuple[Any, ...], tuple[str | None, str | None, str | None]] = {}
        self._next: int | None = None  # SQLite: the next free id (under the write lock)
        # PostgreSQL: the combos written ahead of the step's end (`NEW_COMBO_BUDGET`), parked
        # in a temporary table and written to `combos` once, with their counts (`_unpark`)
        self.parked: set[int] = set()

    def ensure(self, conn: Connection, keys: Mapping[bytes, tuple[Any, ...]]) -> None:
        """Give the combos of `keys` (by `combo_hash`) that the node does not have yet an id
        each; they are written by `insert_new` (after `encode_new`)."""
        ids = self.ids
        # (`apply_groups` gives only missing ones: checked in C, not filtered a key at a time)
        missing = list(keys) if ids.keys().isdisjoint(keys) else [h for h in keys if h not in ids]
        if not missing:
            return
        fresh = self._fresh(conn, len(missing))
        # in C, not a Python loop a combo
        ids.update(zip(missing, fresh, strict=True))
        self.new.update(zip(fresh, map(keys.__getitem__, missing), strict=True))
        self.hashes.update(zip(fresh, missing, strict=True))

    def _fresh(self, conn: Connection, n: int) -> list[int]:
        """`n` fresh combo ids: from the id sequence on PostgreSQL; on SQLite, past the
        largest (the write transaction holds the database's only write lock)."""
        if conn.dialect.name == "postgresql":
            # the sequence looked up once (an InitPlan), not once a row; the ids as one array
            # (0.05 instead of 0.5 µs of this process an id as rows through SQLAlchemy)
            ids = conn.execute(
                text(
                    "SELECT array_agg(nextval("
                    "(SELECT pg_get_serial_sequence('combos', 'id')::regclass)))"
                    " FROM generate_series(1, :n)"
                ),
                {"n": n},
            ).scalar_one()
            return list(ids)
        if self._next is None:
            top = conn.execute(select(func.coalesce(func.max(combos.c.id), 0))).scalar_one()
            self._next = int(top) + 1
        first, self._next = self._next, self._next + n
        return list(range(first, first + n))

    def encode_new(self, vocab: Vocabulary) -> None:
        """The text columns of the new combos not encoded yet: their multi-valued attributes
        (`encode_multi`); done before `insert_new`, which on PostgreSQL runs under the own
        log's lock."""
        encoded, memo = self.encoded, self._multi
        for cid, key in self.new.items():
            if cid not in encoded:
                lists = key[9:12]  # a node states few distinct lists: each encoded once
                multi = memo.get(lists)
                if multi is None:
                    multi = memo[lists] = encode_multi(key, vocab)
                encoded[cid] = multi

    def insert_new(
        self,
        conn: Connection,
        deltas: Mapping[int, list[int]],
        recount: set[int],
        changed: int | None,
        *,
        node_country: str | None,
    ) -> set[int]:
        """Write the new combos with what they gained (a combo to be recounted: zero), their
        country (from the node's biobank records, else the node's) and `changed` (None:
        written ahead of the step's end, counted later); their ids."""
        postgres = conn.dialect.name == "postgresql"
        parked = self._unpark(conn, deltas, recount, changed, node_country) if postgres else set()
        if not self.new:
            return parked
        country = _countries(conn, self.node_id).get
        node_id, encoded, hashes, gains = self.node_id, self.encoded, self.hashes, deltas.get
        none = (0, 0, 0, 0)  # to be recounted, or nothing gained yet
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        # in id order as `ensure` gave them (ascending): the table's B-tree is appended to
        for cid, key in self.new.items():
            biobank, collection, kind, temperature, sex, a_min, a_max, y_from, y_to = key[:9]
            diagnoses, uses, datasets = encoded[cid]
            n_min, n_max, d_min, d_max = none if cid in recount else gains(cid, none)
            append(
                (
                    cid,
                    node_id,
                    bytearray(hashes[cid]),  # no adapter look-up (`db.bulk_insert`)
                    biobank,
                    collection,
                    kind,
                    temperature,
                    sex,
                    a_min,
                    a_max,
                    y_from,
                    y_to,
                    diagnoses,
                    uses,
                    datasets,
                    country(biobank) or node_country,
                    n_min,
                    n_max,
                    d_min,
                    d_max,
                    changed,
                )
            )
            if not postgres and len(rows) >= INSERT_SLICE:  # (a slice's rows at a time)
                bulk_insert(conn, combos, COMBO_COLUMNS, rows)
                rows.clear()
        if postgres:  # in key order: its unique index is appended to
            rows.sort(key=_khash)  # (the ids are ints, cheap at random)
        written = set(self.new)
        if postgres and changed is None:  # ahead of the step's end: parked, not written twice
            if not self.parked:
                conn.exec_driver_sql(_PARK)
            bulk_insert(conn, combos, COMBO_COLUMNS, rows, into="harvest_parked")
            self.parked |= written
        else:
            bulk_insert(conn, combos, COMBO_COLUMNS, rows)
        self.new, self.hashes, self.encoded = {}, {}, {}
        if parked:
            written |= parked
        return written

    def _unpark(
        self,
        conn: Connection,
        deltas: Mapping[int, list[int]],
        recount: set[int],
        changed: int | None,
        node_country: str | None,
    ) -> set[int]:
        """PostgreSQL, at the step's end: write the parked combos to `combos` in key order,
        each with what it gained (a combo to be recounted: zero) and its country as
        `insert_new` gives it; their ids. Each combo row is written once (written to `combos`
        with no counts and updated at the end, a combo cost a backend about 12 µs more)."""
        if changed is None or not self.parked:
            return set()
        gained = [
            (cid, *got)
            for cid in sorted(self.parked)
            if cid not in recount and (got := deltas.get(cid)) is not None
        ]
        update_from_rows(
            conn,
            "harvest_gained",
            [("id", "int4"), ("n_min", "int8"), ("n_max", "int8"), ("d_min", "int8")]
            + [("d_max", "int8")],
            gained,
            _UNPARK,
            {"changed": changed, "country": node_country},
            skip_empty=False,
        )
        conn.exec_driver_sql("DROP TABLE harvest_parked")
        parked, self.parked = self.parked, set()
        return parked


# PostgreSQL: where `ComboIds.insert_new` parks combos written ahead of a step's end, and
# how they go to `combos` at its end (the country as `insert_new` and `_countries` give it)
_PARK = "CREATE TEMPORARY TABLE harvest_parked (LIKE combos) ON COMMIT DROP"
_UNPARK = """INSERT INTO combos (id, node_id, khash, biobank, collection, sample_type,
 storage_temperature, sex, age_min, age_max, year_from, year_to, diagnoses, use_conditions,
 dataset_types, country, n_min, n_max, d_min, d_max, changed)
SELECT p.id, p.node_id, p.khash, p.biobank, p.collection, p.sample_type,
 p.storage_temperature, p.sex, p.age_min, p.age_max, p.year_from, p.year_to, p.diagnoses,
 p.use_conditions, p.dataset_types, COALESCE(NULLIF(r.country, ''), :country),
 COALESCE(g.n_min, 0), COALESCE(g.n_max, 0), COALESCE(g.d_min, 0), COALESCE(g.d_max, 0),
 :changed
FROM harvest_parked p LEFT JOIN harvest_gained g ON g.id = p.id
LEFT JOIN records r ON r.node_id = p.node_id AND r.kind = 'biobank' AND r.record_id = p.biobank
ORDER BY p.khash"""

COMBO_COLUMNS = (  # a new combo row as `insert_new` writes it
    "id",
    "node_id",
    "khash",
    "biobank",
    "collection",
    "sample_type",
    "storage_temperature",
    "sex",
    "age_min",
    "age_max",
    "year_from",
    "year_to",
    "diagnoses",
    "use_conditions",
    "dataset_types",
    "country",
    "n_min",
    "n_max",
    "d_min",
    "d_max",
    "changed",
)


def encode_multi(
    key: tuple[Any, ...], vocab: Vocabulary
) -> tuple[str | None, str | None, str | None]:
    """The multi-valued attributes of the combo of `key` (`combo_key`) as stored in its row
    (`combos.diagnoses`, `use_conditions`, `dataset_types`): compact JSON arrays in the
    key's (sorted) order, None for an empty one. A diagnosis is [system, code, code3,
    chapter]: the ICD-10 category (three characters) and chapter, null for other systems."""
    chapter_of = vocab.chapter_of
    diags = key[9]
    return (
        orjson.dumps(
            [
                (system, code, code[:3], chapter_of(code))
                if system == "ICD-10"
                else (system, code, None, None)
                for system, code in diags
            ]
        ).decode()
        if diags
        else None,
        orjson.dumps(key[10]).decode() if key[10] else None,
        orjson.dumps(key[11]).decode() if key[11] else None,
    )


def _khash(row: tuple[Any, ...]) -> bytes:
    return bytes(row[2])  # khash, the unique index's key with the node


def _countries(conn: Connection, node_id: int) -> dict[str, str | None]:
    """The country each of the node's live biobank records states (None or "": none)."""
    return dict(
        conn.execute(
            select(records.c.record_id, records.c.country).where(
                records.c.node_id == node_id, records.c.kind == "biobank"
            )
        ).all()
    )


def refresh_countries(
    conn: Connection, node_id: int, node_country: str | None, changed: int
) -> None:
    """Denormalise each combo's country from its biobank record (the node's country if none);
    `changed` marks the combos whose country changes (`combos.changed`). The node's biobank
    records are few: compared here, row by row, rather than by a subquery per combo."""
    country = _countries(conn, node_id)
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:  # through the driver: SQLAlchemy's rows cost more than the comparison
        cursor.execute(
            f"SELECT id, biobank, country FROM combos WHERE node_id = {mark}", (node_id,)
        )
        rows = [
            (want, changed, cid)
            for cid, biobank, has in cursor
            if (want := country.get(biobank) or node_country) != has
        ]
    finally:
        cursor.close()
    executemany(conn, "UPDATE combos SET country = ?, changed = ? WHERE id = ?", rows)
