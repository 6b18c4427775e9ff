"""Codes as people write them (issue 15 item 6): case, prefixes, ICD-10 blocks and
chapters, "not available" codes and did-you-mean problems, on real public exports."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import orjson
import pytest

from node.importing.codes import NO_VALUE, Codes, diagnosis, not_available
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.privacy import generalise_diagnoses
from tests.node.node_support import MAPPING, make_home, sample_rows, write_csv, write_mapping
from tests.node.test_directory import national_2018

DISEASES = "molgenis-emx2-directory/data/biobank-directory/ontologies/DiseaseTypes.csv"
OLD = "bbmri-eric-directory-2018/sample-data/bbmri_eric.xlsx.sheets"
BEACON_DISEASE = "ga4gh-beacon-v2-framework/models/json/beacon-v2-default-model/common/disease.json"
MIABIS = "sthanke-miabis-on-fhir-generator/miabis-bundle-10donors.json"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _contents(db: Path, kind: str) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(db)
    out = {
        id: orjson.loads(text)
        for id, text in conn.execute(
            "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
            "WHERE l.kind = ? AND c.content IS NOT NULL ORDER BY l.idx",
            (kind,),
        )
    }
    conn.close()
    return out


def _icd_pattern(schema: str) -> re.Pattern[str]:
    data = json.loads((SCHEMAS / schema).read_text(encoding="utf-8"))
    return re.compile(data["$defs"]["icd10_code_or_block"]["pattern"])


# --- case and whitespace ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("codelist", "written", "ours"),
    [
        ("sample-type", "blood", "Blood"),
        ("sample-type", " BLOOD ", "Blood"),
        ("sample-type", "whole  blood", "WholeBlood"),  # the EN label, spacing ignored
        ("sample-type", "WHOLE_BLOOD", "WholeBlood"),  # the Directory's spelling
        ("sample-type", "wholeblood", "WholeBlood"),
        ("sex", "Female", "female"),
        ("duo", "duo:0000042", "DUO:0000042"),
        ("duo", "DUO_0000042", "DUO:0000042"),  # OBO CURIE form
        ("duo", "obo:DUO_0000042", "DUO:0000042"),
        ("duo", "http://purl.obolibrary.org/obo/DUO_0000042", "DUO:0000042"),
    ],
)
def test_case_spacing_and_prefixes_do_not_matter(codelist: str, written: str, ours: str) -> None:
    assert Codes.default().map(codelist, written) == ours


def test_a_spelling_two_codes_share_is_not_guessed() -> None:
    codes = Codes.default()
    # "Blood" is a code and "blood" its key: it must not become WholeBlood or CordBlood
    assert codes.map("sample-type", "blood") == "Blood"
    assert codes.map("sample-type", "blod") is None


def test_import_treats_blood_and_Blood_as_one_code(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    for row, written in zip(rows, ["blood", "Blood", " BLOOD", "Vollblut"], strict=True):
        row[2] = written
    for row, written in zip(rows, ["ICD10:I83", "urn:miriam:icd:I83", "i83", "I83"], strict=True):
        row[7] = written
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert report.problems == []
    groups = _contents(home.db_path, "sample-group")
    assert sorted(g["sample_type"] for g in groups.values()) == ["Blood", "WholeBlood"]  # type: ignore[type-var]
    assert all(g["diagnoses"] == [{"system": "ICD-10", "code": "I83"}] for g in groups.values())
    assert report.staged_samples == 4 and len(groups) == 2


# --- one code, many prefixes ------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["ICD10:I83", "urn:miriam:icd:I83", "ICD-10: I83", "icd10who:i83", "I83", " i83 "],
)
def test_icd10_prefixes_are_one_code(written: str) -> None:
    assert diagnosis(written) == {"system": "ICD-10", "code": "I83"}


@pytest.mark.parametrize(
    "written",
    [
        "ORPHA:558",
        "Orphanet_558",
        "ordo:Orphanet_558",
        "orphanet:558",
        "ORPHA_558",
        "http://www.orpha.net/ORDO/Orphanet_558",
        "https://identifiers.org/orphanet:558",
    ],
)
def test_orpha_prefixes_are_one_code(written: str) -> None:
    assert diagnosis(written) == {"system": "ORPHA", "code": "ORPHA:558"}


@pytest.mark.parametrize("written", ["ORPHA:C050", "Orphanet_", "C80-C76", "II", "blood", "C-50"])
def test_what_is_no_diagnosis_stays_refused(written: str) -> None:
    assert diagnosis(written) is None


def test_beacon_disease_example_codes(external: Path) -> None:
    data = json.loads((external / BEACON_DISEASE).read_text(encoding="utf-8"))
    examples = {e["id"]: e for e in data["properties"]["diseaseCode"]["examples"]}
    assert diagnosis("ICD10CM:E73") == {"system": "ICD-10", "code": "E73"}
    assert "ICD10CM:E73" in examples
    # HPO and OMIM terms are not published diagnoses
    assert diagnosis("HP:0004789") is None and "HP:0004789" in examples


# --- ICD-10 blocks and chapters -----------------------------------------------------------


def test_every_directory_disease_type_parses(external: Path) -> None:
    """All 23,000+ ICD-10 and ORPHA terms of the Directory's DiseaseTypes ontology (names,
    and their identifiers.org / WHO browser URIs) parse, except Orphanet's classification
    heads (ORPHA:C050 ...), which are no ORPHA numbers."""
    with (external / DISEASES).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 20000
    chapters = json.loads((SCHEMAS / "codelists/icd10-chapter.json").read_text("utf-8"))
    ranges = {c["code"]: c["range"] for c in chapters["codes"]}
    patterns = [_icd_pattern("collection.schema.json"), _icd_pattern("sample-group.schema.json")]
    refused = []
    for row in rows:
        name = row["name"]
        if not_available(name):
            assert name == "*"  # the Directory's "Any"
            continue
        got = diagnosis(name)
        if got is None:
            refused.append(name)
            continue
        uri = row["ontologyTermURI"]
        if "identifiers.org" in uri or "icd.who.int" in uri:
            assert diagnosis(uri) == got, (name, uri)
        if got["system"] == "ICD-10":
            assert all(p.match(got["code"]) for p in patterns), got
            code = row["code"].removesuffix(".-")
            assert got["code"] == ranges.get(code, code), (name, row["code"])
        else:
            assert got["code"] == row["code"]
    assert refused and all(re.fullmatch(r"ORPHA:C\d+", n) for n in refused), refused
    assert diagnosis("urn:miriam:icd:II") == {"system": "ICD-10", "code": "C00-D48"}
    assert diagnosis("urn:miriam:icd:E70-E90") == {"system": "ICD-10", "code": "E70-E90"}
    assert diagnosis("https://icd.who.int/browse10/2019/en#/C76-C80") == {
        "system": "ICD-10",
        "code": "C76-C80",
    }


def test_directory_2018_chapter_reaches_the_collection(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path)
    # the raw snapshot's biobanks have no contact (a required field), so none is published
    # and no collection may point at them: its national shape carries the contacts
    files, _ = national_2018(external, tmp_path)
    report = run_import(home, files, skip_invalid=True)
    assert report.applied
    collections = _contents(home.db_path, "collection")
    one = collections["bbmri-eric:ID:collection:SE_1701:collection:all_samples"]
    assert one["diagnoses"] == [{"system": "ICD-10", "code": "C00-D48"}]  # urn:miriam:icd:II
    assert not any("diagnos" in key for key in report.ignored), report.ignored
    # the sheet says sex NAV: a Directory export's "not available" codes are left out
    assert "sex" not in one
    assert any("'not available' code 'NAV'" in key for key in report.ignored), report.ignored


def test_fhir_block_reaches_the_collection(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path)
    report = run_import(home, [external / MIABIS])
    assert report.problems == []
    blocks = [
        d
        for c in _contents(home.db_path, "collection").values()
        for d in c.get("diagnoses", [])  # type: ignore[attr-defined]
        if d["code"] == "C00-C97"
    ]
    assert blocks and all(d["system"] == "ICD-10" for d in blocks)


def test_csv_samples_with_blocks_and_chapters_publish_them(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    for row, written in zip(
        rows, ["C76-C80", "urn:miriam:icd:C76-C80", "urn:miriam:icd:II", "ICD10:II"], strict=True
    ):
        row[7] = written
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert report.problems == [] and report.applied
    codes = sorted(
        (d["code"], g["samples"])
        for g in _contents(home.db_path, "sample-group").values()
        for d in g["diagnoses"]  # type: ignore[attr-defined]
    )
    assert codes == [("C00-D48", 2), ("C76-C80", 2)]


def test_a_block_stays_a_block_at_category_precision() -> None:
    text = json.dumps(
        [{"system": "ICD-10", "code": "C76-C80"}, {"system": "ICD-10", "code": "C50.9"}]
    )
    assert json.loads(generalise_diagnoses(text, "category")) == [
        {"code": "C50", "system": "ICD-10"},
        {"code": "C76-C80", "system": "ICD-10"},
    ]
    assert json.loads(generalise_diagnoses(text, "chapter")) == [
        {"code": "C00-D48", "system": "ICD-10"}
    ]


# --- "not available" is no value -------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["NAV", "NAV_DISEASE", "nask", "NI", "NA", "n/a", "UNK", "Not available", "*"]
)
def test_not_available_codes_are_no_value(written: str) -> None:
    assert not_available(written)
    assert Codes.default().map("storage-temperature", written) == NO_VALUE
    assert Codes.default().map("dataset-type", written) == NO_VALUE


def test_a_known_code_wins_over_not_available() -> None:
    # "unknown" is a sex code of our list; NAV ("not available") is no value, never
    # "unknown", through the Directory tables too (as the Directory reader drops it)
    assert Codes.default().map("sex", "UNKNOWN") == "unknown"
    for source in ("bbmri-eric-directory", "bbmri-eric-directory-2018"):
        assert Codes.default().map("sex", "NAV", (source,)) == NO_VALUE
    assert not not_available("NAVAL") and not not_available("Blood")


NAV_COLLECTIONS = """
kind = "collection"
sources = ["bbmri-eric-directory"]
list_separator = ","

