"""Faceted search over the group cube and the collection records of active nodes.

Every count is an interval ``{"min", "max"}`` summed over the matching sample groups: a
group publishing only a bound adds [1, B - 1], so no arithmetic over several answers says
more than the logs do. Collections of nodes that publish no groups for them (Directory
style) are matched on their collection-level attributes and listed with `count_source:
"declared"` and their `declared_size`. A biobank that publishes no collections (and no
groups) is listed when the search filters only by country and biobank. A facet for a
parameter is computed with every filter except that parameter's own.

References: a card whose own record or whose biobank's record is not published (a group
naming an unknown collection, a collection naming an unknown biobank) is still listed, by
its id, with `published: false` or `biobank_published: false`; its name and contact are
then null and the web card says "not published" instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from catalogue.models import alerts, nodes, records
from catalogue.search.cache import CubeCache
from catalogue.search.codes import Vocabulary
from catalogue.search.cube import FACETS, Span
from catalogue.search.filters import Filters
from catalogue.search.tally_arrays import ArrayCube, tally
from catalogue.status import is_stale

__all__ = ["declared_match", "interval", "search"]

_AGE_UNIT_YEARS = {"years": 1.0, "months": 12.0, "weeks": 52.0, "days": 365.0}


def search(
    conn: Connection,
    f: Filters,
    vocab: Vocabulary,
    stale_after: float,
    cache: CubeCache | None = None,
) -> dict[str, Any]:
    """The /v1/search response (docs/architecture.md) for validated filters."""
    cache = cache or CubeCache()
    version, cube = cache.snapshot(conn)
    recs = cache.memo("search.records", version, lambda: _Records.read(conn))
    status = conn.execute(_NODES).all()  # every non-retired node, by origin
    wanted_nodes = set(f.lists.get("node") or ())  # biobanks and collections of these only
    node_rows = {r.id: r for r in status if not wanted_nodes or r.origin in wanted_nodes}
    origin = {nid: r.origin for nid, r in node_rows.items()}

    def prov(nid: int) -> dict[str, Any]:
        r = node_rows[nid]
        return {"node": r.origin, "checkpoint_size": r.tree_size, "verified_at": r.verified_at}

    t = tally(cube, f, vocab, set(node_rows))
    bb_samples = dict(t.biobank)
    bb_country, bb_with_collections = recs.biobank_index(node_rows)
    declared = _declared_collections(recs, f, vocab, cube, node_rows, bb_country)
    for nid, content in declared:
        bb_samples.setdefault((nid, content.get("biobank", "")), (0, 0))
    for nid, bid in _lone_biobanks(f, bb_country, bb_with_collections, node_rows):
        bb_samples.setdefault((nid, bid), (0, 0))

    # by count, then id, then node origin (two nodes may publish the same id)
    counted = sorted(
        t.collection.items(), key=lambda kc: (_order(kc[1]), kc[0][1], origin[kc[0][0]])
    )
    items_all: list[tuple[tuple[int, str], Span | None]] = list(counted)
    items_all += [
        ((nid, content["id"]), None)
        for nid, content in sorted(
            declared, key=lambda d: (-(d[1].get("size") or 0), d[1]["id"], origin[d[0]])
        )
    ]
    col_page = _page(items_all, f.collections_page, f.page_size)
    col_records = recs.collection
    col_biobank: dict[tuple[int, str], str] = {}
    if any(k not in col_records for k, _n in col_page):  # groups naming an unknown collection
        col_biobank = {(nid, cid): bid for nid, bid, _country, cid in cube.places}
    collections_out = []
    for (nid, cid), n in col_page:
        rec = col_records.get((nid, cid))
        published = rec is not None
        rec = rec or {}
        biobank = rec.get("biobank") or col_biobank.get((nid, cid))
        collections_out.append(
            {
                "id": cid,
                "origin": node_rows[nid].origin,
                "biobank": biobank,
                "published": published,
                "biobank_published": biobank is not None and (nid, biobank) in bb_country,
                "name": rec.get("name"),
                "acronym": rec.get("acronym"),
                "description": rec.get("description"),
                "url": rec.get("url"),
                "contact": rec.get("contact"),
                "use_conditions": rec.get("use_conditions", []),
                "dataset_types": rec.get("dataset_types", []),
                "design": rec.get("design", []),
                "sample_types": rec.get("sample_types", []),
                "sex": rec.get("sex", []),
                "quality_standards": rec.get("quality_standards", []),
                "samples": None if n is None else interval(n),
                "declared_size": rec.get("size"),
                "subjects": rec.get("number_of_subjects"),
                "age": _age(rec.get("age")),
                "count_source": "declared" if n is None else "groups",
                "provenance": prov(nid),
            }
        )

    bb_keys = sorted(bb_samples.items(), key=lambda kc: (_order(kc[1]), kc[0][1], origin[kc[0][0]]))
    bb_page = _page(bb_keys, f.page, f.page_size)
    bb_records = recs.biobank
    biobanks_out = []
    for (nid, bid), n in bb_page:
        rec = bb_records.get((nid, bid))
        published = rec is not None
        rec = rec or {}
        biobanks_out.append(
            {
                "id": bid,
                "origin": node_rows[nid].origin,
                "published": published,
                "collections": bb_with_collections.get((nid, bid), 0),
                "name": rec.get("name"),
                "acronym": rec.get("acronym"),
                "country": rec.get("country") or node_rows[nid].country,
                "description": rec.get("description"),
                "contact": rec.get("contact"),
                "url": rec.get("url"),
                "quality_standards": rec.get("quality_standards", []),
                "samples": interval(n),
                "provenance": prov(nid),
            }
        )

    return {
        "query": f.normalised(),
        "total": interval(_sum(t.total.values())),
        "donors": interval(t.donors),
        "counts": {
            "country": _listing(t.country.items()),
            "biobank": _owned(t.biobank.items(), node_rows),
            "collection": _owned(t.collection.items(), node_rows),
        },
        "facets": {name: _listing(t.facets[name].items()) for name in FACETS},
        "biobanks": {
            "items": biobanks_out,
            "page": f.page,
            "page_size": f.page_size,
            "total": len(bb_keys),
        },
        "collections": {
            "items": collections_out,
            "page": f.collections_page,
            "page_size": f.page_size,
            "total": len(items_all),
        },
        "nodes": [
            {
                "origin": s.origin,
                "country": s.country,
                "stale": is_stale(s.last_success_at, stale_after),
                "alerts": int(s.alerts),
            }
            for s in status
        ],
    }


def interval(span: Span) -> dict[str, int]:
    """A count as the API shows it: ``{"min", "max"}`` (exact when equal)."""
    return {"min": span[0], "max": span[1]}


def _sum(spans: Iterable[Span]) -> Span:
    lo = hi = 0
    for a, b in spans:
        lo, hi = lo + a, hi + b
    return lo, hi


def _order(span: Span) -> tuple[int, int]:
    """Sort key: count max descending, then min descending."""
    return -span[1], -span[0]


def _listing(sums: Iterable[tuple[tuple[Any, int], Span]]) -> list[dict[str, Any]]:
    """One counts or facet list: per code (summed over nodes), sorted by count; values
    that no group states (None) are left out."""
    by_code: dict[Any, list[Span]] = {}
    for (code, _nid), span in sums:
        if code is not None:
            by_code.setdefault(code, []).append(span)
    totals = {code: _sum(spans) for code, spans in by_code.items()}
    ordered = sorted(totals.items(), key=lambda cs: (_order(cs[1]), str(cs[0])))
    return [{"code": code, "count": interval(span)} for code, span in ordered]


def _owned(sums: Iterable[tuple[tuple[int, str], Span]], node_rows: dict[int, Any]) -> list[Any]:
    """A counts list of biobanks or collections: one item per (node, id), never summed over
    nodes (an id belongs to the node that publishes it; another node publishing under the
    same id is listed apart), sorted by count, then id, then node origin."""
    owned = [(code, node_rows[nid].origin, span) for (nid, code), span in sums]
    owned.sort(key=lambda c: (_order(c[2]), c[0], c[1]))
    return [
        {"code": code, "origin": origin, "count": interval(span)} for code, origin, span in owned
    ]


def _page(items: list[Any], page: int, size: int) -> list[Any]:
    return items[(page - 1) * size : page * size]


def _age(age: Any) -> dict[str, Any] | None:
    """A collection's declared age range as published: min and max (either may be missing)
    in its unit (years unless stated)."""
    if not isinstance(age, dict) or (age.get("min") is None and age.get("max") is None):
        return None
    return {"min": age.get("min"), "max": age.get("max"), "unit": age.get("unit", "years")}


@dataclass
class _Records:
    """The published biobank and collection records (parsed), read once per own-log size:
    only an accepted harvest step changes them, and it grows the own log."""

    biobank: dict[tuple[int, str], dict[str, Any]]
    collection: dict[tuple[int, str], dict[str, Any]]
    country: dict[tuple[int, str], str | None]  # a biobank record's country column
    collection_biobank: dict[tuple[int, str], str | None]  # a collection record's biobank

    @classmethod
    def read(cls, conn: Connection) -> _Records:
        out = cls({}, {}, {}, {})
        for r in conn.execute(_RECORDS):
            key = (r.node_id, r.record_id)
            if r.kind == "biobank":
                out.biobank[key] = orjson.loads(r.content)
                out.country[key] = r.country
            else:
                out.collection[key] = orjson.loads(r.content)
                out.collection_biobank[key] = r.biobank
        return out

    def biobank_index(
        self, node_rows: dict[int, Any]
    ) -> tuple[dict[tuple[int, str], str | None], dict[tuple[int, str], int]]:
        """The published biobanks of the given nodes with their country, and how many
        published collections each biobank id (published or not) has."""
        countries = {k: c for k, c in self.country.items() if k[0] in node_rows}
        n_collections: dict[tuple[int, str], int] = {}
        for (nid, _cid), bid in self.collection_biobank.items():
            if nid in node_rows:
                key = (nid, bid or "")
                n_collections[key] = n_collections.get(key, 0) + 1
        return countries, n_collections


_RECORDS = select(
    records.c.kind,
    records.c.node_id,
    records.c.record_id,
    records.c.country,
    records.c.biobank,
    records.c.content,
).where(records.c.kind.in_(("biobank", "collection")))

# the nodes a search shows (every one not retired, by origin) with their open alerts
_NODES = (
    select(
        nodes.c.id,
        nodes.c.origin,
        nodes.c.country,
        nodes.c.tree_size,
        nodes.c.verified_at,
        nodes.c.last_success_at,
        select(func.count())
        .where(alerts.c.node_id == nodes.c.id, alerts.c.cleared_at.is_(None))
        .scalar_subquery()
        .label("alerts"),
    )
    .where(nodes.c.state != "retired")
    .order_by(nodes.c.origin)
)


# Filters a biobank without collections can meet: it states a country and an id (of its
# node), nothing else.
_BIOBANK_LEVEL = frozenset({"country", "biobank", "node"})


def _lone_biobanks(
    f: Filters,
    countries: dict[tuple[int, str], str | None],
    n_collections: dict[tuple[int, str], int],
    node_rows: dict[int, Any],
) -> list[tuple[int, str]]:
    """Published biobanks with no collections that match a search filtering at most by
    country and biobank (any other filter asks about samples they do not describe)."""
    given = {name for name, values in f.lists.items() if values}
    other = (
        given - _BIOBANK_LEVEL
        or f.icd10
        or any(v is not None for v in (f.age_min, f.age_max, f.period_from, f.period_to))
    )
    if other:
        return []
    want_country = set(f.lists.get("country") or [])
    want_id = set(f.lists.get("biobank") or [])
    out = []
    for (nid, bid), country in countries.items():
        if n_collections.get((nid, bid)):
            continue
        country = country or node_rows[nid].country
        if want_country and country not in want_country:
            continue
        if want_id and bid not in want_id:
            continue
        out.append((nid, bid))
    return out


def _declared_collections(
    recs: _Records,
    f: Filters,
    vocab: Vocabulary,
    cube: ArrayCube,
    node_rows: dict[int, Any],
    countries: dict[tuple[int, str], str | None],
) -> list[tuple[int, dict[str, Any]]]:
    """Collection records with no live groups that match the filters on their own attributes."""
    with_groups = cube.with_groups
    out = []
    for (nid, cid), content in recs.collection.items():
        if nid not in node_rows or (nid, cid) in with_groups:
            continue
        bid = content.get("biobank")
        country = countries.get((nid, bid)) if isinstance(bid, str) else None
        country = country or node_rows[nid].country
        if declared_match(content, country, f, vocab):
            out.append((nid, content))
    return out


def declared_match(col: dict[str, Any], country: str | None, f: Filters, vocab: Vocabulary) -> bool:
    """Whether a collection matches the filters by its collection-level attributes."""
    lists = f.lists

    def meets(param: str, have: Iterable[str], expand: bool = False) -> bool:
        want = lists.get(param)
        if not want:
            return True
        if expand:
            want = vocab.with_children("sample-type", want)
        return bool(set(have) & set(want))

    diags = col.get("diagnoses") or []
    icd = [d["code"] for d in diags if d.get("system") == "ICD-10"]
    checks = [
        meets("sample_type", col.get("sample_types") or [], expand=True),
        meets("storage_temperature", col.get("storage_temperatures") or []),
        meets("sex", col.get("sex") or []),
        meets("dataset_type", col.get("dataset_types") or []),
        meets("duo", col.get("use_conditions") or []),
        meets("country", [country] if country else []),
        meets("biobank", [col.get("biobank", "")]),
        meets("collection", [col.get("id", "")]),
        meets("orpha", [d["code"] for d in diags if d.get("system") == "ORPHA"]),
        not f.icd10 or any(_icd_match(code, f) for code in icd),
        f.period_from is None and f.period_to is None,  # collections declare no period
    ]
    if f.age_min is not None or f.age_max is not None:
        age = col.get("age") or {}
        scale = _AGE_UNIT_YEARS.get(age.get("unit", "years"), 1.0)
        low = age.get("min")
        high = age.get("max")
        lo = low / scale if low is not None else 0.0
        hi = high / scale if high is not None else 200.0
        if low is None and high is None:
            checks.append(False)
        else:
            checks.append(
                (f.age_min is None or hi >= f.age_min) and (f.age_max is None or lo <= f.age_max)
            )
    return all(checks)


def _icd_match(code: str, f: Filters) -> bool:
    for cond in f.icd10:
        if cond.prefix is not None and code.startswith(cond.prefix):
            return True
        if cond.low is not None and cond.high is not None and cond.low <= code[:3] <= cond.high:
            return True
    return False
