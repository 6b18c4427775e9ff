"""The code lists as the catalogue uses them: code sets, sample-type hierarchy, ICD-10 chapters."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from protocol.codelists import SHOWN_CODES, CodeLists

__all__ = ["Vocabulary"]


class Vocabulary:
    """Read-only view over the shipped code lists (protocol.codelists)."""

    def __init__(self, lists: CodeLists) -> None:
        self._lists = lists
        self._codes: dict[str, frozenset[str]] = {}
        self._chapters = _chapter_ranges()
        self._chapter_of: dict[str, str | None] = {}

    @classmethod
    @cache
    def default(cls) -> Vocabulary:
        """The vocabulary of the code lists shipped in schemas/."""
        return cls(CodeLists.default())

    def codes(self, name: str) -> frozenset[str]:
        if name not in self._codes:
            self._codes[name] = frozenset(self._lists.get(name).codes())
        return self._codes[name]

    def unknown(self, name: str, value: str) -> str:
        """Why `value` is not a code of list `name`, in words a researcher can act on: the
        list's codes when they are few, and the codes it most likely meant (a label in
        English or Chinese, another case, a part or a close spelling: `CodeList.nearest`)."""
        codes = self._lists.get(name)
        reason = f"unknown code {value!r} in code list {name}"
        if len(codes.entries) <= SHOWN_CODES:
            reason += f" (one of {', '.join(c.code for c in codes.entries)})"
        near = codes.nearest(value)
        return f"{reason}; did you mean {' or '.join(near)}?" if near else reason

    def with_children(self, name: str, codes: list[str]) -> list[str]:
        """`codes` plus all their descendants (Blood -> Plasma, Serum, ...)."""
        cl = self._lists.get(name)
        out = list(codes)
        stack = list(codes)
        while stack:
            for child in cl.children(stack.pop()):
                if child not in out:
                    out.append(child)
                    stack.append(child)
        return out

    def chapter_range(self, chapter: str) -> tuple[str, str] | None:
        return self._chapters.get(chapter)

    def chapter_of(self, code: str) -> str | None:
        """The roman numeral of the chapter holding an ICD-10 code, by its category."""
        cat = code[:3]
        if cat not in self._chapter_of:  # a few thousand categories at most
            self._chapter_of[cat] = next(
                (chapter for chapter, (low, high) in self._chapters.items() if low <= cat <= high),
                None,
            )
        return self._chapter_of[cat]


def _chapter_ranges() -> dict[str, tuple[str, str]]:
    """Chapter -> (first, last) category. protocol.codelists.Code keeps no `range`, so the
    ranges are read from the shipped code list file."""
    path = resources.files("schemas").joinpath("codelists/icd10-chapter.json")
    data = json.loads(path.read_text("utf-8"))
    out = {}
    for c in data["codes"]:
        low, high = str(c["range"]).split("-")
        out[c["code"]] = (low, high)
    return out
