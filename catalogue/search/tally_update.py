"""Apply changed combos to an `ArrayCube`: a new snapshot, the old one left as searches see it.

A harvest step changes a combo's counts (and, when a biobank record changes, its `country`)
and adds combos; nothing else of a combo ever changes (its key is the rest). So a refresh
sets the counts and the joint code of the changed rows (their place holds the country) and
appends the new ones: the columns are copied as arrays (no Python pass over the rows) and
only the changes are encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from catalogue.search.cube import Combo
from catalogue.search.tally_arrays import (
    _PLACE,
    _ROWSETS,
    COUNTS,
    PARTS,
    RANGES,
    ArrayCube,
    Column,
    encode,
    joint_parts,
)

__all__ = ["apply"]


def apply(cube: ArrayCube, changed: Sequence[tuple[int, Combo]], new: Sequence[Combo]) -> ArrayCube:
    """The cube with rows ``changed`` (row, combo: only the counts and `country` differ from
    the row's) updated and the combos ``new`` appended as rows ``cube.size ...``."""
    rows = [p for p, _c in changed]
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
        for name in RANGES
    }
    rowsets = {}
    for name in _ROWSETS:
        col = cube.rowsets[name]
        codes, known = col.encode([getattr(c, name) for c in new])
        rowsets[name] = Column(np.concatenate([col.codes, codes]), known)
    counts = {}
    for name in COUNTS:
        counts[name] = np.concatenate(
            [
                cube.counts[name],
                np.fromiter((getattr(c, name) for c in new), dtype=np.int64, count=len(new)),
            ]
        )
        counts[name][rows] = [getattr(c, name) for _p, c in changed]
    # the part codes of the new rows, then of the changed ones (their joint code's, with the
    # place they have now)
    values = dict(cube.values)
    new_parts = np.zeros((len(new), len(PARTS)), dtype=np.int64)
    if new:
        for i, vals in enumerate(zip(*map(joint_parts, new), strict=True)):
            new_parts[:, i], values[PARTS[i]] = encode(values[PARTS[i]], vals)
    place_codes, values["place"] = encode(
        values["place"], [(c.node_id, c.biobank, c.country, c.collection) for _p, c in changed]
    )
    changed_parts = cube.parts[cube.joint[rows]].reshape(len(rows), len(PARTS))
    changed_parts[:, _PLACE] = place_codes
    parts_list = [cube.parts]
    index = cube.index
    extra: list[tuple[int, ...]] = []
    size = len(cube.parts)

    def code(key: tuple[int, ...]) -> int:
        j = index.get(key)
        if j is not None:  # checked: a refresh that failed may have left a code behind
            if j < size and tuple(cube.parts[j].tolist()) == key:
                return j
            if size <= j < size + len(extra) and extra[j - size] == key:
                return j
        j = size + len(extra)
        extra.append(key)
        index[key] = j
        return j

    new_joint = np.fromiter(map(code, map(tuple, new_parts.tolist())), np.int64, len(new))
    changed_joint = np.fromiter(map(code, map(tuple, changed_parts.tolist())), np.int64, len(rows))
    if extra:
        parts_list.append(np.array(extra, dtype=np.int64).reshape(len(extra), len(PARTS)))
    joint = np.concatenate([cube.joint, new_joint])
    joint[rows] = changed_joint
    return ArrayCube(
        cube.size + len(new),
        counts,
        ranges,
        rowsets,
        joint,
        np.concatenate(parts_list),
        values,
        index,
    ).index_arrays()
