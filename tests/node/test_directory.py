"""BBMRI-ERIC Directory exports (EMX2 demo and the 2018 snapshot) import as records."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import orjson
import pytest

from node.importing.importer import run_import
from node.importing.mapping import Mapping
from protocol.errors import ConfigError
from tests.node.node_support import make_home

DEMO = "molgenis-emx2-directory/data/biobank-directory/demo"
OLD = "bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets"


def _latest(db: Path, kind: str) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(db)
    out = {
        id: orjson.loads(t)
        for id, t in conn.execute(
            "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
            "WHERE l.kind = ? AND c.content IS NOT NULL ORDER BY l.idx",
            (kind,),
        )
    }
    conn.close()
    return out


def test_emx2_demo_biobanks_collections_and_persons(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    files = [external / DEMO / n for n in ("Biobanks.csv", "Collections.csv", "Persons.csv")]
    report = run_import(home, files, fmt="directory")
    assert report.problems == [] and report.published == {"biobank": 3, "collection": 3}
    biobanks = _latest(home.db_path, "biobank")
    one = biobanks["bbmri-eric:ID:NL_biobank2"]
    assert one["country"] == "NL" and one["contact"]["email"] == "redacted@example.org"  # type: ignore[index]
    coll = _latest(home.db_path, "collection")["bbmri-eric:ID:DE_biobank1:collection:coll1"]
    assert coll["biobank"] == "bbmri-eric:ID:DE_biobank1"
    assert coll["use_conditions"] == ["DUO:0000003"]
    assert coll["age"] == {"min": 2, "max": 88, "unit": "years"}
    assert run_import(home, files, fmt="directory").appended == 0


def test_directory_2018_snapshot_collections(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    files = [
        external / OLD / "eu_bbmri_eric_biobanks.csv",
        external / OLD / "eu_bbmri_eric_collections.csv",
    ]
    strict = run_import(home, files, fmt="directory")
    assert not strict.applied  # the 2018 sheets carry no contact persons for biobanks
    assert {p.reason for p in strict.problems if p.field == "contact"} == {
        "a value is required but none was given"
    }
    report = run_import(home, files, fmt="directory", skip_invalid=True)
    # no biobank is valid, so no collection is published: each is a problem naming its
    # unpublished biobank (never a card without a biobank)
    assert report.applied and "collection" not in report.published
    unpublished = [p for p in report.problems if "neither in this import" in p.reason]
    assert len(unpublished) == 1488 and {p.field for p in unpublished} == {"biobank"}
    assert all(p.location.startswith("eu_bbmri_eric_") for p in report.problems)


def national_2018(external: Path, out: Path) -> tuple[list[Path], dict[str, int]]:
    """The 2018 snapshot in a national node's EMX2 shape: ``biobanks``, ``contact_person``,
    ``juristic_person``, and a persons table made from the contact ids it references
    (the snapshot has none; names and e-mails are made up, example.org)."""
    rows = {}
    for kind in ("biobanks", "collections"):
        with (external / OLD / f"eu_bbmri_eric_{kind}.csv").open(encoding="utf-8") as fh:
            rows[kind] = list(csv.DictReader(fh))
    ids = sorted({r["contact"] for r in rows["biobanks"] + rows["collections"] if r["contact"]})
    rows["persons"] = [
        {"id": id, "first_name": "Contact", "last_name": str(i), "email": f"c{i}@example.org"}
        for i, id in enumerate(ids)
    ]
    files = []
    for kind, table in rows.items():
        path = out / f"{kind.title()}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([NATIONAL.get(h, h) for h in table[0]])
            writer.writerows(r.values() for r in table)
        files.append(path)
    tally = {
        "biobanks": sum(1 for r in rows["biobanks"] if r["contact"]),
        "collections": len(rows["collections"]),
    }
    return files, tally


def test_the_2018_snapshot_as_a_national_export_imports_with_no_mapping(
    tmp_path: Path, external: Path
) -> None:
    home, _ = make_home(tmp_path, records=False)
    files, tally = national_2018(external, tmp_path)
    strict = run_import(home, files)
    # one biobank row has no contact person: reported with its schema problem, in one
    # pass, under the file's own column name
    assert [(p.field, p.reason) for p in strict.problems] == [
        ("contact_person", "a value is required but none was given")
    ]
    report = run_import(home, files, skip_invalid=True)
    assert report.published == {"biobank": tally["biobanks"], "collection": tally["collections"]}
    assert report.published == {"biobank": 544, "collection": 1488}
    assert report.ignored["collection sex: 'not available' code 'NAV' left out"] == 254


NATIONAL = {
    "biobank": "biobanks",
    "contact": "contact_person",
    "juridical_person": "juristic_person",
}


def national_export(external: Path, out: Path) -> list[Path]:
    """The demo export as a national node changes it: plural biobank references, contacts
    as ``contact_person``, ``juristic_person``, ICD-10 chapters and blocks as MIRIAM URNs,
    "not available" codes, and an age unit without bounds."""
    diagnoses = [
        "urn:miriam:icd:II",
        "urn:miriam:icd:C76-C80,NAV_DIAG",
        "E70-E90,NI,ORPHA:3000",
    ]
    files = []
    for name in ("Biobanks.csv", "Collections.csv", "Persons.csv"):
        with (external / DEMO / name).open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        header = [NATIONAL.get(h, h) for h in rows[0]]
        path = out / f"national_{name}"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for i, row in enumerate(rows):
                if name == "Collections.csv":
                    row["diagnosis_available"] = diagnoses[i % 3]
                    row["age_low"] = row["age_high"] = ""  # the unit stays, alone
                writer.writerow(row.values())
        files.append(path)
    return files


def test_a_national_variant_imports_with_no_mapping(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    files = national_export(external, tmp_path)
    report = run_import(home, files)
    assert report.problems == [] and report.published == {"biobank": 3, "collection": 3}
    assert (
        "national_Collections.csv: read as Directory collection table because it has id "
        "and a 'biobanks' column referencing biobanks" in report.inferred
    )
    assert report.ignored["collection diagnoses: 'not available' code 'NAV_DIAG' left out"] == 1
    assert report.ignored["collection diagnoses: 'not available' code 'NI' left out"] == 1
    colls = _latest(home.db_path, "collection")
    diagnoses = sorted(
        (d["code"] for c in colls.values() for d in c["diagnoses"]),  # type: ignore[attr-defined]
    )
    assert diagnoses == ["C00-D48", "C76-C80", "E70-E90", "ORPHA:3000"]
    assert all("age" not in c for c in colls.values())
    assert all(c["contact"]["email"] for c in colls.values())  # type: ignore[index]
    bb = _latest(home.db_path, "biobank")["bbmri-eric:ID:DE_biobank1"]
    assert bb["juristic_person"] == "A university"
    assert bb["contact"]["name"] == "Contact Biobank1"  # type: ignore[index]
    assert run_import(home, files).appended == 0


JOINED = """
kind = "biobank"

