"""The /v1/search parameters, declared once (`FILTERS`), and their parsing into `Filters`.

`FILTERS` is the one table of search parameters: the API declares its query parameters
from it (so /openapi.json documents each) and `parse_filters` validates by it; a bad value
or an unknown parameter is a FilterError naming each problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from catalogue.errors import FilterError
from catalogue.search.codes import Vocabulary

__all__ = ["FILTERS", "FilterDef", "Filters", "Icd10", "parse_filters"]

ICD10_CODE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
ICD10_BLOCK = re.compile(r"^([A-Z][0-9]{2})-([A-Z][0-9]{2})$")
ORPHA_CODE = re.compile(r"^ORPHA:[0-9]{1,8}$")
MAX_PAGE_SIZE = 100
MAX_VALUES = 200
MAX_PAGE = 100_000
MAX_NUMBER = 9999  # ages and years

Kind = Literal["code", "id", "orpha", "icd10", "int"]


@dataclass(frozen=True)
class FilterDef:
    """One search parameter: its kind says how a value is checked (`code`: against the code
    list `code_list`; `id`: 1 to 255 characters; `orpha`, `icd10`: the code syntax; `int`:
    an integer from `low` to `high`). A repeatable one takes several values, repeated or
    comma-separated (OR within the parameter); the others take one."""

    name: str
    kind: Kind
    description: str
    repeatable: bool = True
    code_list: str | None = None
    low: int = 0
    high: int = 0

    @property
    def help(self) -> str:
        """The description the API documents (OpenAPI): what it does and what it takes."""
        text = self.description
        if self.code_list is not None:
            text += f"; codes of the code list {self.code_list} (/v1/codelists/{self.code_list})"
        if self.kind == "int":
            text += f"; an integer from {self.low} to {self.high}"
        if self.repeatable:
            text += f"; repeatable, or comma-separated (at most {MAX_VALUES} values)"
        return text


# The search parameters, in the order they are checked (and problems are reported).
FILTERS: tuple[FilterDef, ...] = (
    FilterDef(
        "sample_type",
        "code",
        "sample type; a parent type matches its children",
        code_list="sample-type",
    ),
    FilterDef(
        "storage_temperature", "code", "storage temperature", code_list="storage-temperature"
    ),
    FilterDef("sex", "code", "donor sex", code_list="sex"),
    FilterDef(
        "dataset_type", "code", "type of data available with the samples", code_list="dataset-type"
    ),
    FilterDef("duo", "code", "data use conditions (DUO)", code_list="duo"),
    FilterDef(
        "country", "code", "country of the biobank (ISO 3166-1 alpha-2)", code_list="country"
    ),
    FilterDef(
        "biobank",
        "id",
        "biobank identifier (of every node publishing one; with `node`, of those nodes only)",
    ),
    FilterDef(
        "collection",
        "id",
        "collection identifier (of every node publishing one; with `node`, of those nodes only)",
    ),
    FilterDef(
        "node",
        "id",
        "origin of the node that publishes the biobanks and collections (an id belongs to "
        "the node publishing it)",
    ),
    FilterDef("orpha", "orpha", "rare disease code, like ORPHA:558"),
    FilterDef(
        "icd10",
        "icd10",
        "diagnosis: an ICD-10 code as prefix (C50, C50.9), a block "
        "range (C00-C97) or a chapter (II)",
    ),
    FilterDef(
        "age_min",
        "int",
        "age band overlaps [age_min, age_max] (years)",
        repeatable=False,
        high=MAX_NUMBER,
    ),
    FilterDef(
        "age_max", "int", "upper end of the age band (years)", repeatable=False, high=MAX_NUMBER
    ),
    FilterDef(
        "period_from",
        "int",
        "collection period overlaps [period_from, period_to] (years)",
        repeatable=False,
        high=MAX_NUMBER,
    ),
    FilterDef(
        "period_to",
        "int",
        "upper end of the collection period (year)",
        repeatable=False,
        high=MAX_NUMBER,
    ),
    FilterDef(
        "page",
        "int",
        "page of the biobank results (default 1)",
        repeatable=False,
        low=1,
        high=MAX_PAGE,
    ),
    FilterDef(
        "page_size",
        "int",
        "items per page of biobanks and of collections (default 20)",
        repeatable=False,
        low=1,
        high=MAX_PAGE_SIZE,
    ),
    FilterDef(
        "collections_page",
        "int",
        "page of the collection results (default 1)",
        repeatable=False,
        low=1,
        high=MAX_PAGE,
    ),
)
BY_NAME = {d.name: d for d in FILTERS}

# the parameters a record's own field names (schemas/sample-group.json), and a few common
# words for them, mean: what an unknown parameter's reason suggests
_MEANT = {
    "diagnoses": ("icd10", "orpha"),
    "diagnosis": ("icd10", "orpha"),
    "disease": ("icd10", "orpha"),
    "use_conditions": ("duo",),
    "data_use": ("duo",),
    "dataset_types": ("dataset_type",),
    "age": ("age_min", "age_max"),
    "period": ("period_from", "period_to"),
    "year": ("period_from", "period_to"),
    "gender": ("sex",),
    "material": ("sample_type",),
    "material_type": ("sample_type",),
    "temperature": ("storage_temperature",),
}


def unknown_reason(name: str) -> str:
    """Why `name` is refused, with the parameters it most likely meant (a record's field name,
    or a close spelling), else the list of known ones."""
    meant = _MEANT.get(name.lower()) or tuple(
        difflib.get_close_matches(name.lower(), list(BY_NAME), n=2, cutoff=0.75)
    )
    if meant:
        return "unknown search parameter; did you mean " + " or ".join(meant) + "?"
    return "unknown search parameter; known: " + ", ".join(BY_NAME)


@dataclass(frozen=True)
class Icd10:
    """One ICD-10 condition: a code prefix, or an inclusive range of three-character categories."""

    prefix: str | None = None
    low: str | None = None
    high: str | None = None


@dataclass
class Filters:
    """A validated search: list filters are OR within a parameter and AND across parameters."""

    lists: dict[str, list[str]] = field(default_factory=dict)  # codes, ids and orpha
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
        out.update(page=self.page, page_size=self.page_size, collections_page=self.collections_page)
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
        if name not in BY_NAME:
            bad.append({"name": name, "reason": unknown_reason(name)})
    for d in FILTERS:
        name = d.name
        values = _values(params, name, bad)
        if not values:
            continue
        if not d.repeatable and len(values) > 1:
            bad.append({"name": name, "reason": "given more than once"})
            continue
        if d.kind == "int":
            _parse_int(d, values[0], f, bad)
            continue
        for v in values:
            reason = _check(d, v, vocab, f)
            if reason is not None:
                bad.append({"name": name, "reason": reason})
        if d.kind != "icd10":
            f.lists[name] = values
    if f.age_min is not None and f.age_max is not None and f.age_min > f.age_max:
        bad.append({"name": "age_max", "reason": "age_max is smaller than age_min"})
    if f.period_from is not None and f.period_to is not None and f.period_from > f.period_to:
        bad.append({"name": "period_to", "reason": "period_to is before period_from"})
    if bad:
        raise FilterError(bad)
    return f


def _check(d: FilterDef, v: str, vocab: Vocabulary, f: Filters) -> str | None:
    """Why one value of a list parameter is refused (None: it is valid; an ICD-10 condition
    is then added to `f`)."""
    if d.code_list is not None:  # kind "code"
        if v not in vocab.codes(d.code_list):
            return vocab.unknown(d.code_list, v)
    elif d.kind == "id":
        if not v or len(v) > 255:
            return "an identifier of 1 to 255 characters"
    elif d.kind == "orpha":
        if not ORPHA_CODE.match(v):
            return f"{v!r} is not an ORPHA code like ORPHA:558"
    else:
        cond = _icd10(v, vocab)
        if cond is None:
            return (
                f"{v!r} is not an ICD-10 code (C50, C50.9), block range (C00-C97) or chapter (II)"
            )
        f.icd10.append(cond)
        f.icd10_raw.append(v)
    return None


def _parse_int(d: FilterDef, raw: str, f: Filters, bad: list[dict[str, str]]) -> None:
    value = _int(raw)
    if value is None or not d.low <= value <= d.high:
        bad.append(
            {"name": d.name, "reason": f"{raw!r} is not an integer from {d.low} to {d.high}"}
        )
        return
    setattr(f, d.name, value)


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
