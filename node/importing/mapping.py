"""The declarative column-and-value mapping file (TOML) for CSV/TSV exports."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from node.importing.sources.base import read_table
from protocol.errors import ConfigError, Problem

__all__ = [
    "ALIASES",
    "BIOBANK_FIELDS",
    "COLLECTION_FIELDS",
    "FIELDS",
    "Join",
    "Joiner",
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
class Join:
    """Look values up in another file: the row of ``file`` whose ``key`` column equals
    this export's ``on`` column; its columns are named ``NAME.column`` in [columns]."""

    file: Path
    on: str
    key: str
    name: str


class Joiner:
    """The joined files of a mapping, read once: widens headers and rows by the joined
    columns (``NAME.column``). A key in ``on`` that the joined file lacks is a problem."""

    def __init__(self, joins: tuple[Join, ...]) -> None:
        self.joins = joins
        self.tables: list[tuple[Join, list[str], dict[str, dict[str, str]]]] = []
        for join in joins:
            if not join.file.is_file():
                raise ConfigError(f"mapping join {join.name!r}: no such file {join.file}")
            rows = read_table(join.file, "\t" if join.file.suffix == ".tsv" else ",")
            _, header, problems = next(rows)
            if header is None or problems or join.key not in header:
                raise ConfigError(
                    f"mapping join {join.name!r}: {join.file.name} has no readable "
                    f"header with a {join.key!r} column"
                )
            table: dict[str, dict[str, str]] = {}
            for loc, row, row_problems in rows:
                if row is None or row_problems:
                    raise ConfigError(f"mapping join {join.name!r}: {loc} is unreadable")
                value = row.get(join.key, "").strip()
                if value in table:
                    raise ConfigError(
                        f"mapping join {join.name!r}: {join.key} {value!r} occurs twice "
                        f"in {join.file.name} (which row is meant?)"
                    )
                if value:
                    table[value] = row
            self.tables.append((join, list(header), table))

    def header(self, header: list[str], location: str) -> tuple[list[str], list[Problem]]:
        """``header`` and the joined column names; a missing ``on`` column is a problem."""
        problems = [
            Problem(location, j.on, None, f"join {j.name!r} needs this column in the file")
            for j, _, _ in self.tables
            if j.on not in header
        ]
        joined = [f"{j.name}.{column}" for j, columns, _ in self.tables for column in columns]
        return header + joined, problems

    def row(self, row: dict[str, str], location: str) -> tuple[dict[str, str], list[Problem]]:
        """``row`` with the joined file's columns; the first key of a list cell is used."""
        problems: list[Problem] = []
        out = dict(row)
        for join, _, table in self.tables:
            cell = row.get(join.on, "")
            key = next((k.strip() for k in cell.split(",") if k.strip()), "")
            if not key:
                continue
            found = table.get(key)
            if found is None:
                problems.append(
                    Problem(
                        location,
                        join.on,
                        key,
                        f"no row of {join.file.name} has {join.key} {key!r} (join {join.name!r})",
                    )
                )
                continue
            for column, value in found.items():
                out[f"{join.name}.{column}"] = value
        return out, problems


def _joins(raw: object, name: str, kind: str, base: Path) -> tuple[Join, ...]:
    if raw is None:
        return ()
    if kind == "sample":
        raise ConfigError(f"{name}: [[join]] is for biobank and collection mappings")
    if not isinstance(raw, list) or not all(isinstance(j, dict) for j in raw):
        raise ConfigError(f"{name}: [[join]] must be a list of tables (file, on, key)")
    out = []
    for item in raw:
        missing = [k for k in ("file", "on", "key") if not isinstance(item.get(k), str)]
        if missing:
            raise ConfigError(f"{name}: a [[join]] needs {', '.join(missing)}")
        file = Path(item["file"])
        if not file.is_absolute():
            file = base / file
        out.append(Join(file, item["on"], item["key"], str(item.get("as", file.stem))))
    names = [j.name for j in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{name}: two [[join]]s are named alike; give each an 'as' name")
    return tuple(out)


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
    joins: tuple[Join, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"mapping {path}: {exc}") from exc
        return cls.from_dict(raw, str(path), path.parent)

    @classmethod
    def from_dict(
        cls, raw: dict[str, object], name: str = "mapping", base: Path | None = None
    ) -> Mapping:
        """``base``: the folder that a [[join]]'s relative ``file`` is in (the mapping's)."""
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
            joins=_joins(raw.get("join"), name, str(kind), base or Path.cwd()),
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
