"""Code checking and mapping: shared code lists plus the mapping tables in schemas/mappings.

Codes are matched as people write them (see "Codes" in ``schemas/README.md``):

* case, spaces, ``_`` and ``-`` do not matter (``blood``, ``BLOOD``, ``Whole blood`` and
  ``WHOLE_BLOOD`` all find their code), nor do the code list's English labels;
* CURIE, URN and URL prefixes of one code system are the same code (``ICD10:I83``,
  ``urn:miriam:icd:I83``, ``ORPHA:558``, ``Orphanet_558``, ``ordo:Orphanet_558``,
  ``obo:DUO_0000042``);
* ICD-10 blocks (``C76-C80``) and chapters (``urn:miriam:icd:II`` -> its range
  ``C00-D48``) are diagnoses like any other ICD-10 code;
* "not available" codes (``NAV``, ``NAV_*``, ``NASK``, ``NI``, ``NA``, ``UNK``, ...) are no
  value, on purpose: :data:`NO_VALUE`, never a problem;
* an unknown code's problem names the nearest known codes (:meth:`Codes.unknown`).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Final

from protocol.codelists import SHOWN_CODES, CodeLists

__all__ = [
    "CODE_LIST_WORDS",
    "ICD10",
    "NO_VALUE",
    "ORPHA",
    "Codes",
    "diagnosis",
    "key",
    "not_available",
]

ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
ICD10_BLOCK = re.compile(r"^([A-Z][0-9]{2})-([A-Z][0-9]{2})$")
ORPHA = re.compile(r"^ORPHA:[0-9]+$")

#: what :meth:`Codes.map` returns for a value that says "no value" ("not available", ...)
NO_VALUE: Final = ""

# HL7 v3 null flavours and the Directory's "not available" codes, as people write them
_NOT_AVAILABLE = frozenset(
    {
        "na",
        "n/a",
        "n.a.",
        "nav",
        "navu",
        "nask",
        "ni",
        "unk",
        "unknown",
        "asku",
        "msk",
        "np",
        "null",
        "notavailable",
        "notasked",
        "notapplicable",
        "noinformation",
        "*",
        "-",
        "?",
    }
)
_ICD_PREFIX = re.compile(
    r"^(?:urn:miriam:icd:|https?://identifiers\.org/icd:"
    r"|icd[-_ ]?10(?:[-_ ]?(?:who|gm|cm))?(?:[-_ ]?[0-9]{4})?\s*[:_ ]\s*"
    r"|icd\s*:|https?://icd\.who\.int/browse10/[^#]*#/)",
    re.IGNORECASE,
)
_ORPHA_FORM = re.compile(
    r"^(?:https?://www\.orpha\.net/ordo/|https?://identifiers\.org/|urn:miriam:orphanet:"
    r"|ordo\s*:\s*)?(?:orpha(?:net)?|ordo)?\s*[:_ ]?\s*([0-9]{1,7})$",
    re.IGNORECASE,
)
_ORPHA_HINT = re.compile(r"orpha|ordo", re.IGNORECASE)
_OBO_PREFIX = re.compile(r"^(?:https?://purl\.obolibrary\.org/obo/|obo\s*:\s*)", re.IGNORECASE)
_CHAPTER = re.compile(r"^(?:chapter\s+)?([IVX]{1,5})$", re.IGNORECASE)


def key(value: str) -> str:
    """The form two spellings of one code share: casefolded, no spaces, ``_``, ``-`` or ``:``."""
    return re.sub(r"[\s_\-:]+", "", _OBO_PREFIX.sub("", value.strip()).casefold())


def not_available(value: str) -> bool:
    """True for the codes that mean "no value": ``NAV``, ``NAV_*``, ``NI``, ``UNK``, ...."""
    text = " ".join(value.split()).casefold()
    if text in _NOT_AVAILABLE or re.sub(r"[\s_\-]+", "", text) in _NOT_AVAILABLE:
        return True
    return text.startswith("nav_")


#: a code list in the operator's words, for problems ("not a MIABIS sample type")
CODE_LIST_WORDS = {
    "sample-type": "MIABIS sample type",
    "storage-temperature": "MIABIS storage temperature",
    "sex": "sex code",
    "age-unit": "unit of age",
    "dataset-type": "MIABIS data category (dataset type)",
    "collection-design": "MIABIS collection design (type)",
    "collection-setting": "MIABIS collection setting",
    "collection-status": "collection status",
    "capability": "biobank capability (BBMRI-ERIC service)",
    "quality-standard": "quality standard (ISO 20387, ISO 15189, ...)",
    "country": "country code (ISO 3166 two letters, e.g. DE)",
    "duo": "DUO data use condition (e.g. DUO:0000042)",
    "sample-source": "sample source",
    "orpha": "known ORPHA code (e.g. ORPHA:558)",
    "icd10-chapter": "ICD-10 chapter (I to XXII)",
}


class Codes:
    """Known codes per code list and ``their code -> our code`` tables per code list."""

    def __init__(
        self,
        lists: CodeLists,
        tables: dict[str, list[tuple[str, dict[str, str]]]],
        nothing: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self._lists = lists
        self._codes: dict[str, frozenset[str]] = {}
        self._tables = tables
        # their codes that the mapping tables map to null ("*": no information)
        self._nothing = nothing or {}
        self._keys: dict[str, dict[str, str | None]] = {}
        self._unknown: dict[tuple[str, str, str], str] = {}
        self._table_keys: dict[tuple[str, tuple[str, ...]], dict[str, str | None]] = {}

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> Codes:
        tables: dict[str, list[tuple[str, dict[str, str]]]] = {}
        nothing: dict[str, set[str]] = {}
        folder = resources.files("schemas") / "mappings"
        if folder.is_dir():
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if not item.name.endswith(".json") or "--" not in item.name:
                    continue
                source, codelist = item.name[:-5].split("--", 1)
                data = json.loads(item.read_text(encoding="utf-8"))
                pairs = data.get("map", {}).items()
                table = {str(k): str(v) for k, v in pairs if v is not None}
                tables.setdefault(codelist, []).append((source, table))
                nothing.setdefault(codelist, set()).update(str(k) for k, v in pairs if v is None)
        return cls(CodeLists.default(), tables, {k: frozenset(v) for k, v in nothing.items()})

    def codes(self, codelist: str) -> frozenset[str]:
        found = self._codes.get(codelist)
        if found is None:
            found = frozenset(self._lists.get(codelist).codes())
            self._codes[codelist] = found
        return found

    def map(self, codelist: str, value: str, sources: tuple[str, ...] = ()) -> str | None:
        """Our code for ``value``; :data:`NO_VALUE` if it says "not available"; None if unknown.

        Tried in order: the code itself, the mapping tables (those whose source is in
        ``sources`` first: exports rarely say which vocabulary version they use), then the
        same with case, spaces, ``_``, ``-``, ``:`` and ``obo:`` prefixes ignored (codes and
        English labels of the list, then the tables' codes), then "not available" codes.
        """
        text = value.strip()
        known = self.codes(codelist)
        if text in known:
            return text
        tables = self._ordered(codelist, sources)
        for table in tables:
            mapped = table.get(text)
            if mapped is not None and mapped in known:
                return mapped
        if text in self._nothing.get(codelist, ()):
            return NO_VALUE
        k = key(text)
        if k:
            found = self._key_index(codelist).get(k)
            if found is not None:
                return found
            found = self._table_index(codelist, sources).get(k)
            if found is not None:
                return found
        if not_available(text):
            return NO_VALUE
        return None

    def suggest(self, codelist: str, value: str, n: int = 3) -> list[str]:
        """The known codes nearest to ``value`` (`protocol.codelists.CodeList.nearest`)."""
        return self._lists.get(codelist).nearest(value, n)

    def unknown(self, codelist: str, fld: str, value: str) -> str:
        """The problem text for an unknown code in plain words: the code list it is not in
        (with its codes when they are few) and the nearest known codes, as in
        "not a MIABIS sample type; did you mean Blood?" (the value and the column are the
        problem's own; ``fld`` names the field when the code list has no words)."""
        memo = (codelist, fld, value)
        found = self._unknown.get(memo)
        if found is None:  # exports repeat their unknown codes: difflib once per value
            if len(self._unknown) > 4096:
                self._unknown.clear()
            reason = f"not a {CODE_LIST_WORDS.get(codelist, f'known {fld} code')}"
            codes = [e.code for e in self._lists.get(codelist).entries]
            if len(codes) <= SHOWN_CODES:
                reason += f" (one of {', '.join(codes)})"
            near = self.suggest(codelist, value)
            found = f"{reason}; did you mean {', '.join(near)}?" if near else reason
            self._unknown[memo] = found
        return found

    def _ordered(self, codelist: str, sources: tuple[str, ...]) -> list[dict[str, str]]:
        tables = self._tables.get(codelist, [])
        return [t for s, t in tables if s in sources] + [t for s, t in tables if s not in sources]

    def _key_index(self, codelist: str) -> dict[str, str | None]:
        """``key(code)`` and ``key(EN label)`` -> code; a key two codes share maps to None."""
        index = self._keys.get(codelist)
        if index is None:
            index = {}
            entries = self._lists.get(codelist).entries
            labels: dict[str, str | None] = {}
            for entry in entries:
                _add(index, key(entry.code), entry.code)
                _add(labels, key(entry.en), entry.code)
            for k, code in labels.items():
                index.setdefault(k, code)  # a code's own spelling wins over a label
            self._keys[codelist] = index
        return index

    def _table_index(self, codelist: str, sources: tuple[str, ...]) -> dict[str, str | None]:
        index = self._table_keys.get((codelist, sources))
        if index is None:
            index = {}
            known = self.codes(codelist)
            for table in self._ordered(codelist, sources):
                seen: dict[str, str | None] = {}
                for theirs, ours in table.items():
                    if ours in known:
                        _add(seen, key(theirs), ours)
                for k, code in seen.items():
                    index.setdefault(k, code)  # earlier (preferred) tables win
            for theirs in self._nothing.get(codelist, ()):
                index.setdefault(key(theirs), NO_VALUE)
            self._table_keys[(codelist, sources)] = index
        return index


def _add(index: dict[str, str | None], k: str, code: str) -> None:
    if k and index.get(k, code) != code:
        index[k] = None  # ambiguous: two codes are written alike
    elif k:
        index.setdefault(k, code)


@lru_cache(maxsize=1)
def _chapters() -> dict[str, str]:
    """ICD-10 chapter numeral -> its code range (``II`` -> ``C00-D48``)."""
    path = resources.files("schemas") / "codelists" / "icd10-chapter.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(c["code"]): str(c["range"]) for c in data["codes"] if c.get("range")}


def diagnosis(value: str, *, bare_chapter: bool = False) -> dict[str, str] | None:
    """Parse one diagnosis code as people write it, or None.

    ICD-10: ``C50.9``, ``c509``, ``ICD10:C50.9``, ``urn:miriam:icd:C50.9``, blocks
    (``C76-C80``) and chapters (``urn:miriam:icd:II``, published as their range
    ``C00-D48``); ORPHA: ``ORPHA:558``, ``Orphanet_558``, ``ordo:Orphanet_558``,
    ``http://www.orpha.net/ORDO/Orphanet_558``. The ICD-10-GM and ICD-10-CM prefixes
    (``ICD10CM:E73``, Beacon) are read as ICD-10. "Not available" codes are not diagnoses:
    check :func:`not_available` first. ``bare_chapter``: a chapter numeral alone (``II``,
    as Directory collections write it) is a chapter too; elsewhere it is no code.
    """
    text = " ".join(value.split())
    if _ORPHA_HINT.search(text):
        found = _ORPHA_FORM.match(text)
        if found is None:
            return None
        return {"system": "ORPHA", "code": "ORPHA:" + str(int(found.group(1)))}
    prefixed = _ICD_PREFIX.match(text)
    if prefixed:
        text = text[prefixed.end() :]
    # "C50.-" (ICD-10-GM: the category with its subcodes) is the category
    code = re.sub(r"\s*-\s*", "-", text.strip()).upper().removesuffix(".-")
    chapter = _CHAPTER.match(code)
    if chapter and (prefixed or bare_chapter or code.startswith("CHAPTER")):
        rng = _chapters().get(chapter.group(1))
        return {"system": "ICD-10", "code": rng} if rng else None
    block = ICD10_BLOCK.match(code)
    if block:
        first, last = block.groups()
        return {"system": "ICD-10", "code": code} if first <= last else None
    if ICD10.match(code):
        return {"system": "ICD-10", "code": code}
    # LIMS exports often drop the dot: C446 -> C44.6
    if re.match(r"^[A-Z][0-9]{3,6}$", code):
        dotted = code[:3] + "." + code[3:]
        if ICD10.match(dotted):
            return {"system": "ICD-10", "code": dotted}
    return None