[columns]
id = "id"
biobank = "biobank"
name = "name"
sex = "sex"
"""


def test_not_available_sex_is_left_out_on_both_directory_paths(
    tmp_path: Path, external: Path
) -> None:
    """The Directory demo's Collections.csv with sex ``NAV`` in one row: read as a
    Directory export (no mapping) and as CSV through a mapping with the Directory tables,
    the collection gets the same sex list, without "unknown"."""
    src = external / "molgenis-emx2-directory/data/biobank-directory/demo"
    with (src / "Collections.csv").open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    sex = table[0].index("sex")
    table[1][sex] = "FEMALE,NAV"
    table[2][sex] = "NAV"
    collections = tmp_path / "Collections.csv"
    with collections.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table)
    results = []
    for name, files, mapping in (
        ("directory", [src / "Biobanks.csv", collections, src / "Persons.csv"], None),
        ("csv", [collections], Mapping.load(write_mapping(tmp_path / "c.toml", NAV_COLLECTIONS))),
    ):
        home, _ = make_home(tmp_path, name=name, records=False)
        if mapping is not None:  # the biobanks first, as a Directory export
            assert run_import(home, [src / "Biobanks.csv", src / "Persons.csv"]).applied
        report = run_import(home, files, mapping=mapping)
        assert report.problems == [], report.problems
        conn = sqlite3.connect(home.db_path)
        contents = [
            orjson.loads(t)
            for (t,) in conn.execute(
                "SELECT c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
                "WHERE l.kind = 'collection' ORDER BY l.id"
            )
        ]
        conn.close()
        results.append([c.get("sex") for c in contents])
    directory, through_mapping = results
    assert directory == through_mapping
    assert all("unknown" not in (s or []) for s in directory)
    assert ["female"] in directory and None in directory  # NAV alone: no sex at all


def test_not_available_sex_of_a_sample_is_left_out(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    text = MAPPING.replace(
        'list_separator = ";"', 'list_separator = ";"\nsources = ["bbmri-eric-directory"]'
    )
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml", text))
    rows = sample_rows(4)
    rows[0][4] = "NAV"
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert report.problems == []
    conn = sqlite3.connect(home.db_path)
    sexes = dict(conn.execute("SELECT local_id, sex FROM holding"))
    conn.close()
    assert sexes["S000000"] is None and sexes["S000001"] == "female"


def test_import_leaves_not_available_values_out(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    rows[0][7], rows[1][7] = "UNK", "NAV_ICD"  # rows 2 and 3 keep C50.9
    for row in rows:
        row[3] = "NI"
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert report.problems == []
    groups = list(_contents(home.db_path, "sample-group").values())
    assert all("storage_temperature" not in g for g in groups)
    found = sorted((g.get("diagnoses", []) for g in groups), key=len)  # type: ignore[arg-type]
    assert found == [[], [{"system": "ICD-10", "code": "C50.9"}]]


def test_a_required_code_that_is_not_available_is_a_problem(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(2)
    rows[0][2] = "NAV"
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert not report.applied
    (problem,) = report.problems
    assert problem.value == "NAV" and "missing required sample_type" in problem.reason


# --- did you mean ----------------------------------------------------------------------


def test_unknown_code_names_the_nearest_codes(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(3)
    rows[0][2], rows[1][2] = "Blod", "Whole blod"
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert not report.applied
    reasons = {p.value: p.reason for p in report.problems}
    assert reasons["Blod"].startswith("not a MIABIS sample type; did you mean Blood")
    assert "did you mean WholeBlood" in reasons["Whole blod"]


def test_an_unrecognisable_code_gets_no_suggestion() -> None:
    codes = Codes.default()
    assert codes.unknown("sample-type", "sample_type", "zzzz") == "not a MIABIS sample type"
    assert codes.suggest("sample-type", "Serun")[0] == "Serum"


def test_collection_record_problem_names_the_nearest_code(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping_text = """
kind = "collection"
[fixed]
biobank = "bbmri-eric:ID:DE_TEST"
[columns]
id = "id"
name = "name"
sample_types = "material"
diagnoses = "dx"
"""
    mapping = Mapping.load(write_mapping(tmp_path / "c.toml", mapping_text))
    export = write_csv(
        tmp_path / "c.csv",
        [["bbmri-eric:ID:DE_TEST:collection:a", "A", "Serun", "C50"]],
        header=["id", "name", "material", "dx"],
    )
    report = run_import(home, [export], mapping=mapping)
    reasons = [p.reason for p in report.problems if p.value == "Serun"]
    assert reasons and "did you mean Serum" in reasons[0]
