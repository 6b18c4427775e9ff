"""The counting rule: a collection's counts are the interval `/v1/search` gives for that
collection; an exact interval is published as the HealthDCAT-AP figure, every interval as
its two ends, and nothing finer (docs/dcat.md "Counts")."""

from __future__ import annotations

from rdflib import Graph, Literal
from rdflib.term import Node

from catalogue.dcat.terms import BBF, HEALTHDCATAP, XSD

__all__ = ["count_triples"]

# HealthDCAT-AP property -> (this project's lower-end, upper-end properties)
_ENDS = {
    "numberOfRecords": ("numberOfRecordsMin", "numberOfRecordsMax"),
    "numberOfUniqueIndividuals": ("numberOfUniqueIndividualsMin", "numberOfUniqueIndividualsMax"),
}


def count_triples(g: Graph, dataset: Node, prop: str, low: int, high: int) -> None:
    """Add `prop`'s figure when `low == high`, and always the interval's two ends."""
    if prop not in _ENDS or not 0 <= low <= high:
        raise ValueError(f"not a count interval for {prop}: [{low}, {high}]")
    lo_prop, hi_prop = _ENDS[prop]
    g.add((dataset, BBF[lo_prop], Literal(low, datatype=XSD.nonNegativeInteger)))
    g.add((dataset, BBF[hi_prop], Literal(high, datatype=XSD.nonNegativeInteger)))
    if low == high:
        g.add((dataset, HEALTHDCATAP[prop], Literal(low, datatype=XSD.nonNegativeInteger)))
