"""Beacon filters -> the catalogue's /v1/search parameters, and the terms /filtering_terms lists.

A Beacon request is translated into the same parameters a /v1/search URL carries and parsed
by `catalogue.search.parse_filters`, so a Beacon count is the search's count for the same
filters by construction. Accepted terms (docs/beacon.md):

- ontology: ``ICD10:<code|block|chapter>`` (descendants always included: ICD10:C50 finds
  C50.9), ``ORPHA:<n>`` (also ``Orphanet:<n>``), ``DUO:<n>``, sex as NCIT terms;
- alphanumeric: ``age`` (or NCIT:C25150) with an ISO 8601 duration and ``=, <, <=, >, >=``;
- custom: ``<parameter>:<value>`` for sample_type, storage_temperature, dataset_type,
  country, biobank, collection and node (the origin of the node that publishes them: a
  biobank or collection id belongs to its node, so ``biobank:X`` with ``node:O`` counts
  node O's biobank X only).

Beacon filters combine with AND; the search ORs the values of one parameter, so two
different values of one parameter (other than age bounds) are refused, never widened.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalogue.errors import FilterError
from catalogue.search import Filters, Vocabulary, parse_filters
from catalogue.search.filters import MAX_NUMBER
from protocol.codelists import CodeLists

__all__ = [
    "AGE_IDS",
    "CUSTOM_PARAMS",
    "SEX_NCIT",
    "Translation",
    "filtering_terms",
    "parse_get_filters",
    "translate",
]

SEX_NCIT = {
    "NCIT:C16576": "female",
    "NCIT:C20197": "male",
    "NCIT:C17649": "other",
    "NCIT:C17998": "unknown",
}
NCIT_OF_SEX = {v: k for k, v in SEX_NCIT.items()}
AGE_IDS = ("age", "NCIT:C25150")
CUSTOM_PARAMS = (
    "sample_type",
    "storage_temperature",
    "dataset_type",
    "country",
    "biobank",
    "collection",
    "node",  # the node publishing the biobanks and collections (an id belongs to its node)
)
_CODE_LISTS = {
    "sample_type": "sample-type",
    "storage_temperature": "storage-temperature",
    "dataset_type": "dataset-type",
    "country": "country",
}
_OPERATORS = ("=", "<", "<=", ">", ">=")
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?$"
)
_GET_ALPHANUMERIC = re.compile(r"^([A-Za-z_][A-Za-z0-9_:]*?)(<=|>=|=|<|>|!)(.+)$")


@dataclass
class Translation:
    """A Beacon query as the search understands it, or why it cannot be answered.

    `unknown`: filter ids this Beacon does not accept; `problems`: accepted ids used in a way
    it cannot answer (bad value, unsupported operator). Either makes the answer an error."""

    filters: Filters | None = None
    params: dict[str, list[str]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.filters is not None and not self.unknown and not self.problems


def parse_get_filters(raw: Iterable[str]) -> list[dict[str, Any]]:
    """GET ``filters=`` values (comma-separated, repeatable) as Beacon filter objects; an
    alphanumeric filter is written ``age>=P40Y``."""
    out: list[dict[str, Any]] = []
    for item in raw:
        for text in (t.strip() for t in item.split(",")):
            if not text:
                continue
            m = _GET_ALPHANUMERIC.match(text)
            if m and m.group(1) in AGE_IDS:
                out.append({"id": m.group(1), "operator": m.group(2), "value": m.group(3)})
            else:
                out.append({"id": text})
    return out


def translate(beacon_filters: Sequence[Any], vocab: Vocabulary) -> Translation:
    """Translate Beacon filter objects (or bare id strings) into validated search Filters."""
    t = Translation()
    age_low: int | None = None
    age_high: int | None = None
    for raw in beacon_filters:
        item: Mapping[str, Any] = {"id": raw} if isinstance(raw, str) else raw
        fid = item.get("id") if isinstance(item, Mapping) else None
        if not isinstance(fid, str) or not fid:
            t.problems.append(f"a filter without an id: {raw!r}")
            continue
        t.ids.append(fid)
        if fid in AGE_IDS:
            bounds = _age_bounds(item, t)
            if bounds is not None:
                lo, hi = bounds
                if lo is not None:
                    age_low = lo if age_low is None else max(age_low, lo)
                if hi is not None:
                    age_high = hi if age_high is None else min(age_high, hi)
            continue
        if "operator" in item or "value" in item:
            t.problems.append(f"{fid}: only age takes an operator and a value")
            continue
        target = _param_of(fid, vocab)
        if target is None:
            t.unknown.append(fid)
            continue
        param, value = target
        if item.get("includeDescendantTerms") is False and param in ("icd10", "sample_type"):
            t.problems.append(
                f"{fid}: includeDescendantTerms false is not supported; "
                "this Beacon always includes descendant terms"
            )
            continue
        have = t.params.setdefault(param, [])
        if have and value not in have:
            t.problems.append(
                f"{fid}: Beacon filters combine with AND and this Beacon answers one "
                f"{param} term per query (already {have[0]})"
            )
            continue
        if value not in have:
            have.append(value)
    if age_low is not None and age_high is not None and age_low > age_high:
        t.problems.append("age: the conditions together leave no age")
    if age_low is not None:
        t.params["age_min"] = [str(age_low)]
    if age_high is not None:
        t.params["age_max"] = [str(age_high)]
    if t.unknown or t.problems:
        return t
    try:
        t.filters = parse_filters(t.params, vocab)
    except FilterError as exc:
        t.problems.extend(f"{p['name']}: {p['reason']}" for p in exc.invalid_params)
    return t


def _param_of(fid: str, vocab: Vocabulary) -> tuple[str, str] | None:
    """The search parameter and value a non-age filter id stands for (None: unknown)."""
    if fid in SEX_NCIT:
        return "sex", SEX_NCIT[fid]
    if fid in vocab.codes("duo"):  # DUO terms (and the OBI terms the DUO code list holds)
        return "duo", fid
    prefix, sep, rest = fid.partition(":")
    if not sep or not rest:
        return None
    if prefix == "ICD10":
        return "icd10", rest
    if prefix in ("ORPHA", "Orphanet"):
        return "orpha", f"ORPHA:{rest}"
    if prefix == "DUO":
        return "duo", fid
    if prefix in CUSTOM_PARAMS:
        return prefix, rest
    return None


def _age_bounds(item: Mapping[str, Any], t: Translation) -> tuple[int | None, int | None] | None:
    """[low, high] whole years an age filter keeps (None: open; the search keeps the groups
    whose age band overlaps it); None when the filter is refused."""
    fid, op, value = item.get("id"), item.get("operator", "="), item.get("value")
    if op not in _OPERATORS:
        t.problems.append(f"{fid}: operator {op!r} is not supported (use one of {_OPERATORS})")
        return None
    years = _years(value) if isinstance(value, str) else None
    if years is None:
        t.problems.append(f"{fid}: {value!r} is not an ISO 8601 duration like P40Y")
        return None
    floor, ceil = math.floor(years), math.ceil(years)
    low, high = {
        "=": (floor, floor),
        ">=": (ceil, None),
        ">": (floor + 1, None),
        "<=": (None, floor),
        "<": (None, ceil - 1),
    }[op]
    if any(b is not None and not 0 <= b <= MAX_NUMBER for b in (low, high)):
        t.problems.append(f"{fid}: {op}{value} leaves no age from 0 to {MAX_NUMBER} years")
        return None
    return low, high


def _years(text: str) -> float | None:
    m = _DURATION.match(text.strip())
    if m is None:
        return None
    y, mo, w, d = (float(g) if g else 0.0 for g in m.groups())
    return y + mo / 12 + w / 52 + d / 365


def filtering_terms(vocab: Vocabulary, ids: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    """Every term this Beacon accepts, with English labels; `ids` are the biobank and
    collection identifiers and the origins of the active nodes ({"biobank": [...],
    "collection": [...], "node": [...]})."""
    lists = CodeLists.default()
    scopes = ["biosample", "individual"]
    out: list[dict[str, Any]] = []
    chapter_labels = {c.code: c.en for c in lists.get("icd10-chapter").entries}
    for chapter in (c.code for c in lists.get("icd10-chapter").entries):
        low, high = vocab.chapter_range(chapter) or ("", "")
        out.append(
            {
                "type": "ontology",
                "id": f"ICD10:{chapter}",
                "label": f"ICD-10 chapter {chapter} ({low}-{high}): "
                f"{chapter_labels.get(chapter, '')}; any ICD-10 code or block "
                "within it is accepted too (ICD10:C50, ICD10:C50.9, ICD10:C00-C97)",
                "scopes": scopes,
            }
        )
    for code in lists.get("orpha").entries:
        out.append({"type": "ontology", "id": code.code, "label": code.en, "scopes": scopes})
    for code in lists.get("duo").entries:
        out.append({"type": "ontology", "id": code.code, "label": code.en, "scopes": scopes})
    for code in lists.get("sex").entries:
        out.append(
            {"type": "ontology", "id": NCIT_OF_SEX[code.code], "label": code.en, "scopes": scopes}
        )
    out.append(
        {
            "type": "alphanumeric",
            "id": "age",
            "label": "age of the donor at collection (ISO 8601 duration, e.g. P40Y); "
            "operators =, <, <=, >, >=; also as NCIT:C25150",
            "scopes": scopes,
        }
    )
    for param in CUSTOM_PARAMS:
        if param in _CODE_LISTS:
            for code in lists.get(_CODE_LISTS[param]).entries:
                out.append(
                    {
                        "type": "custom",
                        "id": f"{param}:{code.code}",
                        "label": code.en,
                        "scopes": scopes,
                    }
                )
        else:
            for value in sorted(set(ids.get(param, ()))):
                out.append(
                    {"type": "custom", "id": f"{param}:{value}", "label": value, "scopes": scopes}
                )
    return out
