"""The sample cube in memory: a snapshot reloaded when the catalogue log grows, and one pass
over it that yields totals, counts and every facet ("all filters except the facet's own").

Each combo row stands for `n` live samples with identical coded attributes (see models.py).
SQL GROUP BY per facet costs a scan per facet; one Python pass over the snapshot costs one
scan in all, and the snapshot is shared by every search until the next harvest step.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from catalogue.codes import Vocabulary
from catalogue.filters import Filters
from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos, own_state

# facet name -> the filter parameter it ignores
FACETS = {"sample_type": "sample_type", "storage_temperature": "storage_temperature",
          "sex": "sex", "country": "country", "dataset_type": "dataset_type",
          "use_conditions": "duo", "diagnosis_chapter": "icd10"}
_FACET_OF = {param: facet for facet, param in FACETS.items()}


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

    def rows(self, conn: Connection) -> list[Combo]:
        version = conn.execute(select(own_state.c.size)).scalar() or 0
        with self._lock:
            if version != self._version:
                self._rows = load(conn)
                self._version = version
            return self._rows


def load(conn: Connection) -> list[Combo]:
    side: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for cid, system, code, chapter in conn.execute(select(
            combo_diagnoses.c.combo_id, combo_diagnoses.c.system, combo_diagnoses.c.code,
            combo_diagnoses.c.chapter)):
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
        out.append(Combo(r.node_id, r.biobank, r.collection, r.country, r.sample_type,
                         r.storage_temperature, r.sex, r.age_min, r.age_max, r.year_from,
                         r.year_to, int(r.n), tuple(s.get("icd", ())), tuple(s.get("orpha", ())),
                         tuple(s.get("chapters", ())), tuple(s.get("use_conditions", ())),
                         tuple(s.get("dataset_type", ()))))
    return out


@dataclass
class Tally:
    """Sums per (value, node id); the caller applies each node's small-count protection."""

    total: Counter[int] = field(default_factory=Counter)
    biobank: Counter[tuple[int, str]] = field(default_factory=Counter)
    collection: Counter[tuple[int, str]] = field(default_factory=Counter)
    country: Counter[tuple[str | None, int]] = field(default_factory=Counter)
    facets: dict[str, Counter[tuple[Any, int]]] = field(
        default_factory=lambda: {name: Counter() for name in FACETS})


Predicate = Callable[[Combo], bool]


def predicates(f: Filters, vocab: Vocabulary) -> list[tuple[str, Predicate]]:
    """One predicate per given parameter (age and period pairs count as one each)."""
    lists = f.lists
    preds: list[tuple[str, Predicate]] = []
    if "sample_type" in lists:
        types = frozenset(vocab.with_children("sample-type", lists["sample_type"]))
        preds.append(("sample_type", lambda r: r.sample_type in types))
    for name in ("storage_temperature", "sex", "country", "biobank", "collection"):
        if name in lists:
            wanted = frozenset(lists[name])
            preds.append((name, _member(name, wanted)))
    for name, attr in (("duo", "use_conditions"), ("dataset_type", "dataset_type"),
                       ("orpha", "orpha")):
        if name in lists:
            wanted = frozenset(lists[name])
            preds.append((name, _overlap(attr, wanted)))
    if f.age_min is not None or f.age_max is not None:
        lo = f.age_min if f.age_min is not None else -1
        hi = f.age_max if f.age_max is not None else 10**6
        preds.append(("age", lambda r: r.age_min is not None and r.age_max is not None
                      and r.age_max >= lo and r.age_min <= hi))
    if f.period_from is not None or f.period_to is not None:
        pf = f.period_from if f.period_from is not None else -1
        pt = f.period_to if f.period_to is not None else 10**6
        preds.append(("period", lambda r: r.year_from is not None and r.year_to is not None
                      and r.year_to >= pf and r.year_from <= pt))
    if f.icd10:
        prefixes = tuple(c.prefix for c in f.icd10 if c.prefix)
        ranges = [(c.low, c.high) for c in f.icd10 if c.low and c.high]

        def icd(r: Combo) -> bool:
            for code in r.icd:
                if prefixes and code.startswith(prefixes):
                    return True
                cat = code[:3]
                if any(lo <= cat <= hi for lo, hi in ranges):
                    return True
            return False

        preds.append(("icd10", icd))
    return preds


def _member(attr: str, wanted: frozenset[str]) -> Predicate:
    return lambda r: getattr(r, attr) in wanted


def _overlap(attr: str, wanted: frozenset[str]) -> Predicate:
    return lambda r: not wanted.isdisjoint(getattr(r, attr))


def tally(rows: list[Combo], preds: list[tuple[str, Predicate]], active: set[int]) -> Tally:
    """One pass: a row failing no filter counts everywhere; failing exactly one filter that
    has a facet, it counts in that facet only."""
    t = Tally()
    facets = t.facets
    for r in rows:
        if r.node_id not in active:
            continue
        failed: str | None = None
        for name, pred in preds:
            if not pred(r):
                if failed is not None:
                    failed = "*"
                    break
                failed = name
        if failed == "*":
            continue
        nid, n = r.node_id, r.n
        if failed is None:
            t.total[nid] += n
            t.biobank[(nid, r.biobank)] += n
            t.collection[(nid, r.collection)] += n
            t.country[(r.country, nid)] += n
            for facet in FACETS:
                _count(facets[facet], facet, r, nid, n)
        else:
            only = _FACET_OF.get(failed)
            if only is not None:
                _count(facets[only], only, r, nid, n)
    return t


def _count(counter: Counter[tuple[Any, int]], facet: str, r: Combo, nid: int, n: int) -> None:
    if facet == "diagnosis_chapter":
        for v in r.chapters:
            counter[(v, nid)] += n
    elif facet in ("use_conditions", "dataset_type"):
        for v in getattr(r, facet):
            counter[(v, nid)] += n
    else:
        counter[(getattr(r, facet), nid)] += n
