"""The tally search runs: the group cube as numpy arrays, the vectorised equivalent of
`tally_reference.tally`.

`tally_reference.tally` (the reference) walks every combo row in Python; at hundreds of
thousands of combos that costs a second per search. Here each coded column is factorised
once per snapshot (an int code per row plus the list of distinct values) and multi-valued
attributes are held as CSR (row offsets + value codes). A filter is evaluated once per
*distinct value* in Python and then broadcast to the rows, so a search is a few array
passes. The result is the same `Tally` (interval sums), with the same keys inserted in the
same order (first row that contributes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catalogue.search.codes import Vocabulary
from catalogue.search.cube import FACETS, Combo, Span, Tally
from catalogue.search.filters import Filters

__all__ = ["ArrayCube", "Column", "Multi", "build", "masks", "tally"]

_SINGLE = (
    "node_id",
    "biobank",
    "collection",
    "country",
    "sample_type",
    "storage_temperature",
    "sex",
)
_RANGES = ("age_min", "age_max", "year_from", "year_to")
COUNTS = ("n_min", "n_max", "d_min", "d_max")  # the count columns, in ArrayCube order
_MULTI = ("icd", "orpha", "chapters", "use_conditions", "dataset_type")
_FACET_ATTR = {
    "sample_type": "sample_type",
    "storage_temperature": "storage_temperature",
    "sex": "sex",
    "country": "country",
    "dataset_type": "dataset_type",
    "use_conditions": "use_conditions",
    "diagnosis_chapter": "chapters",
}
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]


@dataclass
class Column:
    """A factorised single-valued column: ``values[codes[i]]`` is row i's value."""

    codes: Ints
    values: list[Any]

    def encode(self, values: Sequence[Any]) -> tuple[Ints, list[Any]]:
        """The codes of `values` and the value list extended by those not seen yet (this
        column is left as it is: searches may be reading it)."""
        known = list(self.values)
        index = {v: i for i, v in enumerate(known)}
        codes = np.fromiter(
            (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
        )
        known.extend(list(index)[len(known) :])
        return codes, known


@dataclass
class Multi:
    """A multi-valued column as CSR: row ``rows[j]`` holds ``values[codes[j]]``, in order."""

    rows: Ints
    codes: Ints
    values: list[Any]


@dataclass
class ArrayCube:
    """One snapshot of the cube in columnar form (built by `CubeCache`, then a new one per
    refresh by `tally_update.apply`). Rows whose `n_max` is 0 (every group withdrawn since
    the snapshot was built) count nowhere, as if absent."""

    size: int
    counts: dict[str, Ints]  # n_min, n_max, d_min, d_max (COUNTS) per row
    single: dict[str, Column]
    ranges: dict[str, NDArray[np.float64]]
    multi: dict[str, Multi]
    place: Ints  # row -> index into `places`
    places: list[tuple[int, str, str | None, str]]  # (node, biobank, country, collection)
    with_groups: frozenset[tuple[int, str]] = frozenset()  # (node, collection) with groups
    targets: dict[str, _Target] = field(default_factory=dict)

    def index(self) -> ArrayCube:
        """Derive what the searches read besides the columns (after building or changing)."""
        counted = np.bincount(self.place[self.counts["n_max"] > 0], minlength=len(self.places)) > 0
        self.with_groups = frozenset(
            (p[0], p[3]) for p, ok in zip(self.places, counted.tolist(), strict=True) if ok
        )
        self.targets = _targets(self)
        return self


def build(rows: Sequence[Combo]) -> ArrayCube:
    """Factorise a list of combos into arrays."""
    single = {name: _factorise([getattr(r, name) for r in rows]) for name in _SINGLE}
    ranges = {
        name: np.array(
            [np.nan if (v := getattr(r, name)) is None else v for r in rows], dtype=np.float64
        ).reshape(len(rows))
        for name in _RANGES
    }
    multi = {}
    for name in _MULTI:
        lists = [getattr(r, name) for r in rows]
        lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(rows))
        col = _factorise([v for vals in lists for v in vals])
        multi[name] = Multi(
            np.repeat(np.arange(len(rows), dtype=np.int64), lengths), col.codes, col.values
        )
    place = _factorise([(r.node_id, r.biobank, r.country, r.collection) for r in rows])
    cube = ArrayCube(
        len(rows),
        {
            name: np.fromiter((getattr(r, name) for r in rows), dtype=np.int64, count=len(rows))
            for name in COUNTS
        },
        single,
        ranges,
        multi,
        place.codes,
        place.values,
    )
    return cube.index()


def _factorise(values: list[Any]) -> Column:
    index: dict[Any, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )
    return Column(codes, list(index))


def masks(cube: ArrayCube, f: Filters, vocab: Vocabulary) -> dict[str, Bools]:
    """One row mask per given parameter, named as in `tally_reference.predicates` (and equal
    to it)."""
    lists = f.lists
    out: dict[str, Bools] = {}
    if "sample_type" in lists:
        types = frozenset(vocab.with_children("sample-type", lists["sample_type"]))
        out["sample_type"] = _single(cube.single["sample_type"], types.__contains__)
    for name in ("storage_temperature", "sex", "country", "biobank", "collection"):
        if name in lists:
            out[name] = _single(cube.single[name], frozenset(lists[name]).__contains__)
    for name, attr in (
        ("duo", "use_conditions"),
        ("dataset_type", "dataset_type"),
        ("orpha", "orpha"),
    ):
        if name in lists:
            out[name] = _any(cube, cube.multi[attr], frozenset(lists[name]).__contains__)
    if f.age_min is not None or f.age_max is not None:
        lo = f.age_min if f.age_min is not None else -1
        hi = f.age_max if f.age_max is not None else 10**6
        out["age"] = (cube.ranges["age_max"] >= lo) & (cube.ranges["age_min"] <= hi)
    if f.period_from is not None or f.period_to is not None:
        pf = f.period_from if f.period_from is not None else -1
        pt = f.period_to if f.period_to is not None else 10**6
        out["period"] = (cube.ranges["year_to"] >= pf) & (cube.ranges["year_from"] <= pt)
    if f.icd10:
        prefixes = tuple(c.prefix for c in f.icd10 if c.prefix)
        ranges = [(c.low, c.high) for c in f.icd10 if c.low and c.high]

        def icd(code: str) -> bool:
            if prefixes and code.startswith(prefixes):
                return True
            cat = code[:3]
            return any(lo <= cat <= hi for lo, hi in ranges)

        out["icd10"] = _any(cube, cube.multi["icd"], icd)
    return out


