"""The sample cube in memory: the combo rows of live samples, reloaded when the catalogue log
grows, and the `Tally` a search pass produces (shared by both tally implementations).

Each combo row stands for `n` live samples with identical coded attributes (see models.py).
SQL GROUP BY per facet costs a scan per facet; one pass over the snapshot costs one scan in
all, and the snapshot is shared by every search until the next harvest step.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos, own_state

__all__ = ["FACETS", "Combo", "CubeCache", "Predicate", "Tally"]

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


class CubeCache:
    """The latest snapshot, keyed by the catalogue log size (every harvest step grows it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._rows: list[Combo] = []

    @property
    def loaded(self) -> bool:
        """Whether a snapshot has been loaded (the catalogue's readiness)."""
        return self._version >= 0

    def rows(self, conn: Connection) -> list[Combo]:
        version = conn.execute(select(own_state.c.size)).scalar() or 0
        with self._lock:
            if version != self._version:
                self._rows = load(conn)
                self._version = version
            return self._rows


def load(conn: Connection) -> list[Combo]:
    side: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for cid, system, code, chapter in conn.execute(
        select(
            combo_diagnoses.c.combo_id,
            combo_diagnoses.c.system,
            combo_diagnoses.c.code,
            combo_diagnoses.c.chapter,
        )
    ):
        s = side[cid]
        s["icd" if system == "ICD-10" else "orpha"].append(code)
        if chapter and chapter not in s["chapters"]:
            s["chapters"].append(chapter)
    for table, name in ((combo_uses, "use_conditions"), (combo_datasets, "dataset_type")):
        for cid, code in conn.execute(select(table.c.combo_id, table.c.code)):
            side[cid][name].append(code)
    out = []
    empty: dict[str, list[str]] = {}
    for r in conn.execute(select(combos).where(combos.c.n > 0)):
        s = side.get(r.id, empty)
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
    return out


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
