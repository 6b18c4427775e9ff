"""BBMRI-ERIC Directory exports: biobank and collection rows (EMX2 demo and 2018 EMX1 sheets).

Files are recognised by their header: a persons table (``email`` and ``first_name``) gives
contact e-mails and is read first; a collections table has a ``biobank`` column; anything
else with ``id`` and ``name`` is a biobanks table. Directory codes map through the
``bbmri-eric-directory`` tables (``bbmri-eric-directory-2018`` for ``eu_bbmri_eric_*``
files). Codes outside our lists are left out of the record and listed as ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from node.importing import recordfields
from node.importing.codes import Codes
from node.importing.sources.base import Sink, read_table
from protocol.errors import Problem

__all__ = ["BIOBANK_COLUMNS", "COLLECTION_COLUMNS", "LISTS", "read"]

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


def read(paths: list[Path], sink: Sink, codes: Codes) -> int:
    """Read persons first, then biobanks and collections; return the data rows read."""
    roles: dict[Path, str] = {}
    for path in paths:
        header = _header(path)
        if "email" in header and "first_name" in header:
            roles[path] = "persons"
        elif "biobank" in header and "id" in header:
            roles[path] = "collection"
        elif "id" in header and "name" in header:
            roles[path] = "biobank"
        else:
            sink.problem(
                Problem(
                    f"{path.name} row 1",
                    "",
                    ",".join(header[:5]),
                    "not a Directory biobanks, collections or persons table",
                )
            )
    contacts: dict[str, dict[str, str]] = {}
    count = 0
    for path in (p for p in paths if roles.get(p) == "persons"):
        for _, row, _problems in read_table(path, ","):
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
    for path in paths:
        kind = roles.get(path)
        if kind not in ("biobank", "collection"):
            continue
        sources = (
            ("bbmri-eric-directory-2018",)
            if path.name.startswith("eu_bbmri_eric")
            else ("bbmri-eric-directory",)
        )
        columns = BIOBANK_COLUMNS if kind == "biobank" else COLLECTION_COLUMNS
        rows = read_table(path, ",")
        next(rows)
        for loc, row, problems in rows:
            count += 1
            key = (row or {}).get("id") or None
            if row is None or problems:
                for p in problems:
                    sink.problem(p, kind, key)
                continue
            if row.get("withdrawn", "").strip().lower() == "true":
                sink.ignored(f"{path.name}: rows marked withdrawn")
                continue
            flat: dict[str, object] = {}
            names: dict[str, str] = {}
            for column, fld in columns.items():
                value = row.get(column, "").strip()
                if fld in LISTS:
                    flat[fld] = [v.strip() for v in value.split(",") if v.strip()]
                else:
                    flat[fld] = value or None
                names[fld] = column
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
            found = contacts.get(row.get("contact", "").strip())
            if found:
                content["contact"] = found
            if issues:
                for p in issues:
                    sink.problem(p, kind, key)
                continue
            biobank = str(content.get("biobank") or content.get("id", ""))
            sink.record(kind, str(content.get("id", "")), biobank, content, loc)
    return count
