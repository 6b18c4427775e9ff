"""The catalogue's live state recomputed from node logs: live records and interval sums.

A live sample group counts as the intervals its record publishes: an exact count ``n`` is
``[n, n]``, a bound ``{"lt": B}`` is ``[1, B - 1]`` (a published group is not empty).
Samples add up across groups: ``[sum lo, sum hi]``. Donors do not (one donor can be in
several groups): ``[max lo, sum hi]``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

NO_GROUP = -1  # a live group whose content is missing or invalid: not in the index
GROUP = "sample-group"

Interval = tuple[int, int]


def _chapters() -> list[tuple[str, str, str]]:
    raw = json.loads(
        resources.files("schemas").joinpath("codelists/icd10-chapter.json").read_text("utf-8")
    )
    out = []
    for code in raw["codes"]:
        low, high = str(code["range"]).split("-")
        out.append((low, high, str(code["code"])))
    return out


SETS = 4_096  # code lists remembered by `Chapters.code_set`


class Chapters:
    """ICD-10 chapter of a code by its 3-character category, from the shipped code list."""

    def __init__(self) -> None:
        self.ranges = _chapters()
        self.cache: dict[str, str | None] = {}
        self.sets: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def of(self, code: str) -> str | None:
        cat = code[:3]
        if cat not in self.cache:
            self.cache[cat] = next(
                (ch for low, high, ch in self.ranges if low <= cat <= high), None
            )
        return self.cache[cat]

    def code_set(self, codes: list[Any] | None) -> tuple[Any, ...]:
        """`tuple(sorted(set(codes or ())))`, remembered per list (at most `SETS` lists)."""
        if not codes:
            return ()
        seen = tuple(codes)
        found = self.sets.get(seen)
        if found is None:
            if len(self.sets) >= SETS:
                self.sets.clear()
            found = self.sets[seen] = tuple(sorted(set(codes)))
        return found


def bounds(count: Any) -> Interval:
    """The interval a published count says: ``n`` -> [n, n]; ``{"lt": B}`` -> [1, B - 1]."""
    if isinstance(count, dict):
        return 1, int(count["lt"]) - 1
    return int(count), int(count)


def combo_key(g: dict[str, Any], chapters: Chapters) -> tuple[Any, ...]:
    """The attributes of a valid group that the search counts by."""
    found = {
        chapters.of(d["code"]) for d in g.get("diagnoses") or () if d.get("system") == "ICD-10"
    }
    return (
        g.get("biobank"),
        g.get("collection"),
        g.get("sample_type"),
        g.get("storage_temperature"),
        g.get("sex"),
        tuple(sorted(c for c in found if c)),
        tuple(sorted(set(g.get("use_conditions") or ()))),
        tuple(sorted(set(g.get("dataset_types") or ()))),
    )


def group_key(g: dict[str, Any], chapters: Chapters) -> tuple[Any, ...]:
    """A valid group's interned key: its `combo_key` plus samples (lo, hi) and donors (lo, hi).

    The same tuple as `(*combo_key(g), *bounds(samples), *bounds(donors))`, built without the
    generic calls, and with each code list's sorted set remembered (a log repeats a few lists):
    this runs once for nearly every leaf of an audit."""
    get = g.get
    diagnoses = get("diagnoses")
    chs: tuple[str, ...] = ()
    if diagnoses:
        found = set()
        of = chapters.of
        for d in diagnoses:
            if d.get("system") == "ICD-10":
                chapter = of(d["code"])
                if chapter:
                    found.add(chapter)
        chs = tuple(sorted(found))
    return (
        get("biobank"),
        get("collection"),
        get("sample_type"),
        get("storage_temperature"),
        get("sex"),
        chs,
        chapters.code_set(get("use_conditions")),
        chapters.code_set(get("dataset_types")),
        *bounds(g["samples"]),
        *bounds(g["donors"]),
    )


def impossible_counts(g: dict[str, Any]) -> str | None:
    """Why a schema-valid group cannot be counted (exact samples below exact donors), or None."""
    samples, donors = g.get("samples"), g.get("donors")
    if isinstance(samples, int) and isinstance(donors, int) and samples < donors:
        return f"exact samples {samples} below exact donors {donors}"
    return None


@dataclass
class NodeLive:
    """Live records of one node; groups kept small, as an interned `group_key`."""

    origin: str
    country: str
    chapters: Chapters
    groups: dict[str, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict)
    others: dict[tuple[str, str], tuple[Any, int, tuple[int, ...]]] = field(default_factory=dict)
    keys: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def intern(self, key: tuple[Any, ...]) -> int:
        """The number of a `group_key` in this node (numbered as first seen)."""
        found = self.keys.get(key)
        if found is None:
            found = self.keys[key] = len(self.keys)
        return found

    def publish(
        self, kind: str, rid: str, index: int, content: dict[str, Any] | None, *, has_content: bool
    ) -> None:
        """A publish entry; `content` is None when missing or rejected (kept out of the index).
        A newer publish of the same id replaces the older one."""
        if kind == GROUP:
            key = None if content is None else group_key(content, self.chapters)
            self.publish_group(rid, index, key, has_content=has_content)
        else:
            prev = self.others.get((kind, rid))
            kept = (prev[2] if prev else ()) + ((index,) if has_content else ())
            self.others[(kind, rid)] = (content, index, kept)

    def publish_group(
        self, rid: str, index: int, key: tuple[Any, ...] | None, *, has_content: bool
    ) -> None:
        """A group publish by its `group_key` (None when its content is missing or rejected)."""
        old = self.groups.get(rid)
        kept = (old[2] if old else ()) + ((index,) if has_content else ())
        self.groups[rid] = (NO_GROUP if key is None else self.intern(key), index, kept)

    def withdraw(self, kind: str, rid: str) -> tuple[int, ...]:
        """A withdraw entry; returns the leaves whose content was served for the record."""
        old = self.groups.pop(rid, None) if kind == GROUP else self.others.pop((kind, rid), None)
        return old[2] if old else ()

    def missing_content(self) -> list[tuple[str, str, int]]:
        """Live records whose latest publish has no content served: (kind, id, leaf)."""
        out = [
            (GROUP, rid, idx)
            for rid, (key, idx, kept) in self.groups.items()
            if key == NO_GROUP and (not kept or kept[-1] != idx)
        ]
        out += [
            (kind, rid, idx)
            for (kind, rid), (content, idx, kept) in self.others.items()
            if content is None and (not kept or kept[-1] != idx)
        ]
        return out


class Row(NamedTuple):
    """`times` live groups of one node with the same `group_key`, and their country."""

    origin: str
    country: str
    key: tuple[Any, ...]
    times: int

    def value(self, param: str) -> Any:
        """The row's value for a filter the auditor asks (`FILTERS`)."""
        return self.country if param == "country" else self.key[4]


