"""Apply verified record changes of one node to the search index (records and the cube)."""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
)

from catalogue.db import bulk_insert, executemany
from catalogue.models import (
    combo_datasets,
    combo_diagnoses,
    combo_uses,
    combos,
    leaf_records,
    leaves,
    records,
    rejections,
    samples,
)
from catalogue.search.codes import Vocabulary

__all__ = ["StepCombos", "combo_hash", "combo_key", "index_step"]

# change per record: (leaf index, content) to publish, or None to remove from the index;
# for samples the content is replaced by its combo id
Change = tuple[int, Any] | None
_CHUNK = 500
_BATCH = 5000  # leaves read back per query while a step is indexed
_SEEN_BITS = 1 << 24  # 2 MiB filter of sample ids already indexed in a fresh step


def combo_key(s: dict[str, Any]) -> tuple[Any, ...]:
    """The coded attributes that make samples interchangeable for counting."""
    age = s.get("age") or {}
    per = s.get("period") or {}
    diags = tuple(sorted((d["system"], d["code"]) for d in s.get("diagnoses") or ()))
    return (
        s["biobank"],
        s["collection"],
        s.get("sample_type"),
        s.get("storage_temperature"),
        s.get("sex"),
        age.get("min"),
        age.get("max"),
        per.get("from"),
        per.get("to"),
        diags,
        tuple(sorted(s.get("use_conditions") or ())),
        tuple(sorted(s.get("dataset_types") or ())),
    )


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


