"""Apply verified record changes of one node to the search index (records and the cube)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, case, select

from catalogue.codes import Vocabulary
from catalogue.db import bulk_insert
from catalogue.models import (
    combo_datasets,
    combo_diagnoses,
    combo_uses,
    combos,
    leaves,
    records,
    rejections,
    samples,
)

# change per record: (leaf index, content) to publish, or None to remove from the index;
# for samples the content is replaced by its combo_key()
Change = tuple[int, Any] | None
_CHUNK = 500
_BATCH = 5000  # leaves read back per query while a step is indexed
_SEEN_BITS = 1 << 24  # 2 MiB filter of sample ids already indexed in a fresh step


def combo_key(s: dict[str, Any]) -> tuple[Any, ...]:
    """The coded attributes that make samples interchangeable for counting."""
    age = s.get("age") or {}
    per = s.get("period") or {}
    diags = tuple(sorted((d["system"], d["code"]) for d in s.get("diagnoses") or ()))
    return (s["biobank"], s["collection"], s.get("sample_type"), s.get("storage_temperature"),
            s.get("sex"), age.get("min"), age.get("max"), per.get("from"), per.get("to"), diags,
            tuple(sorted(s.get("use_conditions") or ())),
            tuple(sorted(s.get("dataset_types") or ())))


def apply_records(conn: Connection, node_id: int, kind: str, changes: dict[str, Change]) -> None:
    """Replace live biobank or collection records by their latest version (or remove them)."""
    if not changes:
        return
    ids = list(changes)
    for i in range(0, len(ids), _CHUNK):
        conn.execute(records.delete().where(and_(
            records.c.node_id == node_id, records.c.kind == kind,
            records.c.record_id.in_(ids[i:i + _CHUNK]))))
    rows = [{"node_id": node_id, "kind": kind, "record_id": rid, "idx": ch[0],
             "country": ch[1].get("country") if kind == "biobank" else None,
             "biobank": ch[1].get("biobank") if kind == "collection" else None,
             "content": orjson.dumps(ch[1]).decode()}
            for rid, ch in changes.items() if ch is not None]
    if rows:
        conn.execute(records.insert(), rows)


def index_step(conn: Connection, node_id: int, start: int, end: int, *,
               country: str | None, vocab: Vocabulary) -> None:
    """Index the stored leaves [start, end) of a verified step, in batches (bounded memory).

    The latest leaf of each record wins: publish indexes its content (unless erased or
    rejected), withdraw removes the record and erases the content of its earlier leaves.
    """
    seen = bytearray(_SEEN_BITS // 8) if start == 0 else None
    combo_ids = ComboIds(conn, node_id)
    touched = False
    for lo in range(start, end, _BATCH):
        hi = min(lo + _BATCH, end)
        rejected = set(conn.execute(select(rejections.c.idx).where(
            rejections.c.node_id == node_id, rejections.c.idx >= lo, rejections.c.idx < hi))
            .scalars())
        q = (select(leaves.c.idx, leaves.c.kind, leaves.c.record_id, leaves.c.content,
                    case((leaves.c.content.is_(None), leaves.c.leaf), else_=None))
             .where(leaves.c.node_id == node_id, leaves.c.idx >= lo, leaves.c.idx < hi)
             .order_by(leaves.c.idx))
        changes: dict[str, dict[str, Change]] = {"biobank": {}, "collection": {}, "sample": {}}
        erase: dict[tuple[str, str], int] = {}
        for idx, kind, rid, content, leaf in conn.execute(q):
            if not kind:
                continue  # rotate-key: no record
            if content is None:
                changes[kind][rid] = None  # withdrawn, or erased at the node
                if orjson.loads(leaf)["op"] == "withdraw":
                    erase[(kind, rid)] = idx
            elif idx in rejected:
                changes[kind][rid] = None
            else:
                rec = orjson.loads(content)
                changes[kind][rid] = (idx, combo_key(rec) if kind == "sample" else rec)
        if erase:
            conn.execute(leaves.update().where(and_(
                leaves.c.node_id == node_id, leaves.c.kind == bindparam("k"),
                leaves.c.record_id == bindparam("r"), leaves.c.idx < bindparam("w")))
                .values(content=None), [{"k": k, "r": r, "w": w} for (k, r), w in erase.items()])
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
        apply_samples(conn, node_id, changes["sample"], check=check, vocab=vocab,
                      combo_ids=combo_ids)
        touched = touched or bool(changes["biobank"] or changes["sample"])
    if touched:
        refresh_countries(conn, node_id, country)


def apply_samples(conn: Connection, node_id: int, changes: dict[str, Change], *,
                  check: list[str] | None, vocab: Vocabulary,
                  combo_ids: ComboIds | None = None) -> None:
    """Move samples between combos: decrement old ones, increment new ones, keep `samples` exact.

    `changes` maps sample id -> (leaf index, combo_key(content)), or None to remove; `check`
    lists the ids that may already be indexed (None: any of them). `combo_ids`: the node's
    combo ids, when the caller applies several batches.
    """
    if not changes:
        return
    delta: Counter[int] = Counter()
    lookup = list(changes) if check is None else check
    if lookup:
        old = _existing(conn, node_id, lookup)
        for combo_id in old.values():
            delta[combo_id] -= 1
        if old:
            conn.execute(samples.delete().where(and_(
                samples.c.node_id == node_id, samples.c.sample_id == bindparam("sid"))),
                [{"sid": sid} for sid in old])
    published = [(sid, ch[0], ch[1]) for sid, ch in changes.items() if ch is not None]
    ids = (combo_ids or ComboIds(conn, node_id)).ids_for(
        conn, {key for _s, _i, key in published}, vocab)
    rows = []
    for sid, idx, key in published:
        cid = ids[key]
        delta[cid] += 1
        rows.append((node_id, sid, idx, cid))
    bulk_insert(conn, samples, ("node_id", "sample_id", "idx", "combo_id"), rows)
    updates = [{"cid": cid, "d": d} for cid, d in delta.items() if d]
    if updates:
        conn.execute(combos.update().where(combos.c.id == bindparam("cid"))
                     .values(n=combos.c.n + bindparam("d")), updates)


def _existing(conn: Connection, node_id: int, ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(ids), _CHUNK):
        q = select(samples.c.sample_id, samples.c.combo_id).where(
            samples.c.node_id == node_id, samples.c.sample_id.in_(ids[i:i + _CHUNK]))
        found.update({r.sample_id: r.combo_id for r in conn.execute(q)})
    return found


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
            _hashed(ckey): cid for ckey, cid in conn.execute(
                select(combos.c.ckey, combos.c.id).where(combos.c.node_id == node_id))}

    def ids_for(self, conn: Connection, keys: Iterable[tuple[Any, ...]],
                vocab: Vocabulary) -> dict[tuple[Any, ...], int]:
        """Ids of the combos for `keys`, inserting the missing ones (with their side rows)."""
        out: dict[tuple[Any, ...], int] = {}
        missing: dict[str, tuple[Any, ...]] = {}
        for key in keys:
            ckey = orjson.dumps(key).decode()
            cid = self.ids.get(_hashed(ckey))
            if cid is None:
                missing[ckey] = key
            else:
                out[key] = cid
        if missing:
            new = {row.ckey: row.id for row in conn.execute(
                combos.insert().returning(combos.c.ckey, combos.c.id),
                [_combo_row(self.node_id, c, k) for c, k in missing.items()])}
            _side_rows(conn, {cid: missing[ckey] for ckey, cid in new.items()}, vocab)
            for ckey, cid in new.items():
                self.ids[_hashed(ckey)] = cid
                out[missing[ckey]] = cid
        return out


def _hashed(ckey: str) -> bytes:
    return hashlib.sha256(ckey.encode()).digest()


def _side_rows(conn: Connection, new: dict[int, tuple[Any, ...]], vocab: Vocabulary) -> None:
    """The diagnosis, use-condition and dataset-type rows of newly inserted combos."""
    diag_rows: list[tuple[Any, ...]] = []
    use_rows: list[tuple[Any, ...]] = []
    dt_rows: list[tuple[Any, ...]] = []
    for cid, key in new.items():
        for system, code in key[9]:
            icd = system == "ICD-10"
            diag_rows.append((cid, system, code, code[:3] if icd else None,
                              vocab.chapter_of(code) if icd else None))
        use_rows.extend((cid, c) for c in key[10])
        dt_rows.extend((cid, c) for c in key[11])
    bulk_insert(conn, combo_diagnoses, ("combo_id", "system", "code", "code3", "chapter"),
                diag_rows)
    bulk_insert(conn, combo_uses, ("combo_id", "code"), use_rows)
    bulk_insert(conn, combo_datasets, ("combo_id", "code"), dt_rows)


def _combo_row(node_id: int, ckey: str, key: tuple[Any, ...]) -> dict[str, Any]:
    return {"node_id": node_id, "ckey": ckey, "biobank": key[0], "collection": key[1],
            "sample_type": key[2], "storage_temperature": key[3], "sex": key[4],
            "age_min": key[5], "age_max": key[6], "year_from": key[7], "year_to": key[8],
            "n": 0}


def refresh_countries(conn: Connection, node_id: int, node_country: str | None) -> None:
    """Denormalise each combo's country from its biobank record (the node's country if none)."""
    bb = {r.record_id: r.country for r in conn.execute(
        select(records.c.record_id, records.c.country).where(
            records.c.node_id == node_id, records.c.kind == "biobank"))}
    rows = conn.execute(select(combos.c.id, combos.c.biobank, combos.c.country)
                        .where(combos.c.node_id == node_id)).all()
    updates = [{"cid": r.id, "c": bb.get(r.biobank) or node_country} for r in rows
               if (bb.get(r.biobank) or node_country) != r.country]
    if updates:
        conn.execute(combos.update().where(combos.c.id == bindparam("cid"))
                     .values(country=bindparam("c")), updates)


__all__ = ["ComboIds", "apply_records", "apply_samples", "combo_key", "index_step",
           "refresh_countries"]
