"""The node's publishing policy (``policy.toml``): what goes out, how coarse, and k.

``Policy.load(path)`` reads and validates the file (every error names the key, the value
and the reason); ``write_default(path)`` writes the commented default the operator edits;
``Policy.summary()`` is the stable JSON object published in the node descriptor.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import PolicyError

#: Optional sample fields a policy may publish or keep back (biobank, collection,
#: sample_type, id and nonce are always published).
OPTIONAL_FIELDS: tuple[str, ...] = (
    "sex",
    "age",
    "period",
    "diagnoses",
    "storage_temperature",
    "use_conditions",
    "dataset_types",
)
PRECISIONS: tuple[str, ...] = ("full", "category", "chapter", "none")
KEYS: tuple[str, ...] = ("k", "age_band", "period_width", "diagnosis_precision", "published_fields")

DEFAULT_TEXT = """\
# Publishing policy of this biobank node (see docs/privacy.md).
# Every sample counted in a published group belongs to a class of samples that share sex, age band,
# collection period, diagnoses, biobank and collection; each class must hold at least
# k DISTINCT DONORS. Classes that are too small are generalised step by step (wider age
# band, wider period, ICD-10 category, ICD-10 chapter, then the field is dropped) and,
# failing that, held back. The policy in force is published in the node descriptor.

# k: the smallest number of distinct donors a published class may have (2..1000).
# 10 is what the BBMRI-ERIC Directory uses for its fact tables.
k = 10

# age_band: width in years of the published age-at-collection band (1..120).
age_band = 10

# period_width: width in years of the published collection period (1..100).
period_width = 5

# diagnosis_precision: finest diagnosis precision published:
#   "full"     ICD-10 codes as recorded (C50.9) and ORPHA codes
#   "category" 3-character ICD-10 category (C50); ORPHA codes are not published
#   "chapter"  ICD-10 chapter as its code range (C00-D48); ORPHA codes are not published
#   "none"     no diagnoses
diagnosis_precision = "full"

# published_fields: the optional sample fields that are published at all.
# Remove a name to keep that field at the node.
published_fields = ["sex", "age", "period", "diagnoses", "storage_temperature",
                    "use_conditions", "dataset_types"]
"""


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A validated publishing policy; build with :meth:`load`, :meth:`from_dict` or default."""

    k: int = 10
    age_band: int = 10
    period_width: int = 5
    diagnosis_precision: str = "full"
    published_fields: frozenset[str] = field(default_factory=lambda: frozenset(OPTIONAL_FIELDS))

    def __post_init__(self) -> None:
        _check_int(
            "k", self.k, 2, 1000, "k is counted in distinct donors; below 2 there is no protection"
        )
        _check_int("age_band", self.age_band, 1, 120, "age band width in years")
        _check_int("period_width", self.period_width, 1, 100, "period width in years")
        if self.diagnosis_precision not in PRECISIONS:
            raise PolicyError(
                f"diagnosis_precision = {self.diagnosis_precision!r}: must be one "
                f"of {', '.join(PRECISIONS)}"
            )
        unknown = sorted(set(self.published_fields) - set(OPTIONAL_FIELDS))
        if unknown:
            raise PolicyError(
                f"published_fields = {sorted(self.published_fields)!r}: unknown "
                f"field {unknown[0]!r}; known: {', '.join(OPTIONAL_FIELDS)}"
            )

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        """Read and validate ``policy.toml``; raise :class:`PolicyError` naming key and value."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc.message}") from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Validate a parsed policy; missing keys take their defaults, unknown keys fail."""
        for key in data:
            if key not in KEYS:
                raise PolicyError(
                    f"{key} = {data[key]!r}: unknown key; known keys: {', '.join(KEYS)}"
                )
        args: dict[str, Any] = {k: v for k, v in data.items() if k != "published_fields"}
        if "published_fields" in data:
            fields = data["published_fields"]
            if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
                raise PolicyError(f"published_fields = {fields!r}: must be a list of field names")
            if len(set(fields)) != len(fields):
                raise PolicyError(f"published_fields = {fields!r}: a field is listed twice")
            args["published_fields"] = frozenset(fields)
        return cls(**args)

    def publishes(self, name: str) -> bool:
        """Whether the optional field ``name`` goes out at all."""
        if name == "diagnoses" and self.diagnosis_precision == "none":
            return False
        return name in self.published_fields

    def summary(self) -> dict[str, Any]:
        """The policy in force for the node descriptor: stable JSON (sorted field list)."""
        return {
            "k": self.k,
            # smaller change sets wait (node/groups.py): the same k, counted the same way
            "change_set_donors": self.k,
            "age_band": self.age_band,
            "period_width": self.period_width,
            "diagnosis_precision": (
                self.diagnosis_precision if "diagnoses" in self.published_fields else "none"
            ),
            "published_fields": sorted(f for f in self.published_fields if self.publishes(f)),
        }


def _check_int(key: str, value: object, low: int, high: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{key} = {value!r}: must be a whole number ({what})")
    if not low <= value <= high:
        raise PolicyError(f"{key} = {value!r}: must be from {low} to {high} ({what})")


def write_default(path: Path | str) -> None:
    """Write the commented default policy to ``path``; never overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise PolicyError(f"{path}: a policy file already exists; edit it instead")
    path.write_text(DEFAULT_TEXT, encoding="utf-8")