# the search filters the auditor asks; each has a facet of its name that ignores it
FILTERS = ("country", "sex")


def rows(live: NodeLive) -> list[Row]:
    """A node's live groups with valid content, as rows (country: its biobank record's, else
    the node's)."""
    per_key: Counter[int] = Counter(key for key, _i, _k in live.groups.values() if key != NO_GROUP)
    countries = {
        rid: (content or {}).get("country")
        for (kind, rid), (content, _i, _k) in live.others.items()
        if kind == "biobank"
    }
    keys = {kid: key for key, kid in live.keys.items()}
    return [
        Row(live.origin, countries.get(keys[kid][0]) or live.country, keys[kid], times)
        for kid, times in per_key.items()
    ]


@dataclass
class Sums:
    """Interval sums per code: [sum of lower bounds, sum of upper bounds]."""

    lo: Counter[Any] = field(default_factory=Counter)
    hi: Counter[Any] = field(default_factory=Counter)

    def add(self, code: Any, lo: int, hi: int) -> None:
        self.lo[code] += lo
        self.hi[code] += hi

    def get(self, code: Any) -> Interval:
        return self.lo.get(code, 0), self.hi.get(code, 0)

    def codes(self) -> set[Any]:
        return set(self.hi)

    def merge(self, other: Sums) -> None:
        """Add `other`'s sums (a code with zero sums stays listed, as `add` leaves it)."""
        for code, lo in other.lo.items():
            self.lo[code] += lo
        for code, hi in other.hi.items():
            self.hi[code] += hi


FACETS = (
    "sample_type",
    "storage_temperature",
    "sex",
    "country",
    "dataset_type",
    "use_conditions",
    "diagnosis_chapter",
)


