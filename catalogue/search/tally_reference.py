"""The reference tally: one plain-Python pass over the cube's combo rows that yields totals,
counts and every facet ("all filters except the facet's own").

Every count is an interval sum over the matching combos (samples add up; donors: the
largest lower bound and the sum of upper bounds). Search runs the vectorised
`tally_arrays.tally`; this pass is the readable definition it must equal
(tests/catalogue/test_search_equivalence.py).
"""

from __future__ import annotations

from typing import Any

from catalogue.search.codes import Vocabulary
from catalogue.search.cube import FACETS, Combo, Predicate, Span, Tally, add
from catalogue.search.filters import Filters

__all__ = ["predicates", "tally"]

_FACET_OF = {param: facet for facet, param in FACETS.items()}


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
    for name, attr in (
        ("duo", "use_conditions"),
        ("dataset_type", "dataset_type"),
        ("orpha", "orpha"),
    ):
        if name in lists:
            wanted = frozenset(lists[name])
            preds.append((name, _overlap(attr, wanted)))
    if f.age_min is not None or f.age_max is not None:
        lo = f.age_min if f.age_min is not None else -1
        hi = f.age_max if f.age_max is not None else 10**6
        preds.append(
            (
                "age",
                lambda r: (
                    r.age_min is not None
                    and r.age_max is not None
                    and r.age_max >= lo
                    and r.age_min <= hi
                ),
            )
        )
    if f.period_from is not None or f.period_to is not None:
        pf = f.period_from if f.period_from is not None else -1
        pt = f.period_to if f.period_to is not None else 10**6
        preds.append(
            (
                "period",
                lambda r: (
                    r.year_from is not None
                    and r.year_to is not None
                    and r.year_to >= pf
                    and r.year_from <= pt
                ),
            )
        )
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
    has a facet, it counts in that facet only. Rows counting no group count nowhere."""
    t = Tally()
    facets = t.facets
    d_min = d_max = 0
    for r in rows:
        if r.node_id not in active or r.n_max <= 0:
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
        nid, lo, hi = r.node_id, r.n_min, r.n_max
        if failed is None:
            add(t.total, nid, lo, hi)
            add(t.biobank, (nid, r.biobank), lo, hi)
            add(t.collection, (nid, r.collection), lo, hi)
            add(t.country, (r.country, nid), lo, hi)
            d_min = max(d_min, r.d_min)
            d_max += r.d_max
            for facet in FACETS:
                _count(facets[facet], facet, r, nid)
        else:
            only = _FACET_OF.get(failed)
            if only is not None:
                _count(facets[only], only, r, nid)
    t.donors = (d_min, d_max)
    return t


def _count(sums: dict[tuple[Any, int], Span], facet: str, r: Combo, nid: int) -> None:
    if facet == "diagnosis_chapter":
        values: tuple[Any, ...] = r.chapters
    elif facet in ("use_conditions", "dataset_type"):
        values = getattr(r, facet)
    else:
        values = (getattr(r, facet),)
    for v in values:
        add(sums, (v, nid), r.n_min, r.n_max)
