"""Parse and validate /v1/search query parameters into `Filters` (bad ones: FilterError)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalogue.codes import Vocabulary
from catalogue.errors import FilterError

ICD10_CODE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
ICD10_BLOCK = re.compile(r"^([A-Z][0-9]{2})-([A-Z][0-9]{2})$")
ORPHA_CODE = re.compile(r"^ORPHA:[0-9]{1,8}$")
MAX_PAGE_SIZE = 100
MAX_VALUES = 200

# parameter name -> code list it is checked against
CODED = {
    "sample_type": "sample-type",
    "storage_temperature": "storage-temperature",
    "sex": "sex",
    "dataset_type": "dataset-type",
    "duo": "duo",
    "country": "country",
}
INTS = ("age_min", "age_max", "period_from", "period_to", "page", "page_size", "collections_page")
FREE_IDS = ("biobank", "collection")
KNOWN = (*CODED, *INTS, *FREE_IDS, "icd10", "orpha")


@dataclass(frozen=True)
class Icd10:
    """One ICD-10 condition: a code prefix, or an inclusive range of three-character categories."""

    prefix: str | None = None
    low: str | None = None
    high: str | None = None


@dataclass
class Filters:
    """A validated search: list filters are OR within a parameter and AND across parameters."""

    lists: dict[str, list[str]] = field(default_factory=dict)  # CODED + FREE_IDS + orpha
    icd10: list[Icd10] = field(default_factory=list)
    icd10_raw: list[str] = field(default_factory=list)
    age_min: int | None = None
    age_max: int | None = None
    period_from: int | None = None
    period_to: int | None = None
    page: int = 1
    page_size: int = 20
    collections_page: int = 1

    def normalised(self) -> dict[str, Any]:
        """The query as understood, for the response's "query" member."""
        out: dict[str, Any] = {k: v for k, v in sorted(self.lists.items()) if v}
        if self.icd10_raw:
            out["icd10"] = self.icd10_raw
        for name in ("age_min", "age_max", "period_from", "period_to"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(page=self.page, page_size=self.page_size,
                   collections_page=self.collections_page)
        return out


    def selected(self, param: str, vocab: Vocabulary) -> frozenset[str] | None:
        """The facet codes that a given parameter keeps (None when it is not given): its
        codes, sample types with their descendants, the chapters an ICD-10 filter touches."""
        if param == "icd10":
            if not self.icd10:
                return None
            out = set()
            for chapter in vocab.codes("icd10-chapter"):
                low, high = vocab.chapter_range(chapter) or ("", "")
                for cond in self.icd10:
                    lo = cond.prefix[:3] if cond.prefix else cond.low or ""
                    hi = cond.prefix[:3] if cond.prefix else cond.high or ""
                    if lo <= high and low <= hi:
                        out.add(chapter)
            return frozenset(out)
        values = self.lists.get(param)
        if not values:
            return None
        if param == "sample_type":
            return frozenset(vocab.with_children("sample-type", values))
        return frozenset(values)


def parse_filters(params: Mapping[str, Sequence[str]], vocab: Vocabulary) -> Filters:
    """Validate every parameter; collect all problems and raise one FilterError naming each."""
    bad: list[dict[str, str]] = []
    f = Filters()
    for name in params:
        if name not in KNOWN:
            bad.append({"name": name, "reason": "unknown search parameter"})
    for name, listname in CODED.items():
        values = _values(params, name, bad)
        known = vocab.codes(listname)
        for v in values:
            if v not in known:
                bad.append({"name": name, "reason": f"unknown code {v!r} in code list {listname}"})
        if values:
            f.lists[name] = values
    for name in FREE_IDS:
        values = _values(params, name, bad)
        for v in values:
            if not v or len(v) > 255:
                bad.append({"name": name, "reason": "an identifier of 1 to 255 characters"})
        if values:
            f.lists[name] = values
    orpha = _values(params, "orpha", bad)
    for v in orpha:
        if not ORPHA_CODE.match(v):
            bad.append({"name": "orpha", "reason": f"{v!r} is not an ORPHA code like ORPHA:558"})
    if orpha:
        f.lists["orpha"] = orpha
    for v in _values(params, "icd10", bad):
        cond = _icd10(v, vocab)
        if cond is None:
            bad.append({"name": "icd10", "reason": f"{v!r} is not an ICD-10 code (C50, C50.9), "
                        "block range (C00-C97) or chapter (II)"})
        else:
            f.icd10.append(cond)
            f.icd10_raw.append(v)
    for name in INTS:
        raw = _values(params, name, bad)
        if not raw:
            continue
        if len(raw) > 1:
            bad.append({"name": name, "reason": "given more than once"})
            continue
        value = _int(raw[0])
        low, high = (1, 100_000) if name.startswith(("page", "collections")) else (0, 9999)
        if name == "page_size":
            high = MAX_PAGE_SIZE
        if value is None or not low <= value <= high:
            bad.append({"name": name,
                        "reason": f"{raw[0]!r} is not an integer from {low} to {high}"})
            continue
        setattr(f, name, value)
    if f.age_min is not None and f.age_max is not None and f.age_min > f.age_max:
        bad.append({"name": "age_max", "reason": "age_max is smaller than age_min"})
    if (f.period_from is not None and f.period_to is not None
            and f.period_from > f.period_to):
        bad.append({"name": "period_to", "reason": "period_to is before period_from"})
    if bad:
        raise FilterError(bad)
    return f


def _values(params: Mapping[str, Sequence[str]], name: str, bad: list[dict[str, str]]) -> list[str]:
    raw = list(params.get(name, ()))
    values = [v.strip() for item in raw for v in item.split(",") if v.strip()]
    if len(values) > MAX_VALUES:
        bad.append({"name": name, "reason": f"more than {MAX_VALUES} values"})
        return []
    return list(dict.fromkeys(values))


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?[0-9]{1,9}", text.strip()) else None


def _icd10(value: str, vocab: Vocabulary) -> Icd10 | None:
    code = value.upper()
    if ICD10_CODE.match(code):
        return Icd10(prefix=code)
    m = ICD10_BLOCK.match(code)
    if m and m.group(1) <= m.group(2):
        return Icd10(low=m.group(1), high=m.group(2))
    chapter = vocab.chapter_range(code)
    if chapter is not None:
        return Icd10(low=chapter[0], high=chapter[1])
    return None