def _facet_codes(row: Row) -> list[tuple[str, Any]]:
    _bb, _col, stype, temp, sex, chapters, uses, dtypes = row.key[:8]
    out = [
        ("sample_type", stype),
        ("storage_temperature", temp),
        ("sex", sex),
        ("country", row.country),
    ]
    out += [("diagnosis_chapter", c) for c in chapters]
    out += [("use_conditions", c) for c in uses]
    out += [("dataset_type", c) for c in dtypes]
    return [(name, code) for name, code in out if code is not None]


@dataclass
class Tally:
    """Interval sums over the live groups of active nodes, shaped like the /v1/search answer."""

    rows: list[Row] = field(default_factory=list)
    groups: int = 0
    samples: Interval = (0, 0)
    donors: Interval = (0, 0)
    counts: dict[str, Sums] = field(
        default_factory=lambda: {name: Sums() for name in ("country", "biobank", "collection")}
    )
    facets: dict[str, Sums] = field(default_factory=lambda: {name: Sums() for name in FACETS})
    # per (node origin, record id): the samples of a biobank's or a collection's groups
    biobanks: dict[tuple[str, str], Interval] = field(default_factory=dict)
    collections: dict[tuple[str, str], Interval] = field(default_factory=dict)
    # live collection records with valid content, per (node origin, collection id)
    collection_records: set[tuple[str, str]] = field(default_factory=set)
    # their content, and the live biobank records (node origin, biobank id)
    collection_contents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    biobank_records: set[tuple[str, str]] = field(default_factory=set)
    # per (country, sex) of `FILTERS`, as `Row.value` reads them: the sums of its rows
    _cells: dict[tuple[Any, ...], Tally] = field(default_factory=dict, repr=False, compare=False)

    def add(self, live: NodeLive) -> None:
        """Add one node's live groups and biobank and collection records."""
        for (kind, rid), (content, _i, _k) in live.others.items():
            if content is None:
                continue
            if kind == "collection":
                self.collection_records.add((live.origin, rid))
                self.collection_contents[live.origin, rid] = content
            elif kind == "biobank":
                self.biobank_records.add((live.origin, rid))
        cells = self._cells
        per_cell: dict[tuple[Any, Any], list[Row]] = {}
        for row in rows(live):
            self.rows.append(row)
            per_cell.setdefault((row.country, row.key[4]), []).append(row)
        for where, cell_rows in per_cell.items():
            cell = cells.get(where)
            if cell is None:
                cell = cells[where] = Tally()
            cell._count_rows(cell_rows)
        # the unfiltered sums: every cell's (each row is counted once, in its cell)
        self.groups, self.samples, self.donors = 0, (0, 0), (0, 0)
        self.counts = {name: Sums() for name in self.counts}
        self.facets = {name: Sums() for name in self.facets}
        self.biobanks, self.collections = {}, {}
        for cell in cells.values():
            self._merge(cell)

    def filtered(self, query: dict[str, str]) -> Tally:
        """The sums of a search with one value per `FILTERS` parameter: a row failing no
        filter counts everywhere; failing exactly one, it counts in that one's facet only.

        Rows with the same filter values (country, sex) count alike, so each such cell is
        summed once (by `add`) and a search merges the cells' sums (interval sums are
        associative): `filtered_by_rows` gives the same, row by row."""
        out = Tally()
        for cell, sums in self._cells.items():
            country, sex = cell  # as `Row.value` reads them
            failed = [
                p for p, want in query.items() if (country if p == "country" else sex) != want
            ]
            if not failed:
                out._merge(sums)
            elif len(failed) == 1:
                out.facets[failed[0]].merge(sums.facets[failed[0]])
        return out

    def _merge(self, other: Tally) -> None:
        """Add every count of `other` (no rows)."""
        self.groups += other.groups
        self.samples = (self.samples[0] + other.samples[0], self.samples[1] + other.samples[1])
        self.donors = (max(self.donors[0], other.donors[0]), self.donors[1] + other.donors[1])
        for name, sums in other.counts.items():
            self.counts[name].merge(sums)
        for name, sums in other.facets.items():
            self.facets[name].merge(sums)
        for table, more in ((self.biobanks, other.biobanks), (self.collections, other.collections)):
            for key, (lo, hi) in more.items():
                old = table.get(key, (0, 0))
                table[key] = (old[0] + lo, old[1] + hi)

    def filtered_by_rows(self, query: dict[str, str]) -> Tally:
        """`filtered`, row by row (the reference the cells are tested against)."""
        out = Tally()
        for row in self.rows:
            failed = [p for p, want in query.items() if row.value(p) != want]
            if not failed:
                out._count(row)
            elif len(failed) == 1:
                out._count(row, only=failed[0])
        return out

    def _count_rows(self, rows: list[Row]) -> None:
        """`_count(row)` for each row, aggregated: rows are summed per facet signature and per
        (node, biobank, collection) first, and each sum is then counted into the facets and
        the counts (interval sums are associative); tests/audit/test_search_check.py proves
        it equal to counting row by row."""
        signatures: dict[tuple[Any, ...], list[int]] = {}
        places: dict[tuple[Any, ...], list[int]] = {}
        groups, (s_lo, s_hi), (d_max, d_sum) = self.groups, self.samples, self.donors
        for origin, country, key, times in rows:
            bb, col, stype, temp, sex, chapters, uses, dtypes, n_lo, n_hi, d_lo, d_hi = key
            lo, hi = n_lo * times, n_hi * times
            sig = (country, stype, temp, sex, chapters, uses, dtypes)
            found = signatures.get(sig)
            if found is None:
                signatures[sig] = [lo, hi]
            else:
                found[0] += lo
                found[1] += hi
            place = (origin, country, bb, col)
            found = places.get(place)
            if found is None:
                places[place] = [lo, hi]
            else:
                found[0] += lo
                found[1] += hi
            groups += times
            s_lo += lo
            s_hi += hi
            if d_lo > d_max:
                d_max = d_lo
            d_sum += d_hi * times
        self.groups, self.samples, self.donors = groups, (s_lo, s_hi), (d_max, d_sum)
        facets, counts = self.facets, self.counts
        f_type, f_temp, f_sex, f_country = (
            facets[name] for name in ("sample_type", "storage_temperature", "sex", "country")
        )
        f_chapter, f_use, f_dtype = (
            facets[name] for name in ("diagnosis_chapter", "use_conditions", "dataset_type")
        )
        for (country, stype, temp, sex, chapters, uses, dtypes), (lo, hi) in signatures.items():
            for sums, code in ((f_type, stype), (f_temp, temp), (f_sex, sex), (f_country, country)):
                if code is not None:
                    sums.lo[code] += lo
                    sums.hi[code] += hi
            for sums, codes in ((f_chapter, chapters), (f_use, uses), (f_dtype, dtypes)):
                for code in codes:
                    if code is not None:
                        sums.lo[code] += lo
                        sums.hi[code] += hi
        biobanks, collections = self.biobanks, self.collections
        c_country, c_biobank, c_collection = (
            counts[name] for name in ("country", "biobank", "collection")
        )
        for (origin, country, bb, col), (lo, hi) in places.items():
            for table, code in ((biobanks, bb), (collections, col)):
                old = table.get((origin, code), (0, 0))
                table[(origin, code)] = (old[0] + lo, old[1] + hi)
            for sums, code in (
                (c_country, country),
                (c_biobank, (bb, origin)),
                (c_collection, (col, origin)),
            ):
                sums.lo[code] += lo
                sums.hi[code] += hi

    def _count(self, row: Row, only: str | None = None) -> None:
        n_lo, n_hi, d_lo, d_hi = row.key[8:]
        lo, hi = n_lo * row.times, n_hi * row.times
        for name, code in _facet_codes(row):
            if only is None or name == only:
                self.facets[name].add(code, lo, hi)
        if only is not None:
            return
        bb, col = row.key[:2]
        self.groups += row.times
        self.samples = (self.samples[0] + lo, self.samples[1] + hi)
        self.donors = (max(self.donors[0], d_lo), self.donors[1] + d_hi * row.times)
        for table, code in ((self.biobanks, bb), (self.collections, col)):
            old = table.get((row.origin, code), (0, 0))
            table[(row.origin, code)] = (old[0] + lo, old[1] + hi)
        self.counts["country"].add(row.country, lo, hi)
        # an id belongs to the node that publishes it: counted per (id, node origin)
        self.counts["biobank"].add((bb, row.origin), lo, hi)
        self.counts["collection"].add((col, row.origin), lo, hi)
