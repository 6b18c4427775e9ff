"""The declarative column-and-value mapping file (TOML) for CSV/TSV exports."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ConfigError

__all__ = [
    "ALIASES",
    "BIOBANK_FIELDS",
    "COLLECTION_FIELDS",
    "FIELDS",
    "LIST_FIELDS",
    "Mapping",
    "SAMPLE_FIELDS",
    "SAMPLE_LIST_FIELDS",
]

SAMPLE_FIELDS = frozenset(
    {
        "local_id",
        "donor_id",
        "biobank",
        "collection",
        "sample_type",
        "storage_temperature",
        "sex",
        "age",
        "birth",
        "date",
        "diagnoses",
        "use_conditions",
        "dataset_types",
    }
)
ALIASES = {
    "birth_date": "birth",
    "birth_year": "birth",
    "collection_date": "date",
    "year": "date",
    "sample_id": "local_id",
}


def _alias(key: object) -> str:
    """The record field a mapping key names (``sample_id`` -> ``local_id``)."""
    text = str(key)
    return ALIASES.get(text, text)


LIST_FIELDS = frozenset(
    {
        "diagnoses",
        "use_conditions",
        "dataset_types",
        "quality_standards",
        "capabilities",
        "sex",
        "sample_types",
        "storage_temperatures",
        "design",
        "collection_setting",
    }
)
SAMPLE_LIST_FIELDS = frozenset({"diagnoses", "use_conditions", "dataset_types"})
BIOBANK_FIELDS = frozenset(
    {
        "id",
        "acronym",
        "name",
        "url",
        "juristic_person",
        "country",
        "contact.email",
        "contact.name",
        "contact.role",
        "description",
        "quality_standards",
        "capabilities",
    }
)
COLLECTION_FIELDS = frozenset(
    {
        "id",
        "biobank",
        "name",
        "acronym",
        "description",
        "sample_source",
        "sex",
        "age.min",
        "age.max",
        "age.unit",
        "dataset_types",
        "sample_types",
        "storage_temperatures",
        "diagnoses",
        "design",
        "collection_setting",
        "use_conditions",
        "status",
        "number_of_subjects",
        "size",
        "contact.email",
        "contact.name",
        "contact.role",
        "quality_standards",
    }
)
FIELDS = {"sample": SAMPLE_FIELDS, "biobank": BIOBANK_FIELDS, "collection": COLLECTION_FIELDS}


@dataclass(frozen=True)
class Mapping:
    """Which column feeds which record field, value translations, and fixed values."""

    kind: str
    columns: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    delimiter: str | None = None
    list_separator: str = ","
    sources: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"mapping {path}: {exc}") from exc
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, object], name: str = "mapping") -> Mapping:
        kind = raw.get("kind")
        if kind not in FIELDS:
            raise ConfigError(
                f"{name}: kind must be one of sample, collection, biobank, not {kind!r}"
            )
        allowed = FIELDS[str(kind)]
        columns_raw = raw.get("columns", {})
        fixed_raw = raw.get("fixed", {})
        values_raw = raw.get("values", {})
        if (
            not isinstance(columns_raw, dict)
            or not isinstance(fixed_raw, dict)
            or not isinstance(values_raw, dict)
        ):
            raise ConfigError(f"{name}: [columns], [fixed] and [values] must be tables")
        columns = {_alias(k): str(v) for k, v in columns_raw.items()}
        fixed: dict[str, object] = {_alias(k): v for k, v in fixed_raw.items()}
        for where, keys in (("columns", columns), ("fixed", fixed), ("values", values_raw)):
            for key in keys:
                if _alias(key) not in allowed:
                    raise ConfigError(_refusal(name, str(kind), where, str(key)))
        id_field = "local_id" if kind == "sample" else "id"
        if id_field not in columns and id_field not in fixed:
            raise ConfigError(f"{name}: [columns] must say which column holds {id_field}")
        separator = raw.get("list_separator", ",")
        delimiter = raw.get("delimiter")
        sources = raw.get("sources", [])
        if not isinstance(separator, str) or not separator:
            raise ConfigError(f"{name}: list_separator must be a non-empty string")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ConfigError(f"{name}: delimiter must be one character")
        if not isinstance(sources, list):
            raise ConfigError(f"{name}: sources must be a list of mapping-table source names")
        values = {
            _alias(k): {str(a): str(b) for a, b in dict(v).items()} for k, v in values_raw.items()
        }
        return cls(
            kind=str(kind),
            columns=columns,
            values=values,
            fixed=fixed,
            delimiter=delimiter,
            list_separator=separator,
            sources=tuple(str(s) for s in sources),
        )


def _refusal(name: str, kind: str, where: str, key: str) -> str:
    if kind == "sample":
        return (
            f"{name}: [{where}] {key!r} is not a sample field; sample records carry "
            f"only coded fields and never free text (allowed: "
            f"{', '.join(sorted(SAMPLE_FIELDS))})"
        )
    allowed = ", ".join(sorted(FIELDS[kind]))
    return f"{name}: [{where}] {key!r} is not a {kind} field (allowed: {allowed})"