[[join]]
file = "Persons.csv"   # next to this mapping file
on = "contact"         # the export's column holding a persons id
key = "id"             # the column of Persons.csv it matches
as = "person"          # its columns are person.email, person.last_name, ...

[columns]
id = "id"
name = "name"
country = "country"
juristic_person = "juridical_person"
"contact.email" = "person.email"
"contact.name" = "person.last_name"
"contact.role" = "person.role"
"""


def test_a_mapping_joins_contacts_from_the_persons_table(tmp_path: Path, external: Path) -> None:
    for name in ("Biobanks.csv", "Persons.csv"):
        (tmp_path / name).write_bytes((external / DEMO / name).read_bytes())
    mapping_path = tmp_path / "biobanks.toml"
    mapping_path.write_text(JOINED, encoding="utf-8")
    mapping = Mapping.load(mapping_path)
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [tmp_path / "Biobanks.csv"], mapping=mapping)
    assert report.problems == [] and report.published == {"biobank": 3}
    one = _latest(home.db_path, "biobank")["bbmri-eric:ID:DE_biobank1"]
    assert one["contact"] == {  # from the Persons.csv row bbmri-eric:contactID:contact_bb1
        "email": "redacted@example.org",
        "name": "Biobank1",
        "role": "Contact person",
    }
    # only the mapped joined columns reach a record (person.phone, person.country do not)
    assert set(one) <= {"id", "name", "country", "juristic_person", "contact"}
    # a key the persons table lacks is a problem naming the export's column
    text = (tmp_path / "Biobanks.csv").read_text(encoding="utf-8")
    broken = tmp_path / "Broken.csv"
    broken.write_text(text.replace("contactID:contact_bb1", "contactID:nobody"), "utf-8")
    bad = run_import(home, [broken], mapping=mapping)
    assert not bad.applied
    assert [(p.field, p.value) for p in bad.problems] == [
        ("contact", "bbmri-eric:contactID:nobody")
    ]
    assert "no row of Persons.csv has id" in bad.problems[0].reason


def test_join_mistakes_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="for biobank and collection mappings"):
        Mapping.from_dict(
            {"kind": "sample", "columns": {"local_id": "a"}, "join": [{}]}, "m", tmp_path
        )
    with pytest.raises(ConfigError, match="needs on, key"):
        Mapping.from_dict(
            {"kind": "biobank", "columns": {"id": "a"}, "join": [{"file": "p.csv"}]}, "m"
        )
    (tmp_path / "p.csv").write_text("id,email\nx,a@b.org\nx,c@d.org\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,name,contact\nB1,One,x\n", encoding="utf-8")
    mapping = Mapping.from_dict(
        {
            "kind": "biobank",
            "columns": {"id": "id", "name": "name", "contact.email": "p.email"},
            "join": [{"file": "p.csv", "on": "contact", "key": "id"}],
        },
        "m",
        tmp_path,
    )
    home, _ = make_home(tmp_path, records=False)
    with pytest.raises(ConfigError, match="'x' occurs twice in p.csv"):
        run_import(home, [tmp_path / "b.csv"], mapping=mapping)


def test_an_empty_translation_drops_a_value_on_purpose(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(
        "id,name,country,mail,acronym\nB1,One,DE,a@b.org,ONE\nB2,Two,NL,c@d.org,NI\n", "utf-8"
    )
    raw = {
        "kind": "biobank",
        "columns": {
            "id": "id",
            "name": "name",
            "country": "country",
            "contact.email": "mail",
            "acronym": "acronym",
        },
    }
    home, _ = make_home(tmp_path, records=False)
    dropping = Mapping.from_dict({**raw, "values": {"acronym": {"NI": ""}}})
    report = run_import(home, [tmp_path / "b.csv"], mapping=dropping)
    assert report.problems == [] and report.published == {"biobank": 2}
    biobanks = _latest(home.db_path, "biobank")
    assert biobanks["B1"]["acronym"] == "ONE" and "acronym" not in biobanks["B2"]


def test_an_unpublished_biobank_is_named_by_the_operators_own_column(
    tmp_path: Path, external: Path
) -> None:
    """A collection whose biobank is not published is a problem under the file's own
    column (``biobanks`` in a national export, a mapping's column), never ``biobank``."""
    home, _ = make_home(tmp_path, records=False)
    files = national_export(external, tmp_path)
    collections = [f for f in files if f.name != "national_Biobanks.csv"]
    report = run_import(home, collections)
    assert not report.applied and len(report.problems) == 3
    assert {(p.field, p.location.split(" row ")[0]) for p in report.problems} == {
        ("biobanks", "national_Collections.csv")
    }
    assert all("is neither in this import nor published" in p.reason for p in report.problems)
    # the same through a collection mapping: the mapping's column is named
    (tmp_path / "c.csv").write_text("cid,name,bb_id\nC1,One,NOBODY\n", encoding="utf-8")
    mapping = Mapping.from_dict(
        {"kind": "collection", "columns": {"id": "cid", "name": "name", "biobank": "bb_id"}}
    )
    mapped = run_import(home, [tmp_path / "c.csv"], mapping=mapping)
    assert [(p.location, p.field, p.value) for p in mapped.problems] == [
        ("c.csv row 2", "bb_id", "NOBODY")
    ]


def test_a_missing_value_is_printed_as_empty_under_the_files_column(
    tmp_path: Path, external: Path
) -> None:
    """The printed problem of a biobank row without a contact person names the file's
    column and says the cell is empty (never ``/contact=None``)."""
    from typer.testing import CliRunner

    from node.cli import app

    make_home(tmp_path, records=False)
    files, _ = national_2018(external, tmp_path)
    result = CliRunner().invoke(app, ["import", *map(str, files), "--home", str(tmp_path / "home")])
    assert result.exit_code == 1
    assert [line for line in result.stdout.splitlines() if line.startswith("problem: ")] == [
        "problem: Biobanks.csv row 545: contact_person (empty): a value is required but none "
        "was given"
    ]
