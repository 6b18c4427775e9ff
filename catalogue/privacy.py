"""Small-count protection for the counts the catalogue shows (totals, facets, per collection).

A count below the node's k is shown as the bound ``"<k"``. A facet list is protected as a
whole: when exactly one of its values is suppressed, the next-smallest value is suppressed
too (shown as a true upper bound ``"<N"``, N the next multiple of k above it), so that the
total minus the sum of the other values no longer gives the suppressed count. See
docs/privacy.md ("Small counts in the catalogue").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_K = 10

Count = int | str


def protect(count: int, k: int = DEFAULT_K) -> Count:
    """Return ``count``, or the string ``"<k"`` when ``0 < count < k``.

    Zero is shown as 0: the absence of matching samples is not a small class of donors.
    """
    if count < 0:
        raise ValueError(f"count {count} is negative")
    if 0 < count < k:
        return f"<{k}"
    return count


def bound(text: Count) -> int | None:
    """The exclusive upper bound a protected count states (``"<10"`` -> 10), None for ints."""
    if isinstance(text, int):
        return None
    if not text.startswith("<") or not text[1:].isdigit():
        raise ValueError(f"{text!r} is not a protected count")
    return int(text[1:])


def _upper(count: int, k: int) -> str:
    return f"<{(count // k + 1) * k}"


def protect_facet(items: Sequence[tuple[str, int]], k: int = DEFAULT_K) -> list[tuple[str, Count]]:
    """Protect one facet's ``(code, count)`` list; order is kept.

    Counts in ``1..k-1`` become ``"<k"``. If exactly one value was suppressed, the smallest
    other positive count (ties broken by code, so the result is deterministic) is
    suppressed too and shown as ``"<N"``, N the next multiple of k above it: a true bound.
    """
    small = [i for i, (_, n) in enumerate(items) if 0 < n < k]
    out: list[tuple[str, Count]] = [(code, protect(n, k)) for code, n in items]
    if len(small) == 1:
        others = [(n, code, i) for i, (code, n) in enumerate(items) if n >= k]
        if others:
            n, code, i = min(others)
            out[i] = (code, _upper(n, k))
    return out


def exposed(facet: Sequence[tuple[str, Count]]) -> bool:
    """True when exactly one value of a protected facet is hidden: the total would reveal it."""
    return sum(1 for _, c in facet if isinstance(c, str)) == 1


def protect_facets(facets: dict[str, list[dict[str, Any]]],
                   k: int = DEFAULT_K) -> dict[str, list[dict[str, Any]]]:
    """Protect every facet of a search response (``{"name": [{"code", "count"}, ...]}``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in facets.items():
        protected = protect_facet([(v["code"], int(v["count"])) for v in values], k)
        out[name] = [{**v, "count": c} for v, (_, c) in zip(values, protected, strict=True)]
    return out


def protect_response(total: int, facets: dict[str, list[dict[str, Any]]],
                     k: int = DEFAULT_K) -> tuple[Count, dict[str, list[dict[str, Any]]]]:
    """Protect a search response's total and facets together.

    A facet whose one suppressed value had no other value to complement it (it is the
    facet's only value) would be recovered as the total minus the samples without a value
    for that facet; the total is then shown as the bound ``"<N"`` (N the next multiple of
    k above it) instead.
    """
    shown = protect_facets(facets, k)
    pairs = [[(v["code"], v["count"]) for v in values] for values in shown.values()]
    if 0 < total < k:
        return protect(total, k), shown
    if any(exposed(p) for p in pairs):
        return _upper(total, k), shown
    return total, shown