def index_step(
    conn: Connection,
    node_id: int,
    start: int,
    end: int,
    *,
    country: str | None,
    vocab: Vocabulary,
    known: StepCombos | None = None,
    stamp: Callable[[], int],
) -> None:
    """Index the stored leaves [start, end) of a verified step, in batches (bounded memory).

    The latest leaf of each record wins: publish indexes its content (unless erased or
    rejected), withdraw removes the record and erases the content of its earlier leaves.
    `known`: the combos of the sample leaves this run stored (from `known.start` on); their
    contents are not read back. Leaves staged by an interrupted run are read and keyed here.
    `stamp`: called once, just before the combos' counts change, it returns the size the
    catalogue's own log will have when this transaction commits (`combos.changed`).
    """
    seen = bytearray(_SEEN_BITS // 8) if start == 0 else None
    combo_ids = known.combo_ids(conn) if known else ComboIds(conn, node_id)
    known_from = known.start if known else end
    delta: Counter[int] = Counter()  # change of each combo's count, applied once at the end
    touched = False
    for lo in range(start, end, _BATCH):
        hi = min(lo + _BATCH, end)
        rejected = set(
            conn.execute(
                select(rejections.c.idx).where(
                    rejections.c.node_id == node_id, rejections.c.idx >= lo, rejections.c.idx < hi
                )
            ).scalars()
        )
        # the leaf of an erased or withdrawn entry (to tell which); the content only where
        # it is needed: records, and samples whose combo is not known yet
        q = (
            select(
                leaves.c.idx,
                leaves.c.kind,
                leaves.c.record_id,
                case((leaves.c.content.is_(None), leaves.c.leaf), else_=None),
                case(
                    (or_(leaves.c.kind != "sample", leaves.c.idx < known_from), leaves.c.content),
                    else_=None,
                ),
            )
            .where(leaves.c.node_id == node_id, leaves.c.idx >= lo, leaves.c.idx < hi)
            .order_by(leaves.c.idx)
        )
        changes: dict[str, dict[str, Change]] = {"biobank": {}, "collection": {}, "sample": {}}
        erase: dict[tuple[str, str], int] = {}
        unkeyed: dict[str, bytes] = {}  # sample id -> combo hash, for staged samples
        new_keys: dict[bytes, tuple[Any, ...]] = {}
        for idx, kind, rid, gone, content in conn.execute(q):
            if not kind:
                continue  # rotate-key: no record
            if gone is not None:
                changes[kind][rid] = None  # withdrawn, or erased at the node
                if orjson.loads(gone)["op"] == "withdraw":
                    erase[(kind, rid)] = idx
            elif idx in rejected:
                changes[kind][rid] = None
            elif kind != "sample":
                changes[kind][rid] = (idx, orjson.loads(content))
            elif idx >= known_from:
                changes[kind][rid] = (idx, known.combo_of(idx))  # type: ignore[union-attr]
            else:
                key = combo_key(orjson.loads(content))
                h = combo_hash(key)
                new_keys[h] = key
                unkeyed[rid] = h
                changes[kind][rid] = (idx, 0)
        if new_keys:
            combo_ids.ensure(conn, new_keys, vocab)
            for rid, h in unkeyed.items():
                ch = changes["sample"][rid]
                if ch is not None and ch[1] == 0:
                    changes["sample"][rid] = (ch[0], combo_ids.ids[h])
        if erase:
            earlier = select(leaf_records.c.idx).where(
                leaf_records.c.node_id == node_id,
                leaf_records.c.kind == bindparam("k"),
                leaf_records.c.record_id == bindparam("r"),
                leaf_records.c.idx < bindparam("w"),
            )
            conn.execute(
                leaves.update()
                .where(leaves.c.node_id == node_id, leaves.c.idx.in_(earlier.scalar_subquery()))
                .values(content=None),
                [{"k": k, "r": r, "w": w} for (k, r), w in erase.items()],
            )
        apply_records(conn, node_id, "biobank", changes["biobank"])
        apply_records(conn, node_id, "collection", changes["collection"])
        check = None
        if seen is not None:  # fresh log: look up only ids an earlier batch may have indexed
            check = []
            for sid in changes["sample"]:
                bit = hash(sid) & (_SEEN_BITS - 1)
                if seen[bit >> 3] & (1 << (bit & 7)):
                    check.append(sid)
                seen[bit >> 3] |= 1 << (bit & 7)
        apply_samples(conn, node_id, changes["sample"], check=check, delta=delta)
        touched = touched or bool(changes["biobank"] or changes["sample"])
    changed = stamp()
    executemany(
        conn,
        "UPDATE combos SET n = n + ?, changed = ? WHERE id = ?",
        [(d, changed, cid) for cid, d in delta.items() if d],
    )
    if touched:
        refresh_countries(conn, node_id, country, changed)


def apply_samples(
    conn: Connection,
    node_id: int,
    changes: dict[str, Change],
    *,
    check: list[str] | None,
    delta: Counter[int],
) -> None:
    """Move samples between combos, keeping `samples` exact and counting each combo's change.

    `changes` maps sample id -> (leaf index, combo id), or None to remove; `check` lists the
    ids that may already be indexed (None: any of them). The caller applies `delta` to the
    combos' counts.
    """
    if not changes:
        return
    lookup = list(changes) if check is None else check
    if lookup:
        old = _existing(conn, node_id, lookup)
        for combo_id in old.values():
            delta[combo_id] -= 1
        if old:
            conn.execute(
                samples.delete().where(
                    and_(samples.c.node_id == node_id, samples.c.sample_id == bindparam("sid"))
                ),
                [{"sid": sid} for sid in old],
            )
    rows = []
    for sid, ch in changes.items():
        if ch is not None:
            delta[ch[1]] += 1
            rows.append((node_id, sid, ch[0], ch[1]))
    bulk_insert(conn, samples, ("node_id", "sample_id", "idx", "combo_id"), rows)


def _existing(conn: Connection, node_id: int, ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(ids), _CHUNK):
        q = select(samples.c.sample_id, samples.c.combo_id).where(
            samples.c.node_id == node_id, samples.c.sample_id.in_(ids[i : i + _CHUNK])
        )
        found.update({r.sample_id: r.combo_id for r in conn.execute(q)})
    return found


def combo_hash(key: tuple[Any, ...]) -> bytes:
    """What a combo is known by in memory: the SHA-256 of its stored key (`combos.ckey`)."""
    return hashlib.sha256(orjson.dumps(key)).digest()


class ComboIds:
    """The combo ids of one node by key: read once, then kept up to date as combos are added.

    Looking up a few hundred long keys at a time with `ckey IN (...)` made PostgreSQL filter
    every combo of the node (while a harvest's rows have no statistics yet its plan uses the
    index on `node_id` alone), so harvesting grew quadratic. One read of the node's combos,
    kept by the SHA-256 of each key (about 150 bytes a combo), makes it linear on both
    databases.
    """

    def __init__(self, conn: Connection, node_id: int) -> None:
        self.node_id = node_id
        self.ids: dict[bytes, int] = {
            hashlib.sha256(ckey.encode()).digest(): cid
            for ckey, cid in conn.execute(
                select(combos.c.ckey, combos.c.id).where(combos.c.node_id == node_id)
            )
        }

    def ensure(
        self, conn: Connection, keys: Mapping[bytes, tuple[Any, ...]], vocab: Vocabulary
    ) -> None:
        """Insert the combos of `keys` (by `combo_hash`) that the node does not have yet,
        with their side rows, counting no sample (n = 0, which search never shows)."""
        missing = [(h, key) for h, key in keys.items() if h not in self.ids]
        if not missing:
            return
        new = list(zip(_new_combo_ids(conn, len(missing)), missing, strict=True))
        bulk_insert(
            conn,
            combos,
            _COMBO_COLUMNS,
            [_combo_row(self.node_id, cid, key) for cid, (_h, key) in new],
        )
        _side_rows(conn, {cid: key for cid, (_h, key) in new}, vocab)
        self.ids.update((h, cid) for cid, (h, _key) in new)


class StepCombos:
    """The combo of each sample leaf a harvest run stores, resolved chunk by chunk.

    Keys are computed from the verified contents before a chunk is stored (off the write
    lock); the chunk's transaction adds the combos the node lacks (with n = 0: invisible until
    the final commit counts them). The final commit then indexes the step without reading the
    contents back. One id per leaf from `start` (0: not a countable sample), 4 bytes each.
    """

    def __init__(self, node_id: int, start: int) -> None:
        self.node_id = node_id
        self.start = start
        self.ids = array("i")
        self._combo_ids: ComboIds | None = None

    def combo_ids(self, conn: Connection) -> ComboIds:
        if self._combo_ids is None:
            self._combo_ids = ComboIds(conn, self.node_id)
        return self._combo_ids

    def add(
        self,
        conn: Connection,
        first: int,
        hashes: Sequence[bytes | None],
        keys: Mapping[bytes, tuple[Any, ...]],
        vocab: Vocabulary,
    ) -> None:
        """The combos of the leaves [first, first + len(hashes)) (None: none), in order."""
        if first != self.start + len(self.ids):
            raise RuntimeError(
                f"combos of leaf {first} given after leaf {self.start + len(self.ids)}"
            )
        ids = self.combo_ids(conn)
        ids.ensure(conn, keys, vocab)
        known = ids.ids
        self.ids.extend(0 if h is None else known[h] for h in hashes)

    def combo_of(self, idx: int) -> int:
        cid = self.ids[idx - self.start] if idx - self.start < len(self.ids) else 0
        if not cid:
            raise RuntimeError(f"no combo was resolved for sample leaf {idx}")
        return cid


_COMBO_COLUMNS = (
    "id",
    "node_id",
    "ckey",
    "biobank",
    "collection",
    "sample_type",
    "storage_temperature",
    "sex",
    "age_min",
    "age_max",
    "year_from",
    "year_to",
    "n",
)


def _new_combo_ids(conn: Connection, n: int) -> list[int]:
    """`n` fresh combo ids: from the id sequence on PostgreSQL; on SQLite, past the largest
    (the write transaction holds the database's only write lock)."""
    if conn.dialect.name == "postgresql":
        return list(
            conn.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence('combos', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": n},
            ).scalars()
        )
    first = int(conn.execute(select(func.coalesce(func.max(combos.c.id), 0))).scalar_one()) + 1
    return list(range(first, first + n))


def _side_rows(conn: Connection, new: dict[int, tuple[Any, ...]], vocab: Vocabulary) -> None:
    """The diagnosis, use-condition and dataset-type rows of newly inserted combos."""
    diag_rows: list[tuple[Any, ...]] = []
    use_rows: list[tuple[Any, ...]] = []
    dt_rows: list[tuple[Any, ...]] = []
    for cid, key in new.items():
        for system, code in key[9]:
            icd = system == "ICD-10"
            diag_rows.append(
                (
                    cid,
                    system,
                    code,
                    code[:3] if icd else None,
                    vocab.chapter_of(code) if icd else None,
                )
            )
        use_rows.extend((cid, c) for c in key[10])
        dt_rows.extend((cid, c) for c in key[11])
    bulk_insert(
        conn, combo_diagnoses, ("combo_id", "system", "code", "code3", "chapter"), diag_rows
    )
    bulk_insert(conn, combo_uses, ("combo_id", "code"), use_rows)
    bulk_insert(conn, combo_datasets, ("combo_id", "code"), dt_rows)


def _combo_row(node_id: int, cid: int, key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (cid, node_id, orjson.dumps(key).decode(), *key[:9], 0)


def refresh_countries(
    conn: Connection, node_id: int, node_country: str | None, changed: int
) -> None:
    """Denormalise each combo's country from its biobank record (the node's country if none);
    `changed` marks the combos whose country changes (`combos.changed`)."""
    country = func.coalesce(
        func.nullif(
            select(records.c.country)
            .where(
                records.c.node_id == node_id,
                records.c.kind == "biobank",
                records.c.record_id == combos.c.biobank,
            )
            .scalar_subquery(),
            "",
        ),
        literal(node_country, String),
    )
    conn.execute(
        combos.update()
        .where(combos.c.node_id == node_id, combos.c.country.is_distinct_from(country))
        .values(country=country, changed=changed)
    )
