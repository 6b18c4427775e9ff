"""Code checking and mapping: shared code lists plus the mapping tables in schemas/mappings."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

from protocol.codelists import CodeLists

__all__ = ["Codes", "ICD10", "ORPHA", "diagnosis"]

ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
ORPHA = re.compile(r"^ORPHA:[0-9]+$")


class Codes:
    """Known codes per code list and ``their code -> our code`` tables per code list."""

    def __init__(
        self, lists: CodeLists, tables: dict[str, list[tuple[str, dict[str, str]]]]
    ) -> None:
        self._lists = lists
        self._codes: dict[str, frozenset[str]] = {}
        self._tables = tables

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> Codes:
        tables: dict[str, list[tuple[str, dict[str, str]]]] = {}
        folder = resources.files("schemas") / "mappings"
        if folder.is_dir():
            for item in sorted(folder.iterdir(), key=lambda p: p.name):
                if not item.name.endswith(".json") or "--" not in item.name:
                    continue
                source, codelist = item.name[:-5].split("--", 1)
                data = json.loads(item.read_text(encoding="utf-8"))
                table = {str(k): str(v) for k, v in data.get("map", {}).items() if v is not None}
                tables.setdefault(codelist, []).append((source, table))
        return cls(CodeLists.default(), tables)

    def codes(self, codelist: str) -> frozenset[str]:
        found = self._codes.get(codelist)
        if found is None:
            found = frozenset(self._lists.get(codelist).codes())
            self._codes[codelist] = found
        return found

    def map(self, codelist: str, value: str, sources: tuple[str, ...] = ()) -> str | None:
        """Our code for ``value``: itself if known, else via a mapping table; None if unknown.

        Tables whose source is in ``sources`` are tried first, then every other table for
        the code list (exports rarely say which vocabulary version they use).
        """
        if value in self.codes(codelist):
            return value
        tables = self._tables.get(codelist, [])
        ordered = [t for s, t in tables if s in sources] + [
            t for s, t in tables if s not in sources
        ]
        for table in ordered:
            mapped = table.get(value)
            if mapped is not None and mapped in self.codes(codelist):
                return mapped
        return None


def diagnosis(value: str) -> dict[str, str] | None:
    """Parse one diagnosis code (ICD-10, ``urn:miriam:icd:C18``, ``ORPHA:123``) or None."""
    text = value.strip()
    if text.startswith("urn:miriam:icd:"):
        text = text[len("urn:miriam:icd:") :]
    if text.upper().startswith("ORPHA:") or text.upper().startswith("ORPHA_"):
        code = "ORPHA:" + text[6:]
        return {"system": "ORPHA", "code": code} if ORPHA.match(code) else None
    code = text.upper()
    if ICD10.match(code):
        return {"system": "ICD-10", "code": code}
    # LIMS exports often drop the dot: C446 -> C44.6
    if re.match(r"^[A-Z][0-9]{3,6}$", code):
        dotted = code[:3] + "." + code[3:]
        if ICD10.match(dotted):
            return {"system": "ICD-10", "code": dotted}
    return None
