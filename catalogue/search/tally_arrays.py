"""The tally search runs: the group cube as numpy arrays, the vectorised equivalent of
`tally_reference.tally`.

`tally_reference.tally` (the reference) walks every combo row in Python; at hundreds of
thousands of combos that costs a second per search. Here the cube is held in two levels:

- the **joint level**: every attribute a count is keyed by (the place: node, biobank,
  country, collection; sample type, storage temperature, sex; the use conditions, dataset
  types and diagnosis chapters of a combo, each as one code for the whole tuple) is folded
  into one joint code per combo. Far fewer joint codes exist than combos (combos differ
  mostly by age band, period and diagnoses), and every count and facet is a sum over joint
  codes: each target (total, biobank, collection, country, every facet) maps a joint code
  to its key(s) once per snapshot;
- the **row level**: what only a combo knows (age band, period, ICD-10 and ORPHA codes, the
  counts) stays per combo.

A filter is evaluated once per distinct value (or distinct tuple) in Python and spread to
the joint codes, or to the rows for the row-level filters. A search without row-level
filters reads the per-joint-code sums kept with the snapshot and never touches a row; one
with them makes a single weighted pass over the rows into joint codes (two bins per joint
code when the ICD-10 filter is given: its facet counts the rows failing only it). Then each
target is a bincount over the joint codes. The result is the same `Tally` (interval sums)
as the reference's, as dictionaries: the order of their keys is not part of the result
(every consumer sorts).
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

__all__ = ["COUNTS", "PARTS", "ArrayCube", "Column", "build", "joint_parts", "tally"]

# the attributes folded into the joint code, in the order of `ArrayCube.parts`' columns
PARTS = (
    "place",  # (node, biobank, country, collection)
    "sample_type",
    "storage_temperature",
    "sex",
    "dataset_type",  # tuples (as published, repeats kept)
    "use_conditions",
    "chapters",
)
_PLACE, _TUPLES = 0, frozenset({"dataset_type", "use_conditions", "chapters"})
_ROWSETS = ("icd", "orpha")  # row-level tuple columns
RANGES = ("age_min", "age_max", "year_from", "year_to")
COUNTS = ("n_min", "n_max", "d_min", "d_max")  # the count columns, in ArrayCube order
# facet -> the joint part it counts (the country facet counts the place's country)
_FACET_PART = {
    "sample_type": "sample_type",
    "storage_temperature": "storage_temperature",
    "sex": "sex",
    "dataset_type": "dataset_type",
    "use_conditions": "use_conditions",
    "diagnosis_chapter": "chapters",
}
# filter parameter -> the joint part it tests (the place's field for country and ids)
_SINGLE_FILTERS = ("storage_temperature", "sex")
_PLACE_FILTERS = {"biobank": 1, "country": 2, "collection": 3}
_TUPLE_FILTERS = {"duo": "use_conditions", "dataset_type": "dataset_type"}
Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


def joint_parts(c: Combo) -> tuple[Any, ...]:
    """A combo's values of `PARTS`."""
    return (
        (c.node_id, c.biobank, c.country, c.collection),
        c.sample_type,
        c.storage_temperature,
        c.sex,
        c.dataset_type,
        c.use_conditions,
        c.chapters,
    )


@dataclass
class Column:
    """A factorised column: ``values[codes[i]]`` is row i's value."""

    codes: Ints
    values: list[Any]

    def encode(self, values: Sequence[Any]) -> tuple[Ints, list[Any]]:
        """The codes of `values` and the value list extended by those not seen yet (this
        column is left as it is: searches may be reading it)."""
        return encode(self.values, values)


def encode(known: list[Any], values: Sequence[Any]) -> tuple[Ints, list[Any]]:
    """The codes of `values` in the value list `known`, and that list extended by the
    values not in it yet (`known` itself is left as it is)."""
    index = {v: i for i, v in enumerate(known)}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )
    return codes, known + list(index)[len(known) :]


