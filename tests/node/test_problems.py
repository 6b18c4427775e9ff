"""Every problem in one pass, in the operator's words: spreadsheet rows, their columns,
plain reasons, a summary by reason and ``--report problems.csv`` (issue 15 item 7)."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.importing.wording import (
    plain,
    reason_class,
    rows_with_problems,
    split_location,
    summary,
)
from protocol.errors import Problem
from tests.node.node_support import make_home, sample_rows, write_csv, write_mapping

DEMO = "molgenis-emx2-directory/data/biobank-directory/demo"
OLD = "bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets"
RAW = ("^", "$", "\\", "{", "does not have enough properties", "does not match")

BIOBANK_MAPPING = """
kind = "biobank"

[columns]
id = "Biobank ID"
name = "Name"
country = "Land"
"contact.email" = "Kontakt E-Mail"
"contact.name" = "Kontakt"
url = "Webseite"
"""
HEADER = ["Biobank ID", "Name", "Land", "Kontakt", "Kontakt E-Mail", "Webseite", "Notiz"]


def _biobanks(path: Path) -> Path:
    """Five biobanks: a good one, a quoted two-line note, then three broken rows of three
    kinds (an unknown country code, an e-mail that is no e-mail, a missing name)."""
    rows = [
        ["bbmri-eric:ID:DE_A", "A", "DE", "Ann", "a@example.org", "https://a.example", ""],
        ["bbmri-eric:ID:DE_B", "B", "DE", "Bo", "b@example.org", "", "line one\nline two"],
        ["bbmri-eric:ID:XX_C", "C", "Deutschland", "Cy", "c@example.org", "", ""],
        ["bbmri-eric:ID:DE_D", "D", "DE", "Di", "not an address", "", ""],
        ["bbmri-eric:ID:DE_E", "", "DE", "Ed", "e@example.org", "", ""],
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _no_raw_text(problems: list[Problem]) -> None:
    for p in problems:
        assert not any(r in p.reason for r in RAW), p
        assert not p.field.startswith("/"), p


def test_code_and_schema_problems_come_in_one_pass_with_spreadsheet_rows_and_columns(
    tmp_path: Path,
) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml", BIOBANK_MAPPING))
    export = _biobanks(tmp_path / "biobanks.csv")
    strict = run_import(home, [export], mapping=mapping)
    assert not strict.applied
    # the quoted newline in row 3 is one spreadsheet row: the broken rows are 4, 5, 6
    by_row = {p.location: p for p in strict.problems}
    assert set(by_row) == {"biobanks.csv row 4", "biobanks.csv row 5", "biobanks.csv row 6"}
    assert by_row["biobanks.csv row 4"].field == "Land"
    assert by_row["biobanks.csv row 4"].value == "Deutschland"
    assert by_row["biobanks.csv row 5"].field == "Kontakt E-Mail"
    assert "e-mail address" in by_row["biobanks.csv row 5"].reason
    assert by_row["biobanks.csv row 6"].field == "Name"
    assert by_row["biobanks.csv row 6"].reason == "a value is required but none was given"
    _no_raw_text(strict.problems)
    skipping = run_import(home, [export], mapping=mapping, skip_invalid=True)
    assert skipping.applied and skipping.published == {"biobank": 2}
    assert sorted(map(str, skipping.problems)) == sorted(map(str, strict.problems))


def test_every_broken_row_of_a_real_directory_export_is_reported_without_skip_invalid(
    tmp_path: Path, external: Path
) -> None:
    files = [
        external / OLD / "eu_bbmri_eric_biobanks.csv",
        external / OLD / "eu_bbmri_eric_collections.csv",
    ]
    home, _ = make_home(tmp_path)
    strict = run_import(home, files, fmt="directory")
    assert not strict.applied and strict.problems
    skipping = run_import(home, files, fmt="directory", skip_invalid=True)
    assert skipping.applied
    assert sorted(map(str, strict.problems)) == sorted(map(str, skipping.problems))
    _no_raw_text(strict.problems)
    assert {p.field for p in strict.problems if "required" in p.reason} >= {"contact"}


def test_a_derived_directory_file_reports_code_and_schema_problems_together(
    tmp_path: Path, external: Path
) -> None:
    """The EMX2 demo with one biobank missing its country (a schema problem) and one
    collection whose size is words (a reader problem): both in the first report."""
    src = external / DEMO
    biobanks = (src / "Biobanks.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    biobanks[2] = biobanks[2].replace(",Amsterdam,NL,", ",Amsterdam,,")
    (tmp_path / "Biobanks.csv").write_text("".join(biobanks), encoding="utf-8")
    with (src / "Collections.csv").open(encoding="utf-8", newline="") as fh:
        collections = list(csv.reader(fh))
    collections[1][collections[0].index("size")] = "about a thousand"
    with (tmp_path / "Collections.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(collections)
    files = [tmp_path / "Biobanks.csv", tmp_path / "Collections.csv", src / "Persons.csv"]
    home, _ = make_home(tmp_path)
    report = run_import(home, files, fmt="directory")
    assert not report.applied
    places = {(p.location, p.field) for p in report.problems}
    assert ("Biobanks.csv row 3", "country") in places
    assert ("Collections.csv row 2", "size") in places
    # the broken biobank is not "in the import": its collections are named in the same pass
    others = [
        p
        for p in report.problems
        if (p.location, p.field)
        not in {("Biobanks.csv row 3", "country"), ("Collections.csv row 2", "size")}
    ]
    assert others and all("neither in this import nor published" in p.reason for p in others)
    assert len(report.problems) == 2 + len(others), report.problems
    _no_raw_text(report.problems)


def test_wording_translates_schema_text_and_record_paths() -> None:
    columns = {"contact.email": "Mail", "contact.name": "Person", "country": "Land"}
    regex = Problem("f.csv row 7", "/contact/email", "x", "'x' does not match '^[^@\\\\s]+@[^@]+$'")
    assert plain(regex, columns) == Problem(
        "f.csv row 7",
        "Mail",
        "x",
        "not in the expected form: must be an e-mail address (name@example.org)",
    )
    age = plain(
        Problem(
            "c row 2",
            "/age",
            {"unit": "years"},
            "{'unit': 'years'} does not have enough properties",
        )
    )
    assert age.field == "age" and "minimum or a maximum" in age.reason
    missing = plain(Problem("b row 3", "/contact", None, "required field is missing"), columns)
    assert missing.field == "Mail / Person"
    assert plain(missing, columns) == missing  # idempotent
    assert plain(Problem("s row 2", "/size", "x", "'x' is not of type 'integer'")).reason == (
        "not a whole number"
    )
    assert reason_class("unknown code 'Blut' for sample_type") == "unknown code '…' for sample_type"
    assert reason_class("not a MIABIS sample type; did you mean Blood, CordBlood?") == (
        "not a MIABIS sample type; did you mean …?"
    )
    assert split_location("a.csv row 3; a.csv row 9") == [("a.csv", "3"), ("a.csv", "9")]
    dup = Problem("a.csv row 3; a.csv row 9", "id", "x", "duplicate sample id")
    assert rows_with_problems([dup, Problem("a.csv row 3", "sex", "?", "unknown code")]) == 2
    assert summary([missing, missing, age])[0] == (missing.reason, 2)


def test_cli_prints_a_summary_by_reason_and_writes_the_report(tmp_path: Path) -> None:
    make_home(tmp_path)
    mapping = write_mapping(tmp_path / "map.toml", BIOBANK_MAPPING)
    export = _biobanks(tmp_path / "biobanks.csv")
    out = tmp_path / "problems.csv"
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(export),
            "--home",
            str(tmp_path / "home"),
            "--mapping",
            str(mapping),
            "--report",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "3 problem(s) in 3 row(s), by reason:" in result.output
    assert "a value is required but none was given" in result.output
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["row"], r["column"]) for r in rows] == [
        ("biobanks.csv", "4", "Land"),
        ("biobanks.csv", "5", "Kontakt E-Mail"),
        ("biobanks.csv", "6", "Name"),
    ]
    assert rows[0]["value"] == "Deutschland" and rows[0]["reason"]


def test_directory_problems_name_the_files_own_column(tmp_path: Path, external: Path) -> None:
    """A national variant's columns (``contact_person``, ``biobanks``) are what its
    problems name, for schema and code problems alike, never the record field."""
    src = external / DEMO
    with (src / "Biobanks.csv").open(encoding="utf-8", newline="") as fh:
        biobanks = list(csv.reader(fh))
    head = biobanks[0]
    head[head.index("contact")] = "contact_person"
    head[head.index("juridical_person")] = "juristic_person"
    biobanks[1][head.index("contact_person")] = ""  # no contact: a schema problem
    biobanks[2][head.index("country")] = "Nederland"  # not a code: left out, then missing
    with (tmp_path / "Biobanks.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(biobanks)
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [tmp_path / "Biobanks.csv", src / "Persons.csv"])
    assert not report.applied
    got = {(p.location, p.field): p.reason for p in report.problems}
    assert got[("Biobanks.csv row 2", "contact_person")] == "a value is required but none was given"
    assert got[("Biobanks.csv row 3", "country")] == "a value is required but none was given"
    assert report.ignored["biobank country code 'Nederland' (not in our lists)"] == 1
    assert len(got) == 2
    _no_raw_text(report.problems)


def test_sample_code_problems_name_the_code_list_in_words(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    rows[0][2] = "Blod"  # material
    rows[1][3] = "-80 Grad"  # storage temperature
    rows[2][4] = "x"  # sex
    rows[3][7] = "ORPHA:999999"
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    reasons = {p.field: p.reason for p in report.problems}
    assert reasons["material"] == "not a MIABIS sample type; did you mean Blood, CordBlood?"
    assert reasons["temp"] == (
        "not a MIABIS storage temperature (one of RT, 2to10, -18to-35, -60to-85, LN, Other)"
    )
    assert reasons["gender"].startswith("not a sex code (one of female, male, other, unknown)")
    assert reasons["icd10"] == "not a known ORPHA code (e.g. ORPHA:558)"
    assert all("unknown code" not in r for r in reasons.values())
    assert [c for c, _n in summary(report.problems)][0].startswith("not a ")


def test_a_valid_row_sharing_an_id_with_an_invalid_row_is_a_duplicate(tmp_path: Path) -> None:
    """Both rows named, neither imported: which one is right is the operator's call."""
    rows = [
        ["bbmri-eric:ID:DE_A", "A", "DE", "Ann", "a@example.org", "https://a.example", ""],
        ["bbmri-eric:ID:DE_A", "A again", "DE", "Ann", "not an address", "", ""],
        ["bbmri-eric:ID:DE_B", "B", "DE", "Bo", "b@example.org", "", ""],
    ]
    export = tmp_path / "biobanks.csv"
    with export.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    mapping = Mapping.load(write_mapping(tmp_path / "bb.toml", BIOBANK_MAPPING))
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [export], mapping=mapping, skip_invalid=True)
    dup = [p for p in report.problems if p.reason.startswith("duplicate")]
    assert [(p.location, p.field, p.value) for p in dup] == [
        ("biobanks.csv row 2; biobanks.csv row 3", "id", "bbmri-eric:ID:DE_A")
    ]
    assert report.published == {"biobank": 1}  # DE_B only
    # samples too: a valid row and a row with an unknown code share a local id
    home2, _ = make_home(tmp_path, name="samples")
    sample_mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    samples = sample_rows(4)
    samples.append([samples[0][0], *samples[0][1:2], "Blut", *samples[0][3:]])
    report = run_import(
        home2, [write_csv(tmp_path / "s.csv", samples)], mapping=sample_mapping, skip_invalid=True
    )
    dup = [p for p in report.problems if p.reason.startswith("duplicate")]
    assert [(p.location, p.value) for p in dup] == [("s.csv row 2; s.csv row 6", "S000000")]
    assert report.staged_samples == 3
