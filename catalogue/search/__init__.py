"""Search: the /v1/search filters and the faceted search over the group cube, every count
an interval sum over the published sample groups.

    filters.py          the search parameters (one table of definitions) and their parsing
    codes.py            the code lists as search and the index use them (`Vocabulary`)
    cube.py             the group cube in memory (combo rows) and the `Tally` a search makes
    cache.py            the server's snapshot, refreshed with only the combos changed since
    tally_arrays.py     the tally search runs: numpy arrays, vectorised (the engine)
    tally_update.py     a refresh's changes applied to the arrays (a new snapshot)
    tally_reference.py  the same tally as one plain-Python pass (the reference it must equal)
    service.py          the /v1/search response: interval counts, cards and pages

The search service and the array engine are imported on first use (`search`): a harvest
worker needs only the code lists, not numpy and the search service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from catalogue.search.cache import CubeCache
from catalogue.search.codes import Vocabulary
from catalogue.search.filters import FILTERS, FilterDef, Filters, parse_filters

if TYPE_CHECKING:
    from catalogue.search.service import search

__all__ = [
    "FILTERS",
    "CubeCache",
    "FilterDef",
    "Filters",
    "Vocabulary",
    "parse_filters",
    "search",
]

_LAZY = {"search": "catalogue.search.service"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
