"""Beacon v2 over the catalogue's own search (docs/beacon.md).

terms.py      the filtering terms this Beacon accepts and their translation into the
              /v1/search parameters (so every count is the search's, by construction)
responses.py  the Beacon framework documents: meta, info, map, configuration, entry
              types, filtering terms, boolean and count responses, errors
"""

from __future__ import annotations

from catalogue.beacon.responses import (
    API_VERSION,
    ENTRY_TYPES,
    Granted,
    beacon_id,
    configuration,
    count_response,
    entry_types,
    error_response,
    filtering_terms_response,
    info_response,
    map_response,
    service_info,
)
from catalogue.beacon.terms import Translation, filtering_terms, parse_get_filters, translate

__all__ = [
    "API_VERSION",
    "ENTRY_TYPES",
    "Granted",
    "Translation",
    "beacon_id",
    "configuration",
    "count_response",
    "entry_types",
    "error_response",
    "filtering_terms",
    "filtering_terms_response",
    "info_response",
    "map_response",
    "parse_get_filters",
    "service_info",
    "translate",
]
