"""Compare counts recomputed from the logs with the catalogue's /v1/search.

A count shown as a bound ``"<N"`` must hold: the logs give a count from 1 to N-1. That
covers both bounds the catalogue shows: ``"<k"`` for a count below the node's k, and
``"<N"`` (N the next multiple of k above it) for a larger count it hides so that a total
minus the other values does not give a small one back (docs/privacy.md). A bound on a count
of zero is refused (zero is never hidden). The country facet of the unfiltered search
counts the same samples as ``counts.country``, so both must show the same thing. Which
counts the catalogue chose to hide is not checked: nodes' k values are not in its log.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from audit.livestate import Tally
from audit.report import CheckResult

_BOUND = re.compile(r"<([0-9]+)")


def _compare(check: CheckResult, where: str, expected: int, shown: Any) -> None:
    check.items += 1
    if isinstance(shown, bool):
        check.fail(where, f"shows {shown!r}, not a count")
    elif isinstance(shown, int):
        if shown != expected:
            check.fail(where, f"search reports {shown}, the logs give {expected}")
    elif isinstance(shown, str) and (m := _BOUND.fullmatch(shown)):
        bound = int(m.group(1))
        if expected == 0:
            check.fail(where, f"search reports {shown!r}, but the logs give 0 (never hidden)")
        elif not expected < bound:
            check.fail(where, f"search reports {shown!r}, but the logs give {expected}")
    else:
        check.fail(where, f"shows {shown!r}, neither a count nor a bound like '<10'")


def _listing(check: CheckResult, where: str, expected: Counter[str], shown: Any) -> None:
    if not isinstance(shown, list):
        check.fail(where, f"is {type(shown).__name__}, not a list of {{code, count}}")
        return
    seen: dict[str, Any] = {}
    for item in shown:
        if not isinstance(item, dict) or "code" not in item or "count" not in item:
            check.fail(where, f"item {item!r:.80} is not {{code, count}}")
            continue
        seen[str(item["code"])] = item["count"]
    for code in sorted(set(seen) | {c for c, n in expected.items() if n > 0}):
        if code not in seen:
            check.items += 1
            check.fail(f"{where} {code!r}", f"missing from search; the logs give {expected[code]}")
            continue
        _compare(check, f"{where} {code!r}", expected.get(code, 0), seen[code])


def check_search(check: CheckResult, tally: Tally, response: dict[str, Any]) -> None:
    """Every total, per-country/biobank/collection count and facet of an unfiltered search."""
    check.ran = True
    _compare(check, "search total", tally.total, response.get("total"))
    counts = response.get("counts")
    facets = response.get("facets")
    if not isinstance(counts, dict) or not isinstance(facets, dict):
        check.fail("search response", "lacks the 'counts' or 'facets' object")
        return
    for name, expected in tally.counts.items():
        _listing(check, f"search counts.{name}", expected, counts.get(name))
    for name, expected in tally.facets.items():
        _listing(check, f"search facets.{name}", expected, facets.get(name))
    _same_twice(check, tally.counts["country"], counts.get("country"), facets.get("country"))


def _holds(expected: int, shown: Any) -> bool:
    if isinstance(shown, int) and not isinstance(shown, bool):
        return shown == expected
    m = _BOUND.fullmatch(shown) if isinstance(shown, str) else None
    return m is not None and 0 < expected < int(m.group(1))


def _same_twice(check: CheckResult, expected: Counter[str], counts: Any, facet: Any) -> None:
    """Without a country filter, facets.country and counts.country count the same samples:
    two true but different forms (41 and "<50") would undo the protection of one of them."""
    if not isinstance(counts, list) or not isinstance(facet, list):
        return
    listed = {str(i.get("code")): i.get("count") for i in counts if isinstance(i, dict)}
    for item in facet:
        code = str(item.get("code")) if isinstance(item, dict) else None
        if code is None or code not in listed:
            continue
        check.items += 1
        other = listed[code]
        if (
            item.get("count") != other
            and _holds(expected[code], other)
            and _holds(expected[code], item.get("count"))
        ):
            check.fail(
                f"search facets.country {item['code']!r}",
                f"shows {item.get('count')!r}, but counts.country shows {other!r} "
                f"for the same samples",
            )