@dataclass
class _Sets:
    """The members of a tuple-valued part: tuple ``t`` holds ``elements[vals[j]]`` for the
    entries j with ``owner[j] == t``, in order, repeats kept."""

    elements: list[Any]
    vals: Ints
    owner: Ints
    lengths: Ints
    starts: Ints

    @classmethod
    def of(cls, tuples: list[tuple[Any, ...]]) -> _Sets:
        lengths = np.fromiter((len(t) for t in tuples), dtype=np.int64, count=len(tuples))
        col = _factorise([v for t in tuples for v in t])
        owner = np.repeat(np.arange(len(tuples), dtype=np.int64), lengths)
        starts = np.cumsum(lengths) - lengths
        return cls(col.values, col.codes, owner, lengths, starts)

    def any(self, ok: Callable[[Any], bool]) -> Bools:
        """Per tuple: whether some member passes `ok` (evaluated once per distinct member)."""
        good = np.fromiter((ok(v) for v in self.elements), dtype=np.bool_, count=len(self.elements))
        hit = np.bincount(self.owner[good[self.vals]], minlength=len(self.lengths))
        return np.asarray(hit > 0)


@dataclass
class ArrayCube:
    """One snapshot of the cube in columnar form (built by `build`, then a new one per
    refresh by `tally_update.apply`). Rows whose `n_max` is 0 (every group withdrawn since
    the snapshot was built) count nowhere, as if absent.

    `joint[i]` is row i's joint code, `parts[j]` the codes of joint code j's `PARTS` in
    `values`; `index` maps a tuple of part codes to its joint code (append-only, shared by
    later snapshots: `tally_update.apply` checks a code found there against `parts`)."""

    size: int
    counts: dict[str, Ints]  # n_min, n_max, d_min, d_max (COUNTS) per row
    ranges: dict[str, Floats]  # age and period bounds per row (NaN: not stated)
    rowsets: dict[str, Column]  # icd, orpha: a tuple per row
    joint: Ints
    parts: Ints  # (joint codes, len(PARTS))
    values: dict[str, list[Any]]  # per part, its distinct values
    index: dict[tuple[int, ...], int]
    with_groups: frozenset[tuple[int, str]] = frozenset()  # (node, collection) with groups
    _derived: _Derived | None = field(default=None, repr=False)

    @property
    def places(self) -> list[tuple[int, str, str | None, str]]:
        """The distinct (node, biobank, country, collection) of the combos."""
        return self.values["place"]

    def index_arrays(self) -> ArrayCube:
        """Derive what the searches read besides the columns (after building or changing)."""
        self._derived = _derive(self)
        d = self._derived
        size = len(self.parts)
        live = np.bincount(d.jrow, minlength=size + 1)[:size] > 0  # joint codes counting
        counted = np.unique(d.jcols[_PLACE][:size][live])
        places = self.places
        self.with_groups = frozenset((places[p][0], places[p][3]) for p in counted.tolist())
        return self

    @property
    def derived(self) -> _Derived:
        assert self._derived is not None, "index_arrays() not called"
        return self._derived


def build(rows: Sequence[Combo]) -> ArrayCube:
    """Factorise a list of combos into arrays."""
    n = len(rows)
    cols = [_factorise(list(vals)) for vals in zip(*map(joint_parts, rows), strict=True)] or [
        Column(np.zeros(0, dtype=np.int64), []) for _ in PARTS
    ]
    codes = np.stack([c.codes for c in cols], axis=1).reshape(n, len(PARTS))
    joint, parts = _combine(codes, [len(c.values) for c in cols])
    cube = ArrayCube(
        n,
        {
            name: np.fromiter((getattr(r, name) for r in rows), dtype=np.int64, count=n)
            for name in COUNTS
        },
        {
            name: np.array(
                [np.nan if (v := getattr(r, name)) is None else v for r in rows], dtype=np.float64
            ).reshape(n)
            for name in RANGES
        },
        {name: _factorise([getattr(r, name) for r in rows]) for name in _ROWSETS},
        joint,
        parts,
        {name: c.values for name, c in zip(PARTS, cols, strict=True)},
        {tuple(p): j for j, p in enumerate(parts.tolist())},
    )
    return cube.index_arrays()


def _factorise(values: list[Any]) -> Column:
    index: dict[Any, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )
    return Column(codes, list(index))


