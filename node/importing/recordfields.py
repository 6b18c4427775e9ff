"""Build biobank and collection record content from flat field values, mapping codes."""

from __future__ import annotations

import re
from collections.abc import Callable

from node.importing.codes import NO_VALUE, Codes, diagnosis, not_available
from protocol.errors import Problem

__all__ = ["CODED", "INTEGERS", "LISTS", "build"]


CODED = {
    "sample_types": "sample-type",
    "storage_temperatures": "storage-temperature",
    "sex": "sex",
    "dataset_types": "dataset-type",
    "design": "collection-design",
    "collection_setting": "collection-setting",
    "use_conditions": "duo",
    "quality_standards": "quality-standard",
    "capabilities": "capability",
    "sample_source": "sample-source",
    "country": "country",
    "age.unit": "age-unit",
}
INTEGERS = frozenset({"number_of_subjects", "size", "age.min", "age.max"})
LISTS = frozenset(
    {
        "sample_types",
        "storage_temperatures",
        "sex",
        "dataset_types",
        "design",
        "collection_setting",
        "use_conditions",
        "quality_standards",
        "capabilities",
        "diagnoses",
    }
)


def build(
    kind: str,
    flat: dict[str, object],
    location: str,
    codes: Codes,
    sources: tuple[str, ...] = (),
    names: dict[str, str] | None = None,
    dropped: Callable[[str, object], None] | None = None,
) -> tuple[dict[str, object], list[Problem]]:
    """Nested record content from ``{"contact.email": ..., "sex": [...], ...}``.

    Empty values are left out. Unknown codes are problems; with ``dropped`` (FHIR and
    Directory exports, whose lists carry codes outside our lists) they are left out and
    passed to ``dropped(field, value)`` for the report instead.
    """
    names = names or {}
    problems: list[Problem] = []
    content: dict[str, object] = {}

    def bad(fld: str, value: object, reason: str) -> None:
        problems.append(
            Problem(location, names.get(fld, "/" + fld.replace(".", "/")), value, reason)
        )

    for fld, value in flat.items():
        if value is None or value == "" or value == []:
            continue
        if fld in LISTS:
            items = value if isinstance(value, list) else [value]
            converted = [
                c
                for c in (
                    _one(fld, str(v).strip(), codes, sources, bad, dropped)
                    for v in items
                    if str(v).strip()
                )
                if c is not None
            ]
            converted = _dedupe(converted)
            if converted:
                _put(content, fld, converted)
        elif fld in INTEGERS:
            text = str(value).strip()
            if isinstance(value, int) or re.fullmatch(r"-?\d+", text):
                _put(content, fld, int(text))
            else:
                bad(fld, value, "not a whole number")
        elif fld in CODED:
            code = _one(fld, str(value).strip(), codes, sources, bad, dropped)
            if code is not None:
                _put(content, fld, code)
        else:
            _put(content, fld, str(value).strip() if isinstance(value, str) else value)
    return content, problems


def _one(
    fld: str,
    value: str,
    codes: Codes,
    sources: tuple[str, ...],
    bad: Callable[[str, object, str], None],
    dropped: Callable[[str, object], None] | None,
) -> object | None:
    """Our code for one value; None when it is unknown (reported) or says "no value"."""
    if fld == "diagnoses":
        if not_available(value):
            return None  # "not available" (NAV, UNK, ...): no value, on purpose
        # the schema takes blocks and chapters wherever it takes codes; Directory
        # collections write a chapter as its bare numeral (II)
        code: object | None = diagnosis(value, bare_chapter=True)
        reason = (
            "not an ICD-10 code (C50.9, a block C76-C80, a chapter urn:miriam:icd:II) "
            "or ORPHA code (ORPHA:558)"
        )
    else:
        code = codes.map(CODED[fld], value, sources)
        if code == NO_VALUE:
            return None
        reason = codes.unknown(CODED[fld], fld, value) if code is None else ""
    if code is None:
        if dropped is not None:
            dropped(fld, value)
        else:
            bad(fld, value, reason)
    return code


def _dedupe(items: list[object]) -> list[object]:
    out: list[object] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _put(content: dict[str, object], fld: str, value: object) -> None:
    if "." in fld:
        outer, inner = fld.split(".", 1)
        sub = content.setdefault(outer, {})
        assert isinstance(sub, dict)
        sub[inner] = value
    else:
        content[fld] = value
