"""The group cube in memory: the combo rows of live sample groups (kept up to date by
`catalogue.search.cache.CubeCache`), and the `Tally` a search pass produces (shared by both
tally implementations).

Each combo row stands for the live groups with identical coded attributes (see models.py):
between `n_min` and `n_max` samples of between `d_min` and `d_max` donors.
SQL GROUP BY per facet costs a scan per facet; one pass over the snapshot costs one scan in
all, and the snapshot is shared by every search until the next harvest step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, select

from catalogue.models import combos

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
    ids = []
    out = []
    loads = orjson.loads
    none: tuple[str, ...] = ()
    q = select(*(combos.c[name] for name in _COLUMNS))
    for r in conn.execute(q.where(where if where is not None else combos.c.n_max > 0)):
        icd: tuple[str, ...] = none
        orpha: tuple[str, ...] = none
        chapters: tuple[str, ...] = none
        if r[16] is not None:  # [system, code, code3, chapter], sorted by system and code
            diagnoses = loads(r[16])
            icd = tuple([d[1] for d in diagnoses if d[0] == "ICD-10"])
            orpha = tuple([d[1] for d in diagnoses if d[0] != "ICD-10"])
            chapters = tuple(dict.fromkeys([d[3] for d in diagnoses if d[3]]))
        ids.append(int(r[0]))
        out.append(
            Combo(
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                int(r[12]),
                int(r[13]),
                int(r[14]),
                int(r[15]),
                icd,
                orpha,
                chapters,
                tuple(loads(r[17])) if r[17] is not None else none,
                tuple(loads(r[18])) if r[18] is not None else none,
            )
        )
    return ids, out


# what `load` reads of a combo, in this order
_COLUMNS = (
    "id",
    "node_id",
    "biobank",
    "collection",
    "country",
    "sample_type",
    "storage_temperature",
    "sex",
    "age_min",
    "age_max",
    "year_from",
    "year_to",
    "n_min",
    "n_max",
    "d_min",
    "d_max",
    "diagnoses",
    "use_conditions",
    "dataset_types",
)

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
