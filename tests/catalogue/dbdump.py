"""A logical dump of the catalogue database for before/after comparisons (no volatile times)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, select

from catalogue.models import (
    alerts,
    combos,
    leaves,
    nodes,
    own_leaves,
    records,
    rejections,
    sample_groups,
)

# Columns that record when or how an attempt went, not what was verified.
VOLATILE = {
    "last_attempt_at",
    "last_success_at",
    "last_error",
    "remote_size",
    "withholding_since",
    "verified_at",
    "enrolled_at",
    "created_at",
    "state",
}


def key_of_row(r: Any) -> tuple[Any, ...]:
    """The key (`harvest.index.combo_key`) of a combo rebuilt from its row's columns (the lists
    from their JSON arrays, a diagnosis as its system and code)."""
    return (
        r.biobank,
        r.collection,
        r.sample_type,
        r.storage_temperature,
        r.sex,
        r.age_min,
        r.age_max,
        r.year_from,
        r.year_to,
        tuple(tuple(d[:2]) for d in orjson.loads(r.diagnoses or "[]")),
        tuple(orjson.loads(r.use_conditions or "[]")),
        tuple(orjson.loads(r.dataset_types or "[]")),
    )


def dump(engine: Engine, *, keep_state: bool = False) -> dict[str, Any]:
    """Every verified fact, independent of row ids and timestamps."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        origin = {r.id: r.origin for r in conn.execute(select(nodes.c.id, nodes.c.origin))}
        out["nodes"] = sorted(
            tuple(
                (k, v)
                for k, v in r._mapping.items()
                if k != "id" and (k not in VOLATILE or (keep_state and k == "state"))
            )
            for r in conn.execute(select(nodes))
        )
        out["leaves"] = sorted(
            (origin[r.node_id], r.idx, bytes(r.leaf), r.content)
            for r in conn.execute(select(leaves))
        )
        out["records"] = sorted(
            (origin[r.node_id], r.kind, r.record_id, r.idx, r.content)
            for r in conn.execute(select(records))
        )
        combo_of = {}
        for r in conn.execute(select(combos)):
            combo_of[r.id] = (origin[r.node_id], bytes(r.khash))
        out["combos"] = sorted(
            (
                origin[r.node_id],
                bytes(r.khash),
                r.country,
                (int(r.n_min), int(r.n_max), int(r.d_min), int(r.d_max)),
                (r.diagnoses, r.use_conditions, r.dataset_types),
            )
            for r in conn.execute(select(combos))
        )
        out["groups"] = sorted(
            (
                origin[r.node_id],
                r.group_id,
                r.idx,
                combo_of[r.combo_id],
                (r.s_min, r.s_max, r.d_min, r.d_max),
            )
            for r in conn.execute(select(sample_groups))
        )
        out["rejections"] = sorted(
            (origin[r.node_id], r.idx, r.record_id, r.problems)
            for r in conn.execute(select(rejections))
        )
        out["alerts"] = sorted(
            (origin[r.node_id], r.kind, r.old_checkpoint, r.new_checkpoint)
            for r in conn.execute(select(alerts))
        )
        own = []
        for r in conn.execute(select(own_leaves).order_by(own_leaves.c.idx)):
            entry = orjson.loads(r.leaf)
            entry.pop("time")
            own.append(entry)
        out["own_log"] = own
    return out
