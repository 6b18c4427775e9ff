"""Small-count protection for the counts the catalogue shows (totals, facets, per collection).

A count below the node's k is shown as the bound ``"<k"``. The counts of one response are
protected together (`CountTable`): every shown count is a *cell*, and every sum an attacker
knows (the total is the sum of the countries, a biobank the sum of its collections, the
total the sum of a facet's values plus the samples without a value) is a *relation*. No
relation may hold exactly one hidden cell, or subtracting the others would give it back;
where one does, another cell (the smallest exact value, else the parent) is hidden too,
shown as a true upper bound ``"<N"`` (N the next multiple of its k above it), until no
relation does. See docs/privacy.md ("Small counts in the catalogue").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from catalogue.search.codes import Vocabulary
from catalogue.search.cube import FACETS, Combo, Predicate, Tally
from catalogue.search.filters import Filters

__all__ = [
    "DEFAULT_K",
    "Count",
    "CountTable",
    "ShownCounts",
    "bound",
    "hidden",
    "protected_counts",
    "weight",
]

DEFAULT_K = 10

Count = int | str


def bound(text: Count) -> int | None:
    """The exclusive upper bound a protected count states (``"<10"`` -> 10), None for ints."""
    if isinstance(text, int):
        return None
    if not text.startswith("<") or not text[1:].isdigit():
        raise ValueError(f"{text!r} is not a protected count")
    return int(text[1:])


def hidden(count: int, k: int) -> str:
    """The bound shown for a hidden count: ``"<k"`` below k, else the next multiple of k."""
    if count <= 0:
        raise ValueError(f"count {count} cannot be hidden")
    return f"<{(count // k + 1) * k}"


@dataclass
class _Cell:
    value: int
    k: int


class CountTable:
    """The counts of one response and the sums between them; `protect()` decides what shows.

    A relation ``parent = sum(children) + remainder`` is treated as if the attacker knew the
    remainder (samples without a value, overlaps of multi-valued facets): the safe side.
    """

    def __init__(self) -> None:
        self._cells: dict[Hashable, _Cell] = {}
        self._relations: list[tuple[Hashable, tuple[Hashable, ...]]] = []

    def cell(self, key: Hashable, value: int, k: int) -> None:
        """Register a shown count; the same quantity shown twice is registered under one key."""
        if value < 0:
            raise ValueError(f"count {value} of {key!r} is negative")
        old = self._cells.get(key)
        if old is None:
            self._cells[key] = _Cell(value, k)
        elif old.value != value:
            raise ValueError(f"cell {key!r} registered as {old.value} and as {value}")
        else:
            old.k = max(old.k, k)

    def relate(self, parent: Hashable, children: Iterable[Hashable]) -> None:
        """``parent`` is the sum of ``children`` (plus a remainder the attacker may know)."""
        kids = tuple(children)
        for key in (parent, *kids):
            if key not in self._cells:
                raise KeyError(f"relation names unknown cell {key!r}")
        self._relations.append((parent, kids))

    def hidden_cells(self) -> set[Hashable]:
        """The cells to hide: the small ones, plus complements until no relation exposes one."""
        cells = self._cells
        hide = {key for key, c in cells.items() if 0 < c.value < c.k}
        member_of: dict[Hashable, list[int]] = defaultdict(list)
        for i, (parent, kids) in enumerate(self._relations):
            for key in (parent, *kids):
                member_of[key].append(i)
        todo = list(range(len(self._relations)))
        while todo:
            parent, kids = self._relations[todo.pop()]
            kids = tuple(key for key in kids if cells[key].value > 0)
            if cells[parent].value == 0 or not kids:
                continue  # nothing to recover: all zero, or a bare count
            if sum(key in hide for key in (parent, *kids)) != 1:
                continue
            exact = sorted((cells[key].value, repr(key), key) for key in kids if key not in hide)
            extra = exact[0][2] if exact else parent
            hide.add(extra)
            todo.extend(member_of[extra])
        return hide

    def protect(self) -> dict[Hashable, Count]:
        """Every cell as shown: its value, or a true bound when hidden."""
        hide = self.hidden_cells()
        return {
            key: hidden(c.value, c.k) if key in hide else c.value for key, c in self._cells.items()
        }


def weight(count: Count | None) -> int:
    """Sort key of a shown count: a hidden one sorts by its bound, never by its true value."""
    if count is None:
        return -1
    return count if isinstance(count, int) else (bound(count) or 0) - 1


TOTAL = ("total",)


@dataclass
class ShownCounts:
    """The protected counts of one search response (see `protected_counts`)."""

    total: Count
    lists: dict[tuple[str, str], list[dict[str, Any]]]
    cards: dict[tuple[str, int, str], Count]

    def listing(self, section: str, name: str) -> list[dict[str, Any]]:
        """``counts.<name>`` (section "counts") or ``facets.<name>`` (section "facets")."""
        return self.lists[(section, name)]

    def card(self, kind: str, nid: int, code: str) -> Count:
        """The `samples` of a biobank or collection card (one node's part of the count)."""
        return self.cards[(kind, nid, code)]


def protected_counts(
    t: Tally,
    rows: Sequence[Combo],
    preds: list[tuple[str, Predicate]],
    f: Filters,
    vocab: Vocabulary,
    ks: dict[int, int],
) -> ShownCounts:
    """Protect the total, the counts lists, every facet and the card counts of one search.

    Relations: the total is the sum of each counts list and of each facet (of the values the
    facet's own filter keeps, when given); a country the sum of its biobanks, a biobank of its
    collections, and of its cards when several nodes publish it. The country facet shows the
    same quantities as ``counts.country`` for the countries searched, so they share cells. A
    facet whose own filter is given is also closed by the total of the search without that
    filter (not shown here, but one query away), so it is protected as it is shown there.
    """
    table = CountTable()

    def k_of(nids: Iterable[int]) -> int:
        return max((ks.get(nid, DEFAULT_K) for nid in nids), default=DEFAULT_K)

    table.cell(TOTAL, sum(t.total.values()), k_of(nid for nid, n in t.total.items() if n > 0))
    keys: dict[tuple[str, str], dict[Any, Hashable]] = {}
    per_node: dict[str, dict[str, dict[int, int]]] = {}

    def add(
        section: str,
        name: str,
        items: Iterable[tuple[Any, int, int]],
        key_of: Callable[[Any], Hashable],
    ) -> None:
        parts: dict[Any, dict[int, int]] = defaultdict(dict)
        for code, nid, n in items:
            if n > 0 and code is not None:
                parts[code][nid] = parts[code].get(nid, 0) + n
        for code, by_node in parts.items():
            table.cell(key_of(code), sum(by_node.values()), k_of(by_node))
        keys[(section, name)] = {code: key_of(code) for code in parts}
        if section == "counts":
            per_node[name] = parts

    add(
        "counts",
        "country",
        ((c, nid, n) for (c, nid), n in t.country.items()),
        lambda c: ("country", c),
    )
    add(
        "counts",
        "biobank",
        ((b, nid, n) for (nid, b), n in t.biobank.items()),
        lambda b: ("biobank", b),
    )
    add(
        "counts",
        "collection",
        ((c, nid, n) for (nid, c), n in t.collection.items()),
        lambda c: ("collection", c),
    )
    for name in ("country", "biobank", "collection"):
        table.relate(TOTAL, keys[("counts", name)].values())
    for name, counter in t.facets.items():
        keep = f.selected(FACETS[name], vocab)

        def key_of(code: Any, name: str = name, keep: frozenset[str] | None = keep) -> Hashable:
            if name == "country" and (keep is None or code in keep):
                return ("country", code)
            return ("facet", name, code)

        add("facets", name, ((code, nid, n) for (code, nid), n in counter.items()), key_of)
        facet = keys[("facets", name)]
        table.relate(TOTAL, [key for code, key in facet.items() if keep is None or code in keep])
        if keep is not None and facet:
            # The same list is shown, complete, by the search without this filter, whose
            # total closes its sum: protect it here as there (a parent not shown here).
            whole = ("facet total", name)
            nids = {nid for (_code, nid), n in counter.items() if n > 0}
            table.cell(whole, sum(n for n in counter.values() if n > 0), k_of(nids))
            table.relate(whole, facet.values())

    country_of, biobank_of = _structure(rows, preds, set(ks))
    for parent, kind, owner in (
        ("country", "biobank", country_of),
        ("biobank", "collection", biobank_of),
    ):
        children: dict[Any, list[Hashable]] = defaultdict(list)
        for code, key in keys[("counts", kind)].items():
            if owner.get(code) in keys[("counts", parent)]:
                children[owner[code]].append(key)
        for code, kids in children.items():
            table.relate((parent, code), kids)
    card_keys: dict[tuple[str, int, str], Hashable] = {}
    for kind in ("biobank", "collection"):
        for code, by_node in per_node[kind].items():
            for nid, n in by_node.items():
                card_keys[(kind, nid, code)] = (kind, code)
                if len(by_node) > 1:
                    card_keys[(kind, nid, code)] = ("card", kind, nid, code)
                    table.cell(("card", kind, nid, code), n, ks.get(nid, DEFAULT_K))
            if len(by_node) > 1:
                table.relate((kind, code), [("card", kind, nid, code) for nid in by_node])

    shown = table.protect()
    lists = {}
    for where, by_code in keys.items():
        items = [{"code": code, "count": shown[key]} for code, key in by_code.items()]
        lists[where] = sorted(items, key=lambda i: (-weight(i["count"]), str(i["code"])))
    return ShownCounts(shown[TOTAL], lists, {c: shown[key] for c, key in card_keys.items()})


def _structure(
    rows: Sequence[Combo], preds: list[tuple[str, Predicate]], active: set[int]
) -> tuple[dict[str, str | None], dict[str, str]]:
    """The country of each biobank and the biobank of each collection among the matching
    samples; a biobank (collection) whose matching samples span several is left out."""
    countries: dict[str, set[str | None]] = defaultdict(set)
    biobanks: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r.node_id in active:
            countries[r.biobank].add(r.country)
            biobanks[r.collection].add(r.biobank)
    mixed_b = {b for b, cs in countries.items() if len(cs) > 1}
    mixed_c = {c for c, bs in biobanks.items() if len(bs) > 1}
    if mixed_b or mixed_c:  # rare: look at the matching rows only
        for b in mixed_b:
            countries[b] = set()
        for c in mixed_c:
            biobanks[c] = set()
        for r in rows:
            if (
                r.node_id in active
                and (r.biobank in mixed_b or r.collection in mixed_c)
                and all(pred(r) for _, pred in preds)
            ):
                if r.biobank in mixed_b:
                    countries[r.biobank].add(r.country)
                if r.collection in mixed_c:
                    biobanks[r.collection].add(r.biobank)
    return (
        {b: next(iter(cs)) for b, cs in countries.items() if len(cs) == 1},
        {c: next(iter(bs)) for c, bs in biobanks.items() if len(bs) == 1},
    )
