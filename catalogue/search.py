"""Faceted search over the sample cube and the collection records of active nodes.

`total`, `counts` and `facets` count sample records. Collections of nodes that publish no
sample records for them (Directory style) are matched on their collection-level attributes
and listed with `count_source: "declared"` and their `declared_size`. A facet for a
parameter is computed with every filter except that parameter's own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, and_, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from catalogue.codes import Vocabulary
from catalogue.filters import Filters
from catalogue.models import combo_datasets, combo_diagnoses, combo_uses, combos, records
from catalogue.privacy import DEFAULT_K, protect
from catalogue.status import list_status

c = combos
_COLUMN_FACETS = {"sample_type": "sample_type", "storage_temperature": "storage_temperature",
                  "sex": "sex", "country": "country"}
_AGE_UNIT_YEARS = {"years": 1.0, "months": 12.0, "weeks": 52.0, "days": 365.0}


def search(conn: Connection, f: Filters, vocab: Vocabulary, stale_after: float) -> dict[str, Any]:
    """The /v1/search response (docs/architecture.md) for validated filters."""
    status = {s["origin"]: s for s in list_status(conn, stale_after, include_retired=False)}
    from catalogue.models import nodes  # local: keeps the module's public names short
    node_rows = {r.id: r for r in conn.execute(select(nodes).where(nodes.c.state != "retired"))}
    active = list(node_rows)
    ks = {nid: r.k or DEFAULT_K for nid, r in node_rows.items()}

    def prov(nid: int) -> dict[str, Any]:
        r = node_rows[nid]
        return {"node": r.origin, "checkpoint_size": r.tree_size, "verified_at": r.verified_at}

    base = _conditions(f, vocab, active, skip=None)
    groups = conn.execute(
        select(c.c.node_id, c.c.biobank, c.c.collection, c.c.country, func.sum(c.c.n))
        .where(*base).group_by(c.c.node_id, c.c.biobank, c.c.collection, c.c.country)).all()
    total = _Agg(ks)
    by_country, by_biobank, by_collection = _Agg(ks), _Agg(ks), _Agg(ks)
    bb_samples: dict[tuple[int, str], int] = defaultdict(int)
    col_samples: dict[tuple[int, str], int] = defaultdict(int)
    for nid, bb, col, country, n in groups:
        n = int(n or 0)
        total.add(None, nid, n)
        by_country.add(country, nid, n)
        by_biobank.add(bb, nid, n)
        by_collection.add(col, nid, n)
        bb_samples[(nid, bb)] += n
        col_samples[(nid, col)] += n

    facets = {name: _facet_column(conn, f, vocab, active, ks, name) for name in _COLUMN_FACETS}
    facets["dataset_type"] = _facet_side(conn, f, vocab, active, ks, combo_datasets.c.code,
                                         combo_datasets.c.combo_id, "dataset_type")
    facets["use_conditions"] = _facet_side(conn, f, vocab, active, ks, combo_uses.c.code,
                                           combo_uses.c.combo_id, "duo")
    chapters = (select(combo_diagnoses.c.combo_id, combo_diagnoses.c.chapter)
                .where(combo_diagnoses.c.chapter.is_not(None)).distinct().subquery())
    facets["diagnosis_chapter"] = _facet_side(conn, f, vocab, active, ks, chapters.c.chapter,
                                              chapters.c.combo_id, "icd10")

    declared = _declared_collections(conn, f, vocab, active, node_rows)
    for nid, content in declared:
        bb_samples.setdefault((nid, content.get("biobank", "")), 0)

    collection_keys = [(k, n) for k, n in col_samples.items() if n > 0]
    collection_keys.sort(key=lambda kn: (-kn[1], kn[0][1]))
    items_all: list[tuple[tuple[int, str], int | None]] = list(collection_keys)
    items_all += [((nid, content["id"]), None) for nid, content in
                  sorted(declared, key=lambda d: (-(d[1].get("size") or 0), d[1]["id"]))]
    col_page = _page(items_all, f.collections_page, f.page_size)
    col_records = _load(conn, "collection", [k for k, _n in col_page])
    collections_out = []
    for (nid, cid), n in col_page:
        rec = col_records.get((nid, cid), {})
        collections_out.append({
            "id": cid, "biobank": rec.get("biobank"), "name": rec.get("name"),
            "description": rec.get("description"), "contact": rec.get("contact"),
            "use_conditions": rec.get("use_conditions", []),
            "dataset_types": rec.get("dataset_types", []), "design": rec.get("design", []),
            "samples": None if n is None else protect(n, ks[nid]),
            "declared_size": rec.get("size"),
            "count_source": "declared" if n is None else "samples", "provenance": prov(nid)})

    bb_keys = sorted(bb_samples.items(), key=lambda kn: (-kn[1], kn[0][1]))
    bb_page = _page(bb_keys, f.page, f.page_size)
    bb_records = _load(conn, "biobank", [k for k, _n in bb_page])
    biobanks_out = []
    for (nid, bid), n in bb_page:
        rec = bb_records.get((nid, bid), {})
        biobanks_out.append({
            "id": bid, "name": rec.get("name"), "acronym": rec.get("acronym"),
            "country": rec.get("country") or node_rows[nid].country,
            "description": rec.get("description"), "contact": rec.get("contact"),
            "url": rec.get("url"), "quality_standards": rec.get("quality_standards", []),
            "samples": protect(n, ks[nid]), "provenance": prov(nid)})

    return {
        "query": f.normalised(),
        "total": total.protected().get(None, 0),
        "counts": {"country": by_country.items(), "biobank": by_biobank.items(),
                   "collection": by_collection.items()},
        "facets": facets,
        "biobanks": {"items": biobanks_out, "page": f.page, "page_size": f.page_size,
                     "total": len(bb_keys)},
        "collections": {"items": collections_out, "page": f.collections_page,
                        "page_size": f.page_size, "total": len(items_all)},
        "nodes": [{"origin": s["origin"], "country": s["country"], "stale": s["stale"],
                   "alerts": s["alerts"]} for s in status.values()],
    }


class _Agg:
    """Sums per code across nodes; a sum is protected with the largest k among its contributors."""

    def __init__(self, ks: dict[int, int]) -> None:
        self.ks = ks
        self.sums: dict[Any, int] = defaultdict(int)
        self.k: dict[Any, int] = defaultdict(int)

    def add(self, code: Any, nid: int, n: int) -> None:
        if n <= 0:
            return
        self.sums[code] += n
        self.k[code] = max(self.k[code], self.ks.get(nid, DEFAULT_K))

    def protected(self) -> dict[Any, int | str]:
        return {code: protect(n, self.k[code]) for code, n in self.sums.items()}

    def items(self) -> list[dict[str, Any]]:
        order = sorted(self.sums.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return [{"code": code, "count": protect(n, self.k[code])} for code, n in order
                if code is not None]


def _conditions(f: Filters, vocab: Vocabulary, active: list[int],
                skip: str | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [c.c.node_id.in_(active), c.c.n > 0]
    lists = {k: v for k, v in f.lists.items() if k != skip}
    if "sample_type" in lists:
        conds.append(c.c.sample_type.in_(vocab.with_children("sample-type",
                                                             lists["sample_type"])))
    for name in ("storage_temperature", "sex", "country", "biobank", "collection"):
        if name in lists:
            conds.append(c.c[name].in_(lists[name]))
    if f.age_min is not None:
        conds.append(c.c.age_max >= f.age_min)
    if f.age_max is not None:
        conds.append(c.c.age_min <= f.age_max)
    if f.period_from is not None:
        conds.append(c.c.year_to >= f.period_from)
    if f.period_to is not None:
        conds.append(c.c.year_from <= f.period_to)
    d = combo_diagnoses.c
    if f.icd10 and skip != "icd10":
        alts = [d.code.like(i.prefix + "%") if i.prefix else d.code3.between(i.low, i.high)
                for i in f.icd10]
        conds.append(exists().where(d.combo_id == c.c.id, d.system == "ICD-10", or_(*alts)))
    if "orpha" in lists:
        conds.append(exists().where(d.combo_id == c.c.id, d.system == "ORPHA",
                                    d.code.in_(lists["orpha"])))
    if "duo" in lists:
        conds.append(exists().where(combo_uses.c.combo_id == c.c.id,
                                    combo_uses.c.code.in_(lists["duo"])))
    if "dataset_type" in lists:
        conds.append(exists().where(combo_datasets.c.combo_id == c.c.id,
                                    combo_datasets.c.code.in_(lists["dataset_type"])))
    return conds


def _facet_column(conn: Connection, f: Filters, vocab: Vocabulary, active: list[int],
                  ks: dict[int, int], name: str) -> list[dict[str, Any]]:
    col = c.c[_COLUMN_FACETS[name]]
    agg = _Agg(ks)
    q = (select(col, c.c.node_id, func.sum(c.c.n))
         .where(*_conditions(f, vocab, active, skip=name)).group_by(col, c.c.node_id))
    for code, nid, n in conn.execute(q):
        agg.add(code, nid, int(n or 0))
    return agg.items()


def _facet_side(conn: Connection, f: Filters, vocab: Vocabulary, active: list[int],
                ks: dict[int, int], code_col: Any, combo_col: Any,
                skip: str) -> list[dict[str, Any]]:
    agg = _Agg(ks)
    q = (select(code_col, c.c.node_id, func.sum(c.c.n)).select_from(c)
         .join(combo_col.table, combo_col == c.c.id)
         .where(*_conditions(f, vocab, active, skip=skip)).group_by(code_col, c.c.node_id))
    for code, nid, n in conn.execute(q):
        agg.add(code, nid, int(n or 0))
    return agg.items()


def _page(items: list[Any], page: int, size: int) -> list[Any]:
    return items[(page - 1) * size: page * size]


def _load(conn: Connection, kind: str,
          keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    keys = list(keys)
    if not keys:
        return {}
    q = select(records.c.node_id, records.c.record_id, records.c.content).where(
        records.c.kind == kind, or_(*[and_(records.c.node_id == nid, records.c.record_id == rid)
                                      for nid, rid in keys]))
    return {(r.node_id, r.record_id): orjson.loads(r.content) for r in conn.execute(q)}


def _declared_collections(conn: Connection, f: Filters, vocab: Vocabulary, active: list[int],
                          node_rows: dict[int, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Collection records with no live samples that match the filters on their own attributes."""
    with_samples = set(conn.execute(select(c.c.node_id, c.c.collection)
                                    .where(c.c.n > 0).distinct()).all())
    countries = {(r.node_id, r.record_id): r.country for r in conn.execute(
        select(records.c.node_id, records.c.record_id, records.c.country)
        .where(records.c.kind == "biobank"))}
    out = []
    for r in conn.execute(select(records.c.node_id, records.c.record_id, records.c.content)
                          .where(records.c.kind == "collection", records.c.node_id.in_(active))):
        if (r.node_id, r.record_id) in with_samples:
            continue
        content = orjson.loads(r.content)
        country = countries.get((r.node_id, content.get("biobank"))) or node_rows[r.node_id].country
        if declared_match(content, country, f, vocab):
            out.append((r.node_id, content))
    return out


def declared_match(col: dict[str, Any], country: str | None, f: Filters,
                   vocab: Vocabulary) -> bool:
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
            checks.append((f.age_min is None or hi >= f.age_min)
                          and (f.age_max is None or lo <= f.age_max))
    return all(checks)


def _icd_match(code: str, f: Filters) -> bool:
    for cond in f.icd10:
        if cond.prefix is not None and code.startswith(cond.prefix):
            return True
        if cond.low is not None and cond.high is not None and cond.low <= code[:3] <= cond.high:
            return True
    return False