def _combine(codes: Ints, cards: list[int]) -> tuple[Ints, Ints]:
    """Joint codes of the rows of `codes` (one column per part, part i below cards[i]), in
    the order of the parts' codes, and the part codes of each joint code."""
    n = len(codes)
    key = np.zeros(n, dtype=np.int64)
    span = 1
    for i, card in enumerate(cards):
        card = max(card, 1)
        if span * card >= 2**62:  # renumber the keys so far densely before they overflow
            _, inverse = np.unique(key, return_inverse=True)
            key = inverse.reshape(n).astype(np.int64)
            span = int(key.max()) + 1 if n else 1
        key = key * card + codes[:, i]
        span *= card
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.reshape(n).astype(np.int64), codes[first].reshape(len(first), len(cards))


@dataclass
class _Target:
    """One sum of the tally: entry e adds the interval of joint code ``j[e]`` (of entry e
    itself when None: entries are the joint codes, the dead one included, or the places for
    a target `by_place`) to key ``keys[e]``; ``names`` decodes a key."""

    keys: Ints
    j: Ints | None
    names: list[Any]
    by_place: bool = False


# Weights: a row's samples interval as one float64 ``n_max * scale + n_min`` (scale a power
# of two above the sum of every n_min): sums stay whole numbers below 2**53, so both ends
# are exact after one bincount instead of two. Where the sums could pass 2**53 the two
# ends are kept apart: ``(n_min, n_max)``.
W = tuple[Floats, ...]


@dataclass
class _Derived:
    """What a snapshot's searches read besides the columns. Joint-level arrays have one
    entry per joint code plus a last, dead one that rows counting no group point to."""

    jrow: Ints  # row -> joint code, or the dead one when the row counts no group
    scale: float  # of the packed weights, 0: the two ends apart
    weights: W  # per row
    base: W  # per joint code: the sums over its live rows
    base_dmin: Ints  # largest d_min
    base_dmax: Floats  # sum of d_max
    jcols: list[Ints]  # per part: the part's code of each joint code (dead one: past them)
    jnode: Ints  # joint code -> index into nodes (dead one: len(nodes), never active)
    nodes: list[int]
    sets: dict[str, _Sets]  # tuple parts and row-level tuple columns
    targets: dict[str, _Target]


def _derive(cube: ArrayCube) -> _Derived:
    size = len(cube.parts)
    live = cube.counts["n_max"] > 0
    jrow = np.where(live, cube.joint, size).astype(np.int64)
    lo = cube.counts["n_min"].astype(np.float64)
    hi = cube.counts["n_max"].astype(np.float64)
    total_lo = int(cube.counts["n_min"][live].sum())
    total_hi = int(cube.counts["n_max"][live].sum())
    scale = float(2 ** total_lo.bit_length())
    if total_hi * scale + total_lo < 2**53:
        weights: W = (hi * scale + lo,)
    else:
        scale, weights = 0.0, (lo, hi)
    width = size + 1
    dmin = np.zeros(width, dtype=np.int64)
    np.maximum.at(dmin, jrow, cube.counts["d_min"])
    parts = cube.parts.reshape(size, len(PARTS))
    jcols = [
        np.append(parts[:, i], len(cube.values[name])).astype(np.int64)
        for i, name in enumerate(PARTS)
    ]
    places = cube.values["place"]
    nodes = list(dict.fromkeys(p[0] for p in places))
    node_code = {nid: i for i, nid in enumerate(nodes)}
    place_node = np.array([node_code[p[0]] for p in places] + [len(nodes)], dtype=np.int64)
    jnode = place_node[jcols[_PLACE]]
    sets = {name: _Sets.of(cube.values[name]) for name in PARTS if name in _TUPLES}
    sets.update({name: _Sets.of(cube.rowsets[name].values) for name in _ROWSETS})
    return _Derived(
        jrow,
        scale,
        weights,
        tuple(_weighted(jrow, w, width) for w in weights),
        dmin,
        _weighted(jrow, cube.counts["d_max"].astype(np.float64), width),
        jcols,
        jnode,
        nodes,
        sets,
        _targets(cube, jcols, jnode, nodes, place_node, sets),
    )


