"""BBMRI-ERIC Directory exports: biobank and collection rows (EMX2 demo and 2018 EMX1 sheets).

A file's role (``persons``, ``collections`` or ``biobanks``) is given by the caller or
inferred from its header (:func:`infer_role` says why); a file that fits no role is an
error, never a guess. Persons are read first and give the contact of the biobanks and
collections that reference them (``contact`` or ``contact_person``). National variants
are read as they come: plural or singular reference columns (``biobank``/``biobanks``),
``juridical_person`` or ``juristic_person``, an age unit without bounds (dropped), and
"not available" codes (``NAV_*``, ``NI``, ``NA``, ``UNKNOWN``) left out on purpose.
Directory codes map through the ``bbmri-eric-directory`` tables
(``bbmri-eric-directory-2018`` for ``eu_bbmri_eric_*`` files). Codes outside our lists
are left out of the record and listed as ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from node.importing import recordfields, wording
from node.importing.codes import Codes
from node.importing.sources.base import Sink, read_table
from protocol.errors import ConfigError, Problem
from protocol.schema import SchemaSet

__all__ = [
    "ALTERNATIVES",
    "BIOBANK_COLUMNS",
    "COLLECTION_COLUMNS",
    "LISTS",
    "NOT_AVAILABLE",
    "ROLES",
    "Table",
    "infer_role",
    "read",
    "read_tables",
]

# the roles a Directory file can have (record kind, or "persons" for the contacts table)
ROLES = ("biobank", "collection", "persons")

BIOBANK_COLUMNS = {
    "id": "id",
    "name": "name",
    "acronym": "acronym",
    "url": "url",
    "description": "description",
    "juridical_person": "juristic_person",
    "country": "country",
    "capabilities": "capabilities",
    "quality": "quality_standards",
}
COLLECTION_COLUMNS = {
    "id": "id",
    "biobank": "biobank",
    "name": "name",
    "acronym": "acronym",
    "description": "description",
    "url": "url",
    "type": "design",
    "data_categories": "dataset_types",
    "size": "size",
    "number_of_donors": "number_of_subjects",
    "sex": "sex",
    "diagnosis_available": "diagnoses",
    "age_low": "age.min",
    "age_high": "age.max",
    "age_unit": "age.unit",
    "materials": "sample_types",
    "storage_temperatures": "storage_temperatures",
    "data_use": "use_conditions",
}
# a column's other spellings in national exports, tried in order when the first is absent
ALTERNATIVES = {
    "biobank": ("biobanks",),
    "juridical_person": ("juristic_person",),
    "contact": ("contact_person", "contacts", "contact_persons"),
    "data_use": ("data_uses",),
}
# "not available" / "no information" codes: dropped on purpose, reported as ignored
NOT_AVAILABLE = frozenset({"NI", "NA", "N/A", "UNKNOWN", "NOT_AVAILABLE", "NAV"})

LISTS = frozenset(
    {
        "capabilities",
        "quality_standards",
        "design",
        "dataset_types",
        "sex",
        "diagnoses",
        "sample_types",
        "storage_temperatures",
        "use_conditions",
    }
)


def _dropped(sink: Sink, kind: str) -> Callable[[str, object], None]:
    """Report a code outside our lists as ignored (not an error)."""

    def dropped(fld: str, value: object) -> None:
        sink.ignored(f"{kind} {fld} code {value!r} (not in our lists)")

    return dropped


def _header(path: Path) -> list[str]:
    rows = read_table(path, ",")
    _, header, _ = next(rows)
    rows.close()
    return list(header or {})


def infer_role(header: list[str]) -> tuple[str, str] | None:
    """(role, why) for a Directory table's header, or None when it fits no role."""
    cols = set(header)
    if "email" in cols and cols & {"first_name", "last_name"}:
        return "persons", "it has email and first_name/last_name columns"
    if "id" in cols:
        for ref in ("biobank", "biobanks"):
            if ref in cols:
                return "collection", f"it has id and a {ref!r} column referencing biobanks"
        if "name" in cols and "country" in cols:
            return "biobank", "it has id, name and country columns and no biobank reference"
    return None


def _not_available(value: str) -> bool:
    upper = value.strip().upper()
    return upper in NOT_AVAILABLE or upper.startswith("NAV_")


def _column(row: dict[str, str], column: str) -> str:
    """The file's own name of ``column``: itself, or its first present national spelling
    (problems name the column the operator's file has)."""
    if column in row:
        return column
    for other in ALTERNATIVES.get(column, ()):
        if other in row:
            return other
    return column


def _get(row: dict[str, str], column: str) -> str:
    """The value of ``column`` or of its first present national spelling."""
    return row.get(_column(row, column), "")


