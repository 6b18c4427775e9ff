"""The sample cube in memory: the combo rows of live samples (kept up to date by
`catalogue.search.cache.CubeCache`), and the `Tally` a search pass produces (shared by both
tally implementations).

Each combo row stands for `n` live samples with identical coded attributes (see models.py).
SQL GROUP BY per facet costs a scan per facet; one pass over the snapshot costs one scan in
all, and the snapshot is shared by every search until the next harvest step.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos

__all__ = ["FACETS", "Combo", "Predicate", "Tally", "load"]

# facet name -> the filter parameter it ignores
FACETS = {
    "sample_type": "sample_type",
    "storage_temperature": "storage_temperature",
    "sex": "sex",
    "country": "country",
    "dataset_type": "dataset_type",
    "use_conditions": "duo",
    "diagnosis_chapter": "icd10",
}


@dataclass(frozen=True, slots=True)
class Combo:
    node_id: int
    biobank: str
    collection: str
    country: str | None
    sample_type: str | None
    storage_temperature: str | None
    sex: str | None
    age_min: int | None
    age_max: int | None
    year_from: int | None
    year_to: int | None
    n: int
    icd: tuple[str, ...]
    orpha: tuple[str, ...]
    chapters: tuple[str, ...]
    use_conditions: tuple[str, ...]
    dataset_type: tuple[str, ...]


def load(
    conn: Connection, where: ColumnElement[bool] | None = None
) -> tuple[list[int], list[Combo]]:
    """The combos matching `where` (default: those counting samples) and their ids."""
    picked = select(combos.c.id).where(where) if where is not None else None
    side: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    q = select(
        combo_diagnoses.c.combo_id,
        combo_diagnoses.c.system,
        combo_diagnoses.c.code,
        combo_diagnoses.c.chapter,
    )
    if picked is not None:
        q = q.where(combo_diagnoses.c.combo_id.in_(picked))
    for cid, system, code, chapter in conn.execute(q):
        s = side[cid]
        s["icd" if system == "ICD-10" else "orpha"].append(code)
        if chapter and chapter not in s["chapters"]:
            s["chapters"].append(chapter)
    for table, name in ((combo_uses, "use_conditions"), (combo_datasets, "dataset_type")):
        q2 = select(table.c.combo_id, table.c.code)
        if picked is not None:
            q2 = q2.where(table.c.combo_id.in_(picked))
        for cid, code in conn.execute(q2):
            side[cid][name].append(code)
    ids = []
    out = []
    empty: dict[str, list[str]] = {}
    for r in conn.execute(select(combos).where(where if where is not None else combos.c.n > 0)):
        s = side.get(r.id, empty)
        ids.append(int(r.id))
        out.append(
            Combo(
                r.node_id,
                r.biobank,
                r.collection,
                r.country,
                r.sample_type,
                r.storage_temperature,
                r.sex,
                r.age_min,
                r.age_max,
                r.year_from,
                r.year_to,
                int(r.n),
                tuple(s.get("icd", ())),
                tuple(s.get("orpha", ())),
                tuple(s.get("chapters", ())),
                tuple(s.get("use_conditions", ())),
                tuple(s.get("dataset_type", ())),
            )
        )
    return ids, out


@dataclass
class Tally:
    """Sums per (value, node id); the caller applies each node's small-count protection."""

    total: Counter[int] = field(default_factory=Counter)
    biobank: Counter[tuple[int, str]] = field(default_factory=Counter)
    collection: Counter[tuple[int, str]] = field(default_factory=Counter)
    country: Counter[tuple[str | None, int]] = field(default_factory=Counter)
    facets: dict[str, Counter[tuple[Any, int]]] = field(
        default_factory=lambda: {name: Counter() for name in FACETS}
    )


Predicate = Callable[[Combo], bool]
