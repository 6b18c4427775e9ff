"""Apply changed combos to an `ArrayCube`: a new snapshot, the old one left as searches see it.

A harvest step changes a combo's counts (and, when a biobank record changes, its `country`)
and adds combos; nothing else of a combo ever changes (its key is the rest). So a refresh
sets the counts, `country` and the place of the changed rows and appends the new ones: the
columns are copied as arrays (no Python pass over the rows) and only the changes are encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from catalogue.search.cube import Combo
from catalogue.search.tally_arrays import (
    _MULTI,
    _RANGES,
    _SINGLE,
    COUNTS,
    ArrayCube,
    Column,
    Multi,
)

__all__ = ["apply"]


def apply(cube: ArrayCube, changed: Sequence[tuple[int, Combo]], new: Sequence[Combo]) -> ArrayCube:
    """The cube with rows ``changed`` (row, combo: only the counts and `country` differ from
    the row's) updated and the combos ``new`` appended as rows ``cube.size ...``."""
    rows = [p for p, _c in changed]
    single = {}
    for name in _SINGLE:
        col = cube.single[name]
        update = name == "country" and rows
        if not new and not update:
            single[name] = col
            continue
        values = [getattr(c, name) for c in new]
        if update:
            values += [c.country for _p, c in changed]
        codes, known = col.encode(values)
        out = np.concatenate([col.codes, codes[: len(new)]])
        if update:
            out[rows] = codes[len(new) :]
        single[name] = Column(out, known)
    ranges = {
        name: np.concatenate(
            [
                cube.ranges[name],
                np.array(
                    [np.nan if (v := getattr(c, name)) is None else v for c in new],
                    dtype=np.float64,
                ).reshape(len(new)),
            ]
        )
        for name in _RANGES
    }
    multi = {}
    for name in _MULTI:
        m = cube.multi[name]
        lists = [getattr(c, name) for c in new]
        if not any(lists):
            multi[name] = m
            continue
        lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(new))
        codes, known = Column(m.codes, m.values).encode([v for vals in lists for v in vals])
        at = np.repeat(np.arange(cube.size, cube.size + len(new), dtype=np.int64), lengths)
        multi[name] = Multi(np.concatenate([m.rows, at]), np.concatenate([m.codes, codes]), known)
    place_values = [(c.node_id, c.biobank, c.country, c.collection) for c in new]
    place_values += [(c.node_id, c.biobank, c.country, c.collection) for _p, c in changed]
    codes, places = Column(cube.place, cube.places).encode(place_values)
    place = np.concatenate([cube.place, codes[: len(new)]])
    place[rows] = codes[len(new) :]
    counts = {}
    for name in COUNTS:
        counts[name] = np.concatenate(
            [
                cube.counts[name],
                np.fromiter((getattr(c, name) for c in new), dtype=np.int64, count=len(new)),
            ]
        )
        counts[name][rows] = [getattr(c, name) for _p, c in changed]
    return ArrayCube(cube.size + len(new), counts, single, ranges, multi, place, places).index()
