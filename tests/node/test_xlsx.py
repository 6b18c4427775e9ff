""".xlsx exports import like CSV through a mapping (issue 15 item 5).

Workbooks are built at run time (openpyxl) from the CSV fixtures of the node tests and
from the real 2018 Directory export sheets.
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from pathlib import Path

import openpyxl
import pytest

from node.importing.importer import detect_format, run_import
from node.importing.mapping import Mapping
from node.importing.sources.xlsx import cell_text, roles, sheet_role
from protocol.errors import ConfigError
from tests.node.node_support import (
    BIOBANK,
    COLLECTION,
    HEADER,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)
from tests.node.node_support import MAPPING as MAPPING_TEXT
from tests.support import external_data

D2018 = Path("bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets")


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _held(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT local_id, sample_type, storage_temperature, sex, age, year, diagnoses "
        "FROM holding ORDER BY local_id"
    ).fetchall()
    conn.close()
    return rows


def _typed(rows: list[list[str]]) -> list[list[object]]:
    """What Excel holds for the CSV rows: ages as numbers, dates as dates."""
    out: list[list[object]] = []
    for row in rows:
        typed: list[object] = list(row)
        typed[5] = float(row[5])
        typed[6] = dt.datetime.fromisoformat(row[6])
        out.append(typed)
    return out


def test_xlsx_imports_like_the_same_csv(tmp_path: Path) -> None:
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(8, donors=4)
    csv_home, _ = make_home(tmp_path, name="csv")
    csv_report = run_import(csv_home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    book = _workbook(
        tmp_path / "export.xlsx",
        {"Notes": [["exported by the LIMS"]], "Samples": [HEADER, *_typed(rows)]},
    )
    assert detect_format(book, mapping) == "xlsx"
    home, _ = make_home(tmp_path, name="xlsx")
    report = run_import(home, [book], mapping=mapping)
    assert report.problems == [] and csv_report.problems == []
    assert report.rows == 8 and report.published == csv_report.published
    assert _held(home.db_path) == _held(csv_home.db_path)
    assert any("'Notes'" in what for what in report.ignored)  # the other sheet is named
    assert run_import(home, [book], mapping=mapping).appended == 0


def test_rows_are_the_rows_excel_shows_and_a_bad_row_publishes_nothing(tmp_path: Path) -> None:
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows: list[list[object]] = [HEADER, *_typed(sample_rows(4))]
    rows.insert(3, [None] * len(HEADER))  # an empty row 4 between the data
    rows[4][2] = "Gummibaerchen"  # row 5 has an unknown material
    rows.append(["S999999", "P1", "Vollblut", "-60to-85", "w", 45, "2016-03-01", "C50.9", "x"])
    book = _workbook(tmp_path / "export.xlsx", {"Sheet1": rows})
    home, _ = make_home(tmp_path)
    report = run_import(home, [book], mapping=mapping)
    assert not report.applied and report.size_after == report.size_before
    found = {(p.location, p.field, str(p.value)) for p in report.problems}
    assert ("export.xlsx sheet Sheet1 row 5", "material", "Gummibaerchen") in found
    assert any(loc.endswith("row 7") and value == "x" for loc, _, value in found)
    assert report.rows == 5  # the empty row is no data row


def test_sheet_names_name_roles(tmp_path: Path) -> None:
    assert sheet_role("Samples") == "sample" and sheet_role(" collections ") == "collection"
    assert sheet_role("eu_bbmri_eric_biobanks") == "biobank"
    assert sheet_role("Persons") == "person" and sheet_role("contacts") == "person"
    assert sheet_role("Notes") is None and sheet_role("Sheet1") is None
    book = _workbook(tmp_path / "b.xlsx", {"Biobanks": [["id"]], "Notes": [["x"]]})
    assert roles(book) == {"Biobanks": "biobank", "Notes": None}


def test_cell_text_matches_what_a_csv_export_holds() -> None:
    assert cell_text(45.0) == "45" and cell_text(45.5) == "45.5" and cell_text(None) == ""
    assert cell_text(dt.datetime(2016, 3, 1)) == "2016-03-01"
    assert cell_text(dt.datetime(2016, 3, 1, 8, 30)) == "2016-03-01T08:30:00"
    assert cell_text(True) == "true" and cell_text(" Blood ") == " Blood "


def test_not_a_workbook_is_refused(tmp_path: Path) -> None:
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    bad = tmp_path / "export.xlsx"
    bad.write_text("sample_id,material\n", encoding="utf-8")
    home, _ = make_home(tmp_path)
    with pytest.raises(ConfigError, match="not a readable .xlsx"):
        run_import(home, [bad], mapping=mapping)


def test_real_directory_sheet_as_xlsx_equals_its_csv(tmp_path: Path) -> None:
    """The real 2018 biobanks sheet, put back into a workbook, imports as its CSV does."""
    source = external_data() / D2018 / "eu_bbmri_eric_biobanks.csv"
    with source.open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    mapping = Mapping.from_dict(
        {
            "kind": "biobank",
            "columns": {
                "id": "id",
                "name": "name",
                "acronym": "acronym",
                "country": "country",
                "juristic_person": "juridical_person",
            },
            "fixed": {"contact.email": "directory@example.org"},
        }
    )
    book = _workbook(tmp_path / "directory.xlsx", {"eu_bbmri_eric_biobanks": table})
    results = []
    for name, path in (("csv", source), ("xlsx", book)):
        home, _ = make_home(tmp_path, name=name)
        report = run_import(home, [path], mapping=mapping, skip_invalid=True)
        problems = sorted(
            (p.location.rsplit(" ", 1)[-1], p.field, p.reason) for p in report.problems
        )
        results.append((report.rows, report.published, problems))
    assert results[0] == results[1]
    assert results[0][0] == len(table) - 1 and results[0][1].get("biobank", 0) > 0


def test_xlsx_samples_without_a_mapping_are_refused(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "samples.xlsx", {"Samples": [HEADER, *_typed(sample_rows(2))]})
    home, _ = make_home(tmp_path)
    with pytest.raises(ConfigError, match="sheet 'Samples' holds samples: give --mapping"):
        run_import(home, [book])
    notes = _workbook(tmp_path / "notes.xlsx", {"Sheet1": [["a", "b"]]})
    with pytest.raises(ConfigError, match="no sheet names a role"):
        run_import(home, [notes])


DEMO = Path("molgenis-emx2-directory/data/biobank-directory/demo")
DEMO_BIOBANK = "bbmri-eric:ID:DE_biobank1"
DEMO_COLLECTION = "bbmri-eric:ID:DE_biobank1:collection:coll1"


def _directory_sheets() -> dict[str, list[list[object]]]:
    """The EMX2 Directory demo's three tables, as a national node's workbook has them."""
    sheets: dict[str, list[list[object]]] = {}
    for name in ("Biobanks", "Collections", "Persons"):
        with (external_data() / DEMO / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
            sheets[name] = [list(r) for r in csv.reader(fh)]
    return sheets


def test_a_workbook_of_role_sheets_imports_in_one_import(tmp_path: Path) -> None:
    """Biobanks, Collections and Persons sheets (Directory-shaped) and a Samples sheet in
    ONE workbook, ONE import: the sheets split into their roles, the samples reference
    the biobank and collection of the same workbook."""
    text = MAPPING_TEXT.replace(BIOBANK, DEMO_BIOBANK, 1).replace(COLLECTION, DEMO_COLLECTION)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml", text))
    sheets = _directory_sheets()
    book = _workbook(
        tmp_path / "export.xlsx",
        {
            "Notes": [["written by hand"]],
            **sheets,
            "Samples": [HEADER, *_typed(sample_rows(4))],
        },
    )
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [book], mapping=mapping)
    assert report.problems == [], report.problems
    assert report.published == {"biobank": 3, "collection": 3, "sample-group": 1}
    # rows of the record sheets and the samples (a persons row is a lookup, not counted)
    assert report.rows == len(sheets["Biobanks"]) - 1 + len(sheets["Collections"]) - 1 + 4
    said = "export.xlsx sheet Collections: read as Directory collection table (the sheet's name)"
    assert said in report.inferred
    assert "export.xlsx sheet Samples: read as sample rows through the mapping" in report.inferred
    # one line per sheet, no line for the workbook as a whole (which would say "sample rows")
    assert all(line.startswith("export.xlsx sheet ") for line in report.inferred)
    assert report.ignored["export.xlsx: sheet 'Notes' (the mapping reads sheet 'Samples')"] == 1
    assert run_import(home, [book], mapping=mapping).appended == 0


def test_a_workbook_of_directory_sheets_needs_no_mapping(tmp_path: Path) -> None:
    sheets = _directory_sheets()
    sheets["Biobanks"][2][sheets["Biobanks"][0].index("country")] = ""  # a problem
    book = _workbook(tmp_path / "directory.xlsx", sheets)
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [book], skip_invalid=True)
    assert [(p.location, p.field) for p in report.problems][0] == (
        "directory.xlsx sheet Biobanks row 3",
        "country",
    )
    # the broken biobank's collections are named in the same pass; the others publish
    head, broken = sheets["Biobanks"][0], sheets["Biobanks"][2]
    biobank_column = sheets["Collections"][0].index("biobank")
    kept = [r for r in sheets["Collections"][1:] if r[biobank_column] != broken[head.index("id")]]
    assert 0 < len(kept) < len(sheets["Collections"]) - 1
    assert report.published == {"biobank": 2, "collection": len(kept)}
    # a role given for the file picks one sheet
    only = run_import(
        make_home(tmp_path, name="only", records=False)[0],
        [book],
        roles={book: "biobank"},
        skip_invalid=True,
    )
    assert only.published == {"biobank": 2} and only.rows == len(sheets["Biobanks"]) - 1
