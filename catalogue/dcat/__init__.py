"""DCAT-AP 3 / HealthDCAT-AP export of the catalogue (`GET /v1/dcat`), built with rdflib.

    terms.py    namespaces and the fixed concepts (theme HEAL, access rights, the EHDS)
    counts.py   the rule that turns a search interval into published counts
    graph.py    the graph: catalogue, node catalogues and publishers, services, counts
    dataset.py  one collection as a dcat:Dataset (properties, keywords, distributions)
    serialise.py  content negotiation and the Turtle / JSON-LD bytes

docs/dcat.md describes the export and the counting rule.
"""

from __future__ import annotations

from catalogue.dcat.counts import count_triples
from catalogue.dcat.graph import catalogue_graph
from catalogue.dcat.serialise import MEDIA_TYPES, choose, serialise

__all__ = [
    "MEDIA_TYPES",
    "catalogue_graph",
    "choose",
    "count_triples",
    "serialise",
]
