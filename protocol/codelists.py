"""The shipped code lists (`schemas/codelists/*.json`): codes, labels in English and Chinese."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from protocol.errors import ConfigError

# an unknown code's reason spells out a code list this short (the node's import problems and
# the catalogue's search errors alike)
SHOWN_CODES = 8


@dataclass(frozen=True)
class Code:
    code: str
    en: str
    zh: str
    parent: str | None = None
    shorthand: str | None = None  # DUO's abbreviations (GRU, HMB, NPU...), else none


@dataclass(frozen=True)
class CodeList:
    """One code list: `{"name", "version", "source", "licence", "codes": [...]}`."""

    name: str
    version: str
    source: str
    licence: str
    entries: tuple[Code, ...]
    _index: dict[str, Code] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "code list") -> CodeList:
        try:
            entries = tuple(
                Code(c["code"], c["en"], c["zh"], c.get("parent"), c.get("shorthand"))
                for c in data["codes"]
            )
            made = cls(
                str(data["name"]),
                str(data["version"]),
                str(data.get("source", "")),
                str(data.get("licence", "")),
                entries,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: not a code list (missing or wrong {exc})") from exc
        for c in entries:
            if c.code in made._index:
                raise ConfigError(f"{where}: code {c.code!r} appears twice")
            made._index[c.code] = c
        for c in entries:
            if c.parent is not None and c.parent not in made._index:
                raise ConfigError(f"{where}: code {c.code!r} has unknown parent {c.parent!r}")
        return made

    def codes(self) -> set[str]:
        return set(self._index)

    def __contains__(self, code: object) -> bool:
        return code in self._index

    def parent(self, code: str) -> str | None:
        return self._get(code).parent

    def children(self, code: str) -> list[str]:
        return [c.code for c in self.entries if c.parent == code]

    def nearest(self, value: str, n: int = 3) -> list[str]:
        """The known codes a mistyped `value` most likely meant, best first: the one code,
        shorthand or label (English or Chinese) equal to it but for case and spacing ("blood"
        -> Blood, "血浆" -> Plasma, DUO's "GRU" -> DUO:0000042) alone; else those containing
        it ("ffpe" -> TissueFFPE), then close spellings (difflib: "Blod" -> Blood). Empty
        when nothing is near."""
        want = " ".join(value.split()).casefold()
        if not want:
            return []
        names: dict[str, str] = {}
        for entry in self.entries:
            for name in (entry.code, entry.shorthand, entry.en, entry.zh):
                if name:
                    names.setdefault(" ".join(name.split()).casefold(), entry.code)
        found = names.get(want)
        if found is not None:  # the same but for case or spacing: what it meant
            return [found]
        out: list[str] = []
        if len(want) >= 3 or not want.isascii():  # (two letters are in too many names)
            # those where it comes earliest first, then the shortest: "tissue" -> TissueFFPE
            holding = sorted(
                (name.find(want), len(name), code) for name, code in names.items() if want in name
            )
            for *_, code in holding:
                if code not in out:
                    out.append(code)
        for near in difflib.get_close_matches(want, list(names), n=n * 3):
            if names[near] not in out:
                out.append(names[near])
        return out[:n]

    def _get(self, code: str) -> Code:
        try:
            return self._index[code]
        except KeyError:
            raise KeyError(f"unknown code {code!r} in code list {self.name!r}") from None


class CodeLists:
    """All code lists of one release, by name."""

    def __init__(self, lists: Iterable[CodeList]) -> None:
        self._lists = {cl.name: cl for cl in lists}

    @classmethod
    def default(cls) -> CodeLists:
        """The lists shipped in the `schemas` package."""
        root = resources.files("schemas").joinpath("codelists")
        return cls(
            CodeList.from_json(json.loads(p.read_text("utf-8")), p.name)
            for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".json")
        )

    @property
    def names(self) -> list[str]:
        return sorted(self._lists)

    def get(self, name: str) -> CodeList:
        try:
            return self._lists[name]
        except KeyError:
            raise ConfigError(
                f"unknown code list {name!r} (known: {', '.join(self.names)})"
            ) from None
