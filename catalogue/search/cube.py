"""The group cube in memory: the combo rows of live sample groups (kept up to date by
`catalogue.search.cache.CubeCache`), and the `Tally` a search pass produces (shared by both
tally implementations).

Each combo row stands for the live groups with identical coded attributes (see models.py):
between `n_min` and `n_max` samples of between `d_min` and `d_max` donors.
SQL GROUP BY per facet costs a scan per facet; one pass over the snapshot costs one scan in
all, and the snapshot is shared by every search until the next harvest step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos

__all__ = ["FACETS", "Combo", "Predicate", "Span", "Tally", "add", "load"]

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
    n_min: int
    n_max: int
    d_min: int
    d_max: int
    icd: tuple[str, ...]
    orpha: tuple[str, ...]
    chapters: tuple[str, ...]
    use_conditions: tuple[str, ...]
    dataset_type: tuple[str, ...]


def load(
    conn: Connection, where: ColumnElement[bool] | None = None
) -> tuple[list[int], list[Combo]]:
    """The combos matching `where` (default: those counting some group) and their ids."""
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
    for r in conn.execute(select(combos).where(where if where is not None else combos.c.n_max > 0)):
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
                int(r.n_min),
                int(r.n_max),
                int(r.d_min),
                int(r.d_max),
                tuple(s.get("icd", ())),
                tuple(s.get("orpha", ())),
                tuple(s.get("chapters", ())),
                tuple(s.get("use_conditions", ())),
                tuple(s.get("dataset_type", ())),
            )
        )
    return ids, out


Span = tuple[int, int]  # an interval of counts: (min, max)


def add(sums: dict[Any, Span], key: Any, lo: int, hi: int) -> None:
    """Add the interval [lo, hi] to ``sums[key]`` (interval sum)."""
    old = sums.get(key)
    sums[key] = (lo, hi) if old is None else (old[0] + lo, old[1] + hi)


@dataclass
class Tally:
    """Sample interval sums per (value, node id) over the matching groups; `donors` is the
    donor interval of all of them (largest lower bound, sum of upper bounds)."""

    total: dict[int, Span] = field(default_factory=dict)
    biobank: dict[tuple[int, str], Span] = field(default_factory=dict)
    collection: dict[tuple[int, str], Span] = field(default_factory=dict)
    country: dict[tuple[str | None, int], Span] = field(default_factory=dict)
    facets: dict[str, dict[tuple[Any, int], Span]] = field(
        default_factory=lambda: {name: {} for name in FACETS}
    )
    donors: Span = (0, 0)


Predicate = Callable[[Combo], bool]