def _targets(
    cube: ArrayCube,
    jcols: list[Ints],
    jnode: Ints,
    nodes: list[int],
    place_node: Ints,
    sets: dict[str, _Sets],
) -> dict[str, _Target]:
    """The targets' keys. The dead joint code and place (never counted: their weights are
    0) get a key past the names."""
    width = max(len(nodes), 1)
    places = cube.values["place"]

    def by_place(key: Callable[[tuple[int, str, str | None, str]], Any]) -> _Target:
        codes, names = encode([], [key(p) for p in places])
        return _Target(np.append(codes, len(names)), None, names, by_place=True)

    out = {
        "total": _Target(place_node, None, nodes, by_place=True),
        "biobank": by_place(lambda p: (p[0], p[1])),
        "collection": by_place(lambda p: (p[0], p[3])),
        "country": by_place(lambda p: (p[2], p[0])),
    }
    for facet, part in _FACET_PART.items():
        at = PARTS.index(part)
        values = cube.values[part]
        if part not in _TUPLES:
            names = [(v, nid) for v in values for nid in nodes]
            out[facet] = _Target(jcols[at] * width + jnode, None, names)
            continue
        s = sets[part]
        jset = jcols[at][: len(cube.parts)]
        counts = s.lengths[jset] if len(s.lengths) else np.zeros(len(jset), dtype=np.int64)
        j = np.repeat(np.arange(len(jset), dtype=np.int64), counts)
        total = int(counts.sum())
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        member = s.vals[np.repeat(s.starts[jset] if len(jset) else jset, counts) + offsets]
        names = [(v, nid) for v in s.elements for nid in nodes]
        out[facet] = _Target(member * width + jnode[j], j, names)
    return out


def tally(cube: ArrayCube, f: Filters, vocab: Vocabulary, active: set[int]) -> Tally:
    """`tally_reference.tally(rows, predicates(f, vocab), active)`, computed on arrays."""
    d = cube.derived
    joint, rows = _masks(cube, f, vocab)
    node_ok = np.fromiter((nid in active for nid in d.nodes), dtype=np.bool_, count=len(d.nodes))
    jlive = np.append(node_ok, False)[d.jnode]
    fails = np.zeros(len(jlive), dtype=np.int8)
    for m in joint.values():
        fails += ~m
    ok = jlive & (fails == 0)
    icd = rows.pop("icd10", None)
    s0: W
    s1: W | None = None  # the rows failing only the ICD-10 filter
    if not rows and icd is None:
        s0 = d.base
        donors = _donors(d.base_dmin[ok], d.base_dmax[ok])
    else:
        passing = None
        for m in rows.values():
            passing = m if passing is None else passing & m
        weights = d.weights if passing is None else tuple(w * passing for w in d.weights)
        width = len(jlive)
        if icd is None:
            s0 = tuple(_weighted(d.jrow, w, width) for w in weights)
        else:  # two bins per joint code: passing the ICD-10 filter, failing only it
            key = d.jrow * 2 + ~icd
            both = [_weighted(key, w, 2 * width) for w in weights]
            s0 = tuple(b[0::2] for b in both)
            s1 = tuple(b[1::2] for b in both)
            passing = icd if passing is None else passing & icd
        counted = ok[d.jrow] if passing is None else ok[d.jrow] & passing
        at = np.flatnonzero(counted)
        donors = _donors(cube.counts["d_min"][at], cube.counts["d_max"][at])
    t = Tally(donors=donors)
    targets = d.targets
    place = d.jcols[_PLACE]
    places = len(cube.places) + 1
    matched = tuple(w * ok for w in s0)
    per_place = tuple(_weighted(place, w, places) for w in matched)
    t.total = _sums(d, targets["total"], per_place)
    t.biobank = _sums(d, targets["biobank"], per_place)
    t.collection = _sums(d, targets["collection"], per_place)
    t.country = _sums(d, targets["country"], per_place)
    for facet, param in FACETS.items():
        target = targets["country" if facet == "country" else facet]
        if param in joint:  # every filter but its own
            mine = jlive & (fails == ~joint[param])
            weights = tuple(w * mine for w in s0)
        elif param == "icd10" and s1 is not None:
            weights = tuple((a + b) * ok for a, b in zip(s0, s1, strict=True))
        elif target.by_place:
            t.facets[facet] = _sums(d, target, per_place)
            continue
        else:
            weights = matched
        if target.by_place:
            weights = tuple(_weighted(place, w, places) for w in weights)
        t.facets[facet] = _sums(d, target, weights)
    return t


