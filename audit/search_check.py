"""Compare counts recomputed from the logs with the catalogue's /v1/search.

A count shown as a bound ("<10") must hold.
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
        if not 0 < expected < bound:
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
            check.fail(f"{where} {code!r}", f"missing from search; the logs give "
                                            f"{expected[code]}")
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