def read(
    paths: list[Path],
    sink: Sink,
    codes: Codes,
    roles: dict[Path, str] | None = None,
    inferred: Callable[[Path, str, str], None] | None = None,
) -> int:
    """Read persons first, then biobanks and collections; return the data rows read.

    ``roles`` gives a file's role (biobank, collection or persons); a file without one
    has it inferred from its header and reported through ``inferred(path, role, why)``.
    A file that fits no role raises ConfigError.
    """
    given = roles or {}
    roles = {}
    for path in paths:
        if path in given:
            if given[path] not in ROLES:
                raise ConfigError(
                    f"{path.name}: role {given[path]!r} is not a Directory table role "
                    "(biobanks, collections, persons)"
                )
            roles[path] = given[path]
            continue
        header = _header(path)
        found = infer_role(header)
        if found is None:
            raise ConfigError(
                f"{path.name}: fits no Directory role (header {', '.join(header[:6])}...); "
                "give its role as FILE:ROLE or --kind (biobanks, collections, persons), or "
                "read it through a mapping (--mapping MAP; 'biobank-node mapping init "
                f"{path.name}' writes a first one)"
            )
        roles[path] = found[0]
        if inferred is not None:
            inferred(path, found[0], found[1])
    return read_tables(
        [(path.name, roles[path], partial(read_table, path, ",")) for path in paths],
        sink,
        codes,
    )


#: one table: its name (a file name, or "book.xlsx sheet Biobanks"), its role, and a
#: function returning its rows in read_table's shape (header first)
Table = tuple[str, str, Callable[[], Iterator[tuple[str, Any, list[Problem]]]]]


def read_tables(tables: list[Table], sink: Sink, codes: Codes) -> int:
    """Read persons tables first, then biobanks and collections; return the data rows read.
    The tables may be CSV files or the sheets of a workbook (node.importing.sources.xlsx)."""
    contacts: dict[str, dict[str, str]] = {}
    count = 0
    schemas = SchemaSet.default()
    for _name, _role, opener in (t for t in tables if t[1] == "persons"):
        for _, row, _problems in opener():
            if row and row.get("id") and row.get("email") and row.get("id") != "id":
                name = " ".join(
                    x for x in (row.get("first_name", ""), row.get("last_name", "")) if x
                ).strip()
                contact = {"email": row["email"].strip()}
                if name:
                    contact["name"] = name
                if row.get("role", "").strip():
                    contact["role"] = row["role"].strip()[:200]
                contacts[row["id"]] = contact
    for name, kind, opener in tables:
        if kind not in ("biobank", "collection"):
            continue
        sources = (
            ("bbmri-eric-directory-2018",) if "eu_bbmri_eric" in name else ("bbmri-eric-directory",)
        )
        columns = BIOBANK_COLUMNS if kind == "biobank" else COLLECTION_COLUMNS
        rows = opener()
        next(rows)
        for loc, row, problems in rows:
            count += 1
            key = (row or {}).get("id") or None
            if row is None or problems:
                for p in problems:
                    sink.problem(p, kind, key)
                continue
            if row.get("withdrawn", "").strip().lower() == "true":
                sink.ignored(f"{name}: rows marked withdrawn")
                continue
            flat: dict[str, object] = {}
            names: dict[str, str] = {}
            for column, fld in columns.items():
                raw = _column(row, column)
                value = row.get(raw, "").strip()
                if fld in LISTS:
                    items = [v.strip() for v in value.split(",") if v.strip()]
                    for v in items:
                        if _not_available(v):
                            sink.ignored(f"{kind} {fld}: 'not available' code {v!r} left out")
                    flat[fld] = [v for v in items if not _not_available(v)]
                elif value and _not_available(value) and fld not in ("id", "biobank", "name"):
                    sink.ignored(f"{kind} {fld}: 'not available' code {value!r} left out")
                    flat[fld] = None
                else:
                    flat[fld] = value or None
                names[fld] = raw
            if not (flat.get("age.min") or flat.get("age.max")):
                flat.pop("age.unit", None)
            url = flat.get("url")
            if isinstance(url, str) and url and "://" not in url:
                flat["url"] = "http://" + url  # Directory rows often omit the scheme
            content, issues = recordfields.build(
                kind,
                flat,
                loc,
                codes,
                sources,
                names,
                dropped=_dropped(sink, kind),
            )
            if content.get("age") and "unit" not in content["age"]:  # type: ignore[operator]
                content["age"]["unit"] = "years"  # type: ignore[index]
            names["contact"] = _column(row, "contact")
            reference = _get(row, "contact").split(",")[0].strip()
            person = contacts.get(reference)
            if person:
                content["contact"] = person
            # schema problems in the same pass as code problems, both named by the file's
            # own column (fields whose codes failed are left out: only report the others)
            issues = [wording.plain(p, names) for p in issues]
            failed = {p.field for p in issues}
            issues += [
                p
                for p in (wording.plain(q, names) for q in schemas.problems(kind, content, loc))
                if p.field not in failed
            ]
            if issues:
                for p in issues:
                    sink.problem(p, kind, key)
                continue
            biobank = str(content.get("biobank") or content.get("id", ""))
            sink.record(kind, str(content.get("id", "")), biobank, content, loc, names)
    return count