def _weighted(keys: Ints, weights: Floats, size: int) -> Floats:
    """The sum of `weights` per key (keys below `size`, or the weights are 0 past it)."""
    return np.bincount(keys, weights=weights, minlength=size).astype(np.float64, copy=False)


def _donors(d_min: NDArray[Any], d_max: NDArray[Any]) -> Span:
    if not len(d_min):
        return 0, 0
    return int(d_min.max()), int(round(float(d_max.sum())))


def _sums(d: _Derived, target: _Target, weights: W) -> dict[Any, Span]:
    """The interval sums per key of the given per-joint-code (or per-place) sums: a key is
    present when a counted row has it (every counted row has n_max > 0)."""
    if target.j is not None:
        weights = tuple(w[target.j] for w in weights)
    size = len(target.names)
    sums = [_weighted(target.keys, w, size) for w in weights]
    if d.scale:
        keys = np.flatnonzero(sums[0] >= d.scale)  # n_max >= 1
        packed = sums[0][keys]
        his = np.floor(packed / d.scale)  # exact: whole numbers, a power of two
        los = packed - his * d.scale
    else:
        keys = np.flatnonzero(sums[1] > 0)
        los, his = sums[0][keys], sums[1][keys]
    names = target.names
    return {
        names[k]: (a, b)
        for k, a, b in zip(
            keys.tolist(), los.astype(np.int64).tolist(), his.astype(np.int64).tolist(), strict=True
        )
    }


def _masks(
    cube: ArrayCube, f: Filters, vocab: Vocabulary
) -> tuple[dict[str, Bools], dict[str, Bools]]:
    """One mask per given parameter, named as in `tally_reference.predicates` (and equal to
    it): over the joint codes for the attributes folded into them, over the rows for the
    others (age, period, ICD-10, ORPHA)."""
    d = cube.derived
    lists = f.lists
    joint: dict[str, Bools] = {}
    rows: dict[str, Bools] = {}

    def part(name: str, ok: Callable[[Any], bool]) -> Bools:
        values = cube.values[name]
        good = np.fromiter((ok(v) for v in values), dtype=np.bool_, count=len(values))
        return np.append(good, False)[d.jcols[PARTS.index(name)]]  # the dead one: False

    if "sample_type" in lists:
        types = frozenset(vocab.with_children("sample-type", lists["sample_type"]))
        joint["sample_type"] = part("sample_type", types.__contains__)
    for name in _SINGLE_FILTERS:
        if name in lists:
            joint[name] = part(name, frozenset(lists[name]).__contains__)
    for name, field_at in _PLACE_FILTERS.items():
        if name in lists:
            joint[name] = part("place", _field_in(field_at, frozenset(lists[name])))
    for name, attr in _TUPLE_FILTERS.items():
        if name in lists:
            good = d.sets[attr].any(frozenset(lists[name]).__contains__)
            joint[name] = np.append(good, False)[d.jcols[PARTS.index(attr)]]
    if "orpha" in lists:
        good = d.sets["orpha"].any(frozenset(lists["orpha"]).__contains__)
        rows["orpha"] = good[cube.rowsets["orpha"].codes]
    if f.age_min is not None or f.age_max is not None:
        lo = f.age_min if f.age_min is not None else -1
        hi = f.age_max if f.age_max is not None else 10**6
        rows["age"] = (cube.ranges["age_max"] >= lo) & (cube.ranges["age_min"] <= hi)
    if f.period_from is not None or f.period_to is not None:
        pf = f.period_from if f.period_from is not None else -1
        pt = f.period_to if f.period_to is not None else 10**6
        rows["period"] = (cube.ranges["year_to"] >= pf) & (cube.ranges["year_from"] <= pt)
    if f.icd10:
        prefixes = tuple(c.prefix for c in f.icd10 if c.prefix)
        ranges = [(c.low, c.high) for c in f.icd10 if c.low and c.high]

        def icd(code: str) -> bool:
            if prefixes and code.startswith(prefixes):
                return True
            cat = code[:3]
            return any(lo <= cat <= hi for lo, hi in ranges)

        rows["icd10"] = d.sets["icd"].any(icd)[cube.rowsets["icd"].codes]
    return joint, rows


def _field_in(at: int, wanted: frozenset[str]) -> Callable[[tuple[Any, ...]], bool]:
    return lambda place: place[at] in wanted
