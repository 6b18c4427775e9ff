"""The catalogue's live state recomputed from node logs: live records and sample counts."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

NO_COMBO = -1  # a live sample whose content is missing or invalid: not in the index


def _chapters() -> list[tuple[str, str, str]]:
    raw = json.loads(
        resources.files("schemas").joinpath("codelists/icd10-chapter.json").read_text("utf-8")
    )
    out = []
    for code in raw["codes"]:
        low, high = str(code["range"]).split("-")
        out.append((low, high, str(code["code"])))
    return out


class Chapters:
    """ICD-10 chapter of a code by its 3-character category, from the shipped code list."""

    def __init__(self) -> None:
        self.ranges = _chapters()
        self.cache: dict[str, str | None] = {}

    def of(self, code: str) -> str | None:
        cat = code[:3]
        if cat not in self.cache:
            self.cache[cat] = next(
                (ch for low, high, ch in self.ranges if low <= cat <= high), None
            )
        return self.cache[cat]


def combo_key(s: dict[str, Any], chapters: Chapters) -> tuple[Any, ...]:
    """The attributes of a valid sample that the search counts (its interned key)."""
    found = {
        chapters.of(d["code"]) for d in s.get("diagnoses") or () if d.get("system") == "ICD-10"
    }
    return (
        s.get("biobank"),
        s.get("collection"),
        s.get("sample_type"),
        s.get("storage_temperature"),
        s.get("sex"),
        tuple(sorted(c for c in found if c)),
        tuple(sorted(set(s.get("use_conditions") or ()))),
        tuple(sorted(set(s.get("dataset_types") or ()))),
    )


@dataclass
class NodeLive:
    """Live records of one node, kept small: samples as an interned attribute combination."""

    origin: str
    country: str
    chapters: Chapters
    samples: dict[str, tuple[int, int, tuple[int, ...]]] = field(default_factory=dict)
    others: dict[tuple[str, str], tuple[Any, int, tuple[int, ...]]] = field(default_factory=dict)
    combos: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def _intern(self, key: tuple[Any, ...]) -> int:
        found = self.combos.get(key)
        if found is None:
            found = self.combos[key] = len(self.combos)
        return found

    def publish(
        self, kind: str, rid: str, index: int, content: dict[str, Any] | None, *, has_content: bool
    ) -> None:
        """A publish entry; `content` is None when missing or rejected (kept out of the index)."""
        if kind == "sample":
            key = None if content is None else combo_key(content, self.chapters)
            self.publish_sample(rid, index, key, has_content=has_content)
        else:
            prev = self.others.get((kind, rid))
            kept = (prev[2] if prev else ()) + ((index,) if has_content else ())
            self.others[(kind, rid)] = (content, index, kept)

    def publish_sample(
        self, rid: str, index: int, key: tuple[Any, ...] | None, *, has_content: bool
    ) -> None:
        """A sample publish by its `combo_key` (None when its content is missing or rejected)."""
        old = self.samples.get(rid)
        kept = (old[2] if old else ()) + ((index,) if has_content else ())
        self.samples[rid] = (NO_COMBO if key is None else self._intern(key), index, kept)

    def withdraw(self, kind: str, rid: str) -> tuple[int, ...]:
        """A withdraw entry; returns the leaves whose content was served for the record."""
        if kind == "sample":
            old = self.samples.pop(rid, None)
        else:
            old = self.others.pop((kind, rid), None)
        return old[2] if old else ()

    def missing_content(self) -> list[tuple[str, str, int]]:
        """Live records whose latest publish has no content served: (kind, id, leaf)."""
        out = [
            ("sample", rid, idx)
            for rid, (combo, idx, kept) in self.samples.items()
            if combo == NO_COMBO and (not kept or kept[-1] != idx)
        ]
        out += [
            (kind, rid, idx)
            for (kind, rid), (content, idx, kept) in self.others.items()
            if content is None and (not kept or kept[-1] != idx)
        ]
        return out


@dataclass
class Tally:
    """Sample counts across active nodes, shaped like the /v1/search response."""

    total: int = 0
    counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {
            "country": Counter(),
            "biobank": Counter(),
            "collection": Counter(),
        }
    )
    facets: dict[str, Counter[str]] = field(
        default_factory=lambda: {
            name: Counter()
            for name in (
                "sample_type",
                "storage_temperature",
                "sex",
                "country",
                "dataset_type",
                "use_conditions",
                "diagnosis_chapter",
            )
        }
    )

    def add(self, live: NodeLive) -> None:
        """Add one node's live samples (country: its biobank record's, else the node's)."""
        per_combo: Counter[int] = Counter(
            combo for combo, _i, _k in live.samples.values() if combo != NO_COMBO
        )
        countries = {
            rid: (content or {}).get("country")
            for (kind, rid), (content, _i, _k) in live.others.items()
            if kind == "biobank"
        }
        keys = {cid: key for key, cid in live.combos.items()}
        for cid, n in per_combo.items():
            bb, col, stype, temp, sex, chapters, uses, dtypes = keys[cid]
            country = countries.get(bb) or live.country
            self.total += n
            for name, code in (("country", country), ("biobank", bb), ("collection", col)):
                if code is not None:
                    self.counts[name][code] += n
            for name, code in (
                ("sample_type", stype),
                ("storage_temperature", temp),
                ("sex", sex),
                ("country", country),
            ):
                if code is not None:
                    self.facets[name][code] += n
            for name, codes in (
                ("diagnosis_chapter", chapters),
                ("use_conditions", uses),
                ("dataset_type", dtypes),
            ):
                for code in codes:
                    self.facets[name][code] += n
