"""Small counts in the catalogue: "<k" bounds, and facets that resist differencing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalogue.search.privacy import DEFAULT_K, Count, CountTable, bound

# The rules below are those of `CountTable`, which search uses through
# `protected_counts`; these helpers state one facet, or a total and its facets, as tables.


def protect_facet(items: Sequence[tuple[str, int]], k: int = DEFAULT_K) -> list[tuple[str, Count]]:
    """Protect one facet's ``(code, count)`` list against its (exact) sum; order is kept.

    Counts in ``1..k-1`` become ``"<k"``. If exactly one value was suppressed, the smallest
    other positive count (ties broken by code) is suppressed too and shown as ``"<N"``, N the
    next multiple of k above it: a true bound.
    """
    table = CountTable()
    table.cell("sum", sum(n for _, n in items), k)
    for i, (_, n) in enumerate(items):
        table.cell(i, n, k)
    table.relate("sum", range(len(items)))
    shown = table.protect()
    return [(code, shown[i]) for i, (code, _) in enumerate(items)]


def protect_facets(
    facets: dict[str, list[dict[str, Any]]], k: int = DEFAULT_K
) -> dict[str, list[dict[str, Any]]]:
    """Protect every facet of a search response (``{"name": [{"code", "count"}, ...]}``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in facets.items():
        protected = protect_facet([(v["code"], int(v["count"])) for v in values], k)
        out[name] = [{**v, "count": c} for v, (_, c) in zip(values, protected, strict=True)]
    return out


def protect_response(
    total: int, facets: dict[str, list[dict[str, Any]]], k: int = DEFAULT_K
) -> tuple[Count, dict[str, list[dict[str, Any]]]]:
    """Protect a total and its facets together (each facet's values sum to the total minus
    the samples without a value, which the attacker is assumed to know).

    A facet whose one suppressed value is its only value can only be complemented by the
    total, which is then shown as the bound ``"<N"``; the other facets then get a second
    hidden value each, since the total no longer closes their sums.
    """
    table = CountTable()
    table.cell("total", total, k)
    for name, values in facets.items():
        for v in values:
            table.cell((name, v["code"]), int(v["count"]), k)
        table.relate("total", [(name, v["code"]) for v in values])
    shown = table.protect()
    out = {
        name: [{**v, "count": shown[(name, v["code"])]} for v in values]
        for name, values in facets.items()
    }
    return shown["total"], out


def test_bound_parses_protected_counts() -> None:
    assert bound("<10") == 10 and bound(12) is None
    with pytest.raises(ValueError, match="not a protected count"):
        bound("ten")


def test_the_obvious_differencing_attack_is_closed() -> None:
    """total 503; female 500, male 3: without protection 503 - 500 gives male = 3."""
    facet = protect_facet([("female", 500), ("male", 3)], 10)
    assert facet == [("female", "<510"), ("male", "<10")]
    sex = protect_facet([("female", 480), ("male", 20), ("other", 3)], 10)
    assert sex == [("female", 480), ("male", "<30"), ("other", "<10")]


def test_two_small_values_need_no_complement() -> None:
    assert protect_facet([("a", 40), ("b", 3), ("c", 4)], 10) == [
        ("a", 40),
        ("b", "<10"),
        ("c", "<10"),
    ]


def test_protect_facets_keeps_the_response_shape() -> None:
    out = protect_facets(
        {
            "sex": [{"code": "female", "count": 50}, {"code": "male", "count": 2}],
            "sample_type": [{"code": "Serum", "count": 52}],
        },
        10,
    )
    assert out == {
        "sex": [{"code": "female", "count": "<60"}, {"code": "male", "count": "<10"}],
        "sample_type": [{"code": "Serum", "count": 52}],
    }


def test_a_lone_small_value_turns_the_total_into_a_bound() -> None:
    """Facet sex = [female: 3] over 40 samples (37 without sex): 40 - 37 would give 3."""
    total, facets = protect_response(40, {"sex": [{"code": "female", "count": 3}]}, 10)
    assert facets == {"sex": [{"code": "female", "count": "<10"}]}
    assert total == "<50"
    assert protect_response(40, {"sex": [{"code": "female", "count": 40}]}, 10)[0] == 40
    assert protect_response(4, {}, 10)[0] == "<10"


facet_counts = st.lists(st.integers(1, 300), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(facet_counts, min_size=1, max_size=3), st.integers(2, 20), st.integers(0, 50))
def test_differencing_never_recovers_a_suppressed_count(
    facets: list[list[int]], k: int, missing: int
) -> None:
    """The attacker knows how many samples have no value in a facet (worst case) and sees
    the protected total and facets; the total minus the shown values must never equal a
    suppressed count, and every bound shown must be true."""
    grand = max(sum(c) for c in facets) + missing
    raw = {
        f"f{j}": [{"code": f"v{i}", "count": n} for i, n in enumerate(c)]
        for j, c in enumerate(facets)
    }
    total, shown = protect_response(grand, raw, k)
    if isinstance(total, str):
        assert grand < bound(total)
    else:
        assert total == grand
    for name, values in raw.items():
        out = [v["count"] for v in shown[name]]
        for true, o in zip((v["count"] for v in values), out, strict=True):
            assert (true < bound(o)) if isinstance(o, str) else o == true
        hidden = [v["count"] for v, o in zip(values, out, strict=True) if isinstance(o, str)]
        without = grand - sum(v["count"] for v in values)  # samples with no value here
        if isinstance(total, int) and hidden:
            difference = total - without - sum(o for o in out if isinstance(o, int))
            assert difference == sum(hidden)
            for n in hidden:
                if n < k:
                    assert difference != n
