"""`biobank-node mapping init`: a mapping guessed from an export, then checked by preview."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from federation.generate import DATA, generate
from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.importing.mapping_init import guess, render, value_code
from node.importing.wording import reason_class
from node.policy import Policy, write_default
from node.preview import preview
from tests.node.node_support import make_home

COUNTRIES = sorted(p.stem for p in (DATA / "countries").glob("*.json"))
EMX2 = "molgenis-emx2-directory/data/biobank-directory/demo"
SYNC = "samply-directory-sync-service/ci/data/output/miabis_100_patients/DirectoryCollections.csv"


def _init(*args: str) -> str:
    result = CliRunner().invoke(app, ["mapping", "init", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _policy(home: Path) -> Policy:
    if not (home / "policy.toml").exists():
        write_default(home / "policy.toml")
    return Policy.load(home / "policy.toml")


def _problems(files: list[Path], mapping: Path, home: Path, node: Path | None = None) -> int:
    return preview(files, _policy(home), mapping_path=mapping, home=node).problems


def _reasons(files: list[Path], mapping: Path, home: Path) -> set[str]:
    policy = _policy(home)
    return {
        reason_class(p.reason) for p in preview(files, policy, mapping_path=mapping).problem_list
    }


@pytest.mark.parametrize("country", COUNTRIES)
def test_each_demo_flavour_gets_a_mapping_that_previews_without_problems(
    country: str, tmp_path: Path
) -> None:
    export = generate(country, 1500, 7, tmp_path / "export")
    out = tmp_path / "guess.toml"
    said = _init(str(export.samples_csv), "--out", str(out))
    assert "kind sample, 12 column(s) mapped, 0 left out" in said
    guessed = tomllib.loads(out.read_text(encoding="utf-8"))
    truth = tomllib.loads(export.samples_mapping.read_text(encoding="utf-8"))
    # the generator's own mapping is the answer key: same columns, no wrong value
    assert guessed["columns"] == truth["columns"]
    assert guessed["delimiter"] == truth["delimiter"]
    for fld, table in guessed.get("values", {}).items():
        for local, code in table.items():
            assert truth["values"][fld].get(local, local) == code, (fld, local)
    # the site and study names are left to the operator, listed as decisions: until they
    # are made (and the biobanks and collections published) every row's only problem is
    # its reference
    text = out.read_text(encoding="utf-8")
    assert "# [values.biobank]" in text and "DECIDE" in text
    assert _reasons([export.samples_csv], out, tmp_path) == {
        "the biobank '…' of this sample is neither in this import nor published "
        "(import the biobanks file with it, or first)"
    }
    # the operator decides (the generator's own ids) and publishes the records first
    decided = text + "".join(
        f"\n[values.{fld}]\n" + "".join(f'"{a}" = "{b}"\n' for a, b in truth["values"][fld].items())
        for fld in ("biobank", "collection")
    )
    out.write_text(decided, encoding="utf-8")
    home, _ = make_home(tmp_path, name="node", records=False)
    for csv_path, mapping in (
        (export.biobanks_csv, export.biobanks_mapping),
        (export.collections_csv, export.collections_mapping),
    ):
        assert run_import(home, [csv_path], mapping=Mapping.load(mapping)).applied
    assert _problems([export.samples_csv], out, tmp_path, home.path) == 0


def test_an_unknown_value_is_listed_as_a_decision_and_previewed_as_a_problem(
    tmp_path: Path,
) -> None:
    export = tmp_path / "lims.csv"
    export.write_text(
        "Proben-ID;Spender-Pseudonym;Standort;Sammlung;Material;Geschlecht;Alter;Notiz\n"
        "P1;D1;Nord;Krebs;Vollblut;w;50;frei\n"
        "P2;D2;Nord;Krebs;Zauberpulver;m;61;text\n",
        encoding="utf-8",
    )
    out = tmp_path / "lims.mapping.toml"
    _init(str(export))
    text = out.read_text(encoding="utf-8")
    assert '# "Zauberpulver" = ""' in text
    assert '"Vollblut" = "WholeBlood"' in text
    assert '#   "Notiz"' in text  # left out: never imported
    mapping = Mapping.load(out)
    assert "Notiz" not in mapping.columns.values()
    assert mapping.columns["age"] == "Alter" and mapping.values["sex"] == {
        "w": "female",
        "m": "male",
    }
    # the unknown material is the one code problem; both rows also name their site, which
    # is no published biobank yet
    assert _reasons([export], out, tmp_path) == {
        "not a MIABIS sample type",
        "the biobank '…' of this sample is neither in this import nor published "
        "(import the biobanks file with it, or first)",
    }
    # an existing mapping is not overwritten without --force
    refused = CliRunner().invoke(app, ["mapping", "init", str(export)])
    assert refused.exit_code == 2 and "exists" in refused.output
    assert out.read_text(encoding="utf-8") == text


def test_values_name_temperatures_and_codes() -> None:
    assert value_code("storage-temperature", "-80 °C") == ("-60to-85", "guessed")
    assert value_code("storage-temperature", "2-8 °C") == ("2to10", "guessed")
    assert value_code("storage-temperature", "-20C Freezer") == ("-18to-35", "guessed")
    assert value_code("storage-temperature", "LN2 Vapour") == ("LN", "guessed")
    assert value_code("sample-type", "Serum") == ("Serum", "code")
    assert value_code("sample-type", "WHOLE_BLOOD") == ("WholeBlood", "bbmri-eric-directory")
    assert value_code("sample-type", "Zauberpulver") is None


def test_directory_collections_give_a_useful_partial_mapping(
    external: Path, tmp_path: Path
) -> None:
    source = external / EMX2 / "Collections.csv"
    out = tmp_path / "collections.toml"
    _init(str(source), "--out", str(out))
    mapping = Mapping.load(out)
    assert mapping.kind == "collection" and mapping.list_separator == ","
    assert "bbmri-eric-directory" in mapping.sources
    for fld, column in {
        "id": "id",
        "biobank": "biobank",
        "sample_types": "materials",
        "storage_temperatures": "storage_temperatures",
        "sex": "sex",
        "age.min": "age_low",
        "age.max": "age_high",
        "use_conditions": "data_use",
    }.items():
        assert mapping.columns[fld] == column
    text = out.read_text(encoding="utf-8")
    assert '# "accredited" = ""' in text  # the one value with no code
    # the only problems preview finds are that listed decision (one per row)
    assert _problems([source], out, tmp_path) == 3


def test_a_sync_service_export_maps_through_the_directory_tables(
    external: Path, tmp_path: Path
) -> None:
    made = guess([external / SYNC])
    assert made.kind == "collection" and made.delimiter == ";" and made.list_separator == ","
    assert made.missing == ["biobank"]  # no biobank column: a decision
    assert made.mapped["sample_types"]["WHOLE_BLOOD"] == "WholeBlood"
    assert not made.undecided
    assert made.dropped == {"sex": ["NAV"]}  # "not available": no value, as the import does
    assert json.dumps(made.values) == "{}"


def test_the_2018_directory_collections_leave_only_units_to_decide(
    external: Path,
) -> None:
    made = guess(
        [
            external
            / "bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets"
            / "eu_bbmri_eric_collections.csv"
        ]
    )
    assert made.kind == "collection" and made.list_separator == ","
    assert {"bbmri-eric-directory", "bbmri-eric-directory-2018"} <= set(made.sources)
    assert made.columns["sample_types"] == "materials" and made.columns["biobank"] == "biobank"
    # ICD-10 chapters (urn:miriam:icd:II) are diagnoses the importer reads (as C00-D48)
    assert "diagnoses" not in made.undecided
    # "not available" codes are no value, left out on purpose (the importer drops them)
    assert made.dropped["sample_types"] == ["NAV"] and made.dropped["sex"] == ["NAV"]
    assert set(made.undecided) == {"age.unit"}
    assert "# 'not available' codes, left out on purpose (no value): NAV" in render(
        made, [Path("eu_bbmri_eric_collections.csv")]
    )


def test_refusals_exit_2_with_a_reason(tmp_path: Path) -> None:
    sheet = tmp_path / "export.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    result = CliRunner().invoke(app, ["mapping", "init", str(sheet)])
    assert result.exit_code == 2 and "not a readable .xlsx workbook" in result.output
    old = tmp_path / "export.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    result = CliRunner().invoke(app, ["mapping", "init", str(old)])
    assert result.exit_code == 2 and "save it as .xlsx or CSV" in result.output
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("id,name\n1,x\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["mapping", "init", str(csv_file), "--kind", "donor"])
    assert result.exit_code == 2 and "kind must be one of" in result.output
    assert not (tmp_path / "a.mapping.toml").exists()


def test_columns_without_a_known_name_are_matched_by_their_values(tmp_path: Path) -> None:
    export = tmp_path / "odd.csv"
    export.write_text(
        "F1,F2,F3,F4\n"
        "S1,Serum,C50.9|ORPHA:558,DUO:0000042\n"
        "S2,PLASMA,C18,DUO:0000042\n"
        "S3,Serum,C50.9,DUO:0000007\n",
        encoding="utf-8",
    )
    made = guess([export], kind="sample")
    assert made.columns == {
        "local_id": "F1",
        "sample_type": "F2",
        "diagnoses": "F3",
        "use_conditions": "F4",
    }
    assert made.why["sample_type"] == "values" and made.list_separator == "|"
    assert made.mapped["sample_type"] == {"PLASMA": "Plasma"}  # a Directory table knows it
    assert made.missing == ["biobank", "collection"]
    text = render(made, [export])
    assert '# biobank = "bbmri-eric:ID:XX_BIOBANK"   # DECIDE' in text
    assert Mapping.from_dict(tomllib.loads(text)).columns == made.columns


def test_mapping_init_reads_an_xlsx_workbook_through_the_xlsx_reader(tmp_path: Path) -> None:
    """The DE demo export as an Excel workbook (a Notes sheet first, the samples in a
    sheet named Samples, numbers as numbers): the same guess as from its CSV."""
    export = generate("DE", 600, 7, tmp_path / "export")
    with export.samples_csv.open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh, delimiter=";"))
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["exported by the LIMS"])
    sheet = book.create_sheet("Samples")
    for row in table:
        sheet.append([float(c) if c.isdigit() and len(c) < 4 else c for c in row])
    path = tmp_path / "lims.xlsx"
    book.save(path)
    out = tmp_path / "xlsx.toml"
    said = _init(str(path), "--out", str(out))
    assert "kind sample, 12 column(s) mapped, 0 left out" in said
    guessed = tomllib.loads(out.read_text(encoding="utf-8"))
    from_csv = guess([export.samples_csv])
    assert guessed["columns"] == from_csv.columns
    assert guessed["values"]["sample_type"] == from_csv.values["sample_type"]
    # the guessed mapping reads the workbook: only the undecided site names are problems
    assert _reasons([path], out, tmp_path) == {
        "the biobank '…' of this sample is neither in this import nor published "
        "(import the biobanks file with it, or first)"
    }


def test_mapping_init_suggests_the_nearest_codes_for_values_to_decide(tmp_path: Path) -> None:
    """A value with no code yet is a DECIDE line with the nearest known codes, as the
    importer's problem says them ("did you mean Blood?")."""
    export = tmp_path / "lims.csv"
    export.write_text(
        "Probe ID,Patient,Material,Alter\nS1,P1,blood,40\nS2,P2,bloood,41\nS3,P3,Serum,42\n",
        encoding="utf-8",
    )
    out = tmp_path / "lims.toml"
    _init(str(export), "--out", str(out))
    text = out.read_text(encoding="utf-8")
    assert '# "bloood" = ""   # did you mean Blood, CordBlood, WholeBlood?' in text
    Mapping.load(out)  # still loads