def _single(col: Column, ok: Callable[[Any], bool]) -> Bools:
    good = np.fromiter((ok(v) for v in col.values), dtype=np.bool_, count=len(col.values))
    return good[col.codes]


def _any(cube: ArrayCube, col: Multi, ok: Callable[[Any], bool]) -> Bools:
    good = np.fromiter((ok(v) for v in col.values), dtype=np.bool_, count=len(col.values))
    out = np.zeros(cube.size, dtype=np.bool_)
    out[col.rows[good[col.codes]]] = True
    return out


@dataclass
class _Target:
    """One sum of the tally over one column: entry j adds ``[lo[j], hi[j]]`` to key
    ``keys[j]`` (key index = value code * node count + node code; ``names`` decodes it)."""

    rows: Ints | None  # entry -> row, None when entries are rows
    keys: Ints
    lo: Ints
    hi: Ints
    names: list[Any]
    full: list[tuple[Any, Span]] | None = None  # the sums when every entry counts


def _targets(cube: ArrayCube) -> dict[str, _Target]:
    nodes = cube.single["node_id"]
    width = max(len(nodes.values), 1)

    def single(col: Column | None, key: Callable[[Any, int], Any]) -> _Target:
        values = col.values if col is not None else [None]
        codes = col.codes if col is not None else np.zeros(cube.size, dtype=np.int64)
        return _Target(
            None,
            codes * width + nodes.codes,
            cube.counts["n_min"],
            cube.counts["n_max"],
            [key(v, nid) for v in values for nid in nodes.values],
        )

    out = {
        "total": single(None, lambda v, nid: nid),
        "biobank": single(cube.single["biobank"], lambda v, nid: (nid, v)),
        "collection": single(cube.single["collection"], lambda v, nid: (nid, v)),
        "country": single(cube.single["country"], lambda v, nid: (v, nid)),
    }
    for facet, attr in _FACET_ATTR.items():
        if attr in cube.single:
            out[facet] = single(cube.single[attr], lambda v, nid: (v, nid))
        else:
            m = cube.multi[attr]
            out[facet] = _Target(
                m.rows,
                m.codes * width + nodes.codes[m.rows],
                cube.counts["n_min"][m.rows],
                cube.counts["n_max"][m.rows],
                [(v, nid) for v in m.values for nid in nodes.values],
            )
    return out


def tally(cube: ArrayCube, f: Filters, vocab: Vocabulary, active: set[int]) -> Tally:
    """`tally_reference.tally(rows, predicates(f, vocab), active)`, computed on arrays."""
    nodes = cube.single["node_id"]
    live = np.fromiter(
        (v in active for v in nodes.values), dtype=np.bool_, count=len(nodes.values)
    )[nodes.codes] & (cube.counts["n_max"] > 0)
    by_name = masks(cube, f, vocab)
    fails = np.zeros(cube.size, dtype=np.int8)
    for m in by_name.values():
        fails += ~m
    ok = live & (fails == 0)
    one = live & (fails == 1)
    t = Tally()
    targets = cube.targets
    _fill(t.total, targets["total"], ok)
    _fill(t.biobank, targets["biobank"], ok)
    _fill(t.collection, targets["collection"], ok)
    _fill(t.country, targets["country"], ok)
    for facet, param in FACETS.items():
        rows = ok | (one & ~by_name[param]) if param in by_name else ok
        _fill(t.facets[facet], targets[facet], rows)
    if ok.any():
        t.donors = (int(cube.counts["d_min"][ok].max()), int(cube.counts["d_max"][ok].sum()))
    return t


def _fill(sums: dict[Any, Span], target: _Target, rows: Bools) -> None:
    """Sum the intervals per key over the entries of the given rows, inserting the keys in
    order of first appearance (by row, then position in the row) as the reference loop does."""
    entries = rows if target.rows is None else rows[target.rows]
    if entries.all():
        if target.full is None:
            target.full = _sums(target, np.arange(len(target.keys), dtype=np.int64))
        sums.update(target.full)
    else:
        sums.update(_sums(target, np.flatnonzero(entries)))


def _sums(target: _Target, idx: Ints) -> list[tuple[Any, Span]]:
    if not len(idx):
        return []
    keys = target.keys[idx]
    size = len(target.names)
    lo = np.bincount(keys, weights=target.lo[idx], minlength=size)
    hi = np.bincount(keys, weights=target.hi[idx], minlength=size)
    first = np.full(size, len(idx), dtype=np.int64)
    np.minimum.at(first, keys, np.arange(len(idx), dtype=np.int64))
    seen = np.flatnonzero(first < len(idx))
    names = target.names
    order = seen[np.argsort(first[seen])]
    # whole sums (the weights are integers, exact in float64 below 2**53), converted at once
    los = lo[order].astype(np.int64).tolist()
    his = hi[order].astype(np.int64).tolist()
    return [(names[k], (a, b)) for k, a, b in zip(order.tolist(), los, his, strict=True)]
