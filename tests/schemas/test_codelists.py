"""The shipped code lists: shape, labels in English and Chinese, and coverage of DUO."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.schemas.helpers import MOLGENIS, SCHEMAS, codelist, codes_of, load_json

NAMES = (
    "sample-type",
    "storage-temperature",
    "sex",
    "age-unit",
    "dataset-type",
    "collection-design",
    "collection-setting",
    "collection-status",
    "sample-source",
    "duo",
    "orpha",
    "quality-standard",
    "capability",
    "country",
    "icd10-chapter",
)
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_exactly_the_documented_code_lists_are_shipped() -> None:
    shipped = sorted(p.stem for p in (SCHEMAS / "codelists").glob("*.json"))
    assert shipped == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_code_list_shape_labels_and_unique_codes(name: str) -> None:
    data = codelist(name)
    assert data["name"] == name
    assert data["version"] == "1"
    assert data["source"].strip() and data["licence"].strip()
    seen: set[str] = set()
    for entry in data["codes"]:
        code = entry["code"]
        assert isinstance(code, str) and code.strip() == code, f"{name}: bad code {code!r}"
        assert code, f"{name}: empty code"
        assert code not in seen, f"{name}: code {code!r} appears twice"
        seen.add(code)
        assert {"code", "en", "zh", "parent"} <= set(entry), f"{name}/{code}: missing keys"
        assert entry["en"].strip(), f"{name}/{code}: empty English label"
        assert entry["zh"].strip(), f"{name}/{code}: empty Chinese label"
        # Chinese labels are real translations, not copies of the English one.
        assert HAN.search(entry["zh"]), f"{name}/{code}: no Chinese in {entry['zh']!r}"
    for entry in data["codes"]:
        assert entry["parent"] is None or entry["parent"] in seen, (
            f"{name}/{entry['code']}: unknown parent {entry['parent']!r}"
        )


def test_fixed_code_lists_hold_exactly_the_documented_codes() -> None:
    assert [c["code"] for c in codelist("storage-temperature")["codes"]] == [
        "RT",
        "2to10",
        "-18to-35",
        "-60to-85",
        "LN",
        "Other",
    ]
    assert codes_of("sex") == {"female", "male", "other", "unknown"}
    assert codes_of("age-unit") == {"years", "months", "weeks", "days"}
    assert codes_of("sample-source") == {"Human", "Animal", "Environment"}
    assert {
        "Lifestyle",
        "Environmental",
        "Physiological",
        "Biochemical",
        "Clinical",
        "Psychological",
        "Genomic",
        "Proteomic",
        "Metabolomic",
        "BodyImage",
        "WholeSlideImage",
        "PhotoImage",
        "GenealogicalRecords",
        "Other",
        "BiologicalSamples",
    } == codes_of("dataset-type")


def test_sample_types_include_miabis_detailed_types_and_labels() -> None:
    types = {c["code"]: c for c in codelist("sample-type")["codes"]}
    for code in (
        "WholeBlood",
        "Plasma",
        "Serum",
        "BuffyCoat",
        "PBMC",
        "DNA",
        "RNA",
        "TissueFFPE",
        "TissueFreshFrozen",
        "TissueFixed",
        "Urine",
        "Saliva",
        "Faeces",
        "CerebrospinalFluid",
        "BoneMarrowAspirate",
        "Sputum",
        "LiquidBiopsy",
        "Other",
    ):
        assert code in types
    assert types["WholeBlood"]["zh"] == "全血"
    assert types["Plasma"]["zh"] == "血浆"
    assert "液氮" in {c["code"]: c for c in codelist("storage-temperature")["codes"]}["LN"]["zh"]


def test_duo_covers_every_term_of_the_real_duo_csv(external: Path) -> None:
    ours = {c["code"]: c for c in codelist("duo")["codes"]}
    with (external / "ebispot-duo/duo.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 25
    for row in rows:
        entry = ours.get(row["id"])
        assert entry is not None, f"DUO term {row['id']} ({row['label']}) is missing"
        assert entry["en"] == row["label"], f"{row['id']}: {entry['en']!r} != {row['label']!r}"
        assert (entry.get("shorthand") or "") == row["shorthand"], f"{row['id']}: shorthand"


def test_duo_covers_every_term_the_directory_uses(external: Path) -> None:
    path = external / MOLGENIS / "DataUseOntologies.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        names = [row["name"].replace("_", ":", 1) for row in csv.DictReader(handle)]
    assert set(names) <= codes_of("duo")


def test_icd10_chapters_are_i_to_xxii_with_ordered_ranges() -> None:
    chapters = codelist("icd10-chapter")["codes"]
    assert [c["code"] for c in chapters][:3] == ["I", "II", "III"]
    assert len(chapters) == 22
    pattern = re.compile(r"^([A-Z][0-9]{2})-([A-Z][0-9]{2})$")
    for c in chapters:
        match = pattern.match(c["range"])
        assert match and match.group(1) <= match.group(2), c
    by_code = {c["code"]: c["range"] for c in chapters}
    assert by_code["II"] == "C00-D48" and by_code["XXI"] == "Z00-Z99"


def test_country_codes_are_iso_alpha2_and_cover_the_required_countries() -> None:
    codes = codes_of("country")
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in codes)
    eu_eea = {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    }
    assert eu_eea | {"GB", "CH", "CN"} <= codes
    assert "UK" not in codes  # the Directory's UK is mapped to GB


def test_orpha_list_is_codes_of_the_orpha_pattern_with_attribution() -> None:
    data = codelist("orpha")
    assert "CC BY 4.0" in data["licence"] and "Orphanet" in data["licence"]
    assert len(data["codes"]) >= 200
    assert all(re.fullmatch(r"ORPHA:[0-9]{1,7}", c["code"]) for c in data["codes"])


def test_orpha_labels_match_the_real_orphanet_names(external: Path) -> None:
    path = external / MOLGENIS / "DiseaseTypes.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        real = {
            row["name"]: row["label"]
            for row in csv.DictReader(handle)
            if row["name"].startswith("ORPHA:")
        }
    wrong = {
        c["code"]: (c["en"], real.get(c["code"]))
        for c in codelist("orpha")["codes"]
        if real.get(c["code"]) != c["en"]
    }
    assert not wrong, f"ORPHA codes whose English label is not Orphanet's: {wrong}"


def test_code_list_files_are_utf8_json_with_a_trailing_newline() -> None:
    for path in (SCHEMAS / "codelists").glob("*.json"):
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        load_json(path)
