"""Every code of every real external vocabulary is covered by an explicit mapping table.

Each case reads the REAL list (a Directory ontology CSV, an EMX1 sheet, a FHIR CodeSystem,
or the codes actually used in real FHIR bundles), enumerates all its codes, and checks
that the mapping table has each one and maps it to a code of our code list (or to null,
only for codes that carry no information such as NAV and the wildcard '*').
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.schemas.helpers import (
    D2018,
    IG,
    MOLGENIS,
    SCHEMAS,
    codes_of,
    codes_used_in_bundles,
    codesystem_codes,
    csv_column,
    csv_multi_values,
    load_json,
)

MOF = "https://fhir.bbmri-eric.eu/CodeSystem/"
DE = "https://fhir.bbmri.de/CodeSystem/"
NO_INFORMATION = {"NAV", "*"}  # the only source codes allowed to map to null

Enumerate = Callable[[Path], set[str]]


def molgenis(name: str) -> Enumerate:
    return lambda ext: set(csv_column(ext / MOLGENIS / f"{name}.csv", "name"))


def sheet(name: str) -> Enumerate:
    return lambda ext: set(csv_column(ext / D2018 / f"{name}.csv", "id"))


def used_in(column: str, sheet_name: str = "eu_bbmri_eric_collections") -> Enumerate:
    return lambda ext: csv_multi_values(ext / D2018 / f"{sheet_name}.csv", column)


def codesystem(name: str) -> Enumerate:
    return lambda ext: set(codesystem_codes(ext / IG / f"CodeSystem-{name}.json"))


def bundles(system: str) -> Enumerate:
    def read(ext: Path) -> set[str]:
        codes = set(codes_used_in_bundles(ext, system))
        assert codes, f"no code of {system} found in the real bundles"
        return codes

    return read


def sync_output(column: str) -> Enumerate:
    def read(ext: Path) -> set[str]:
        folder = ext / "samply-directory-sync-service/ci/data/output"
        out: set[str] = set()
        for path in sorted(folder.glob("*/DirectoryCollections.csv")):
            out |= csv_multi_values(path, column, delimiter=";")
        return out

    return read


def beacon_origins(ext: Path) -> set[str]:
    """sampleOriginType/sampleOriginDetail ids of every real Beacon v2 biosample."""
    paths = [ext / "ega-beacon2-ri-tools-v2/output_docs/all-fields/biosamples.json"]
    paths += sorted((ext / "ga4gh-beacon-v2-models").rglob("biosample-*.json"))
    out: set[str] = set()
    for path in paths:
        data = load_json(path)
        for item in data if isinstance(data, list) else [data]:
            for key in ("sampleOriginType", "sampleOriginDetail"):
                if isinstance(item.get(key), dict):
                    out.add(item[key]["id"])
    return out


CASES: dict[str, list[Enumerate]] = {
    "beacon-v2--sample-type": [beacon_origins],
    "bbmri-eric-directory--sample-type": [molgenis("MaterialTypes"), sync_output("materials")],
    "bbmri-eric-directory--storage-temperature": [
        molgenis("StorageTemperatureTypes"),
        sync_output("storage_temperatures"),
    ],
    "bbmri-eric-directory--sex": [molgenis("SexTypes"), sync_output("sex")],
    "bbmri-eric-directory--dataset-type": [
        molgenis("DataCategories"),
        sync_output("data_categories"),
    ],
    "bbmri-eric-directory--collection-design": [molgenis("CollectionTypes"), sync_output("type")],
    "bbmri-eric-directory--duo": [molgenis("DataUseOntologies")],
    "bbmri-eric-directory--age-unit": [molgenis("AgeUnits")],
    "bbmri-eric-directory--quality-standard": [molgenis("QualityStandards")],
    "bbmri-eric-directory--country": [molgenis("Countries"), sync_output("country")],
    "bbmri-eric-directory-2018--sample-type": [
        sheet("eu_bbmri_eric_material_types"),
        used_in("materials"),
    ],
    "bbmri-eric-directory-2018--storage-temperature": [
        sheet("eu_bbmri_eric_temp_types"),
        used_in("storage_temperatures"),
    ],
    "bbmri-eric-directory-2018--sex": [sheet("eu_bbmri_eric_sex_types"), used_in("sex")],
    "bbmri-eric-directory-2018--dataset-type": [
        sheet("eu_bbmri_eric_data_types"),
        used_in("data_categories"),
    ],
    "bbmri-eric-directory-2018--collection-design": [
        sheet("eu_bbmri_eric_collection_types"),
        used_in("type"),
    ],
    "bbmri-eric-directory-2018--age-unit": [sheet("eu_bbmri_eric_age_units"), used_in("age_unit")],
    "bbmri-eric-directory-2018--capability": [
        sheet("eu_bbmri_eric_capabilities"),
        used_in("capabilities", "eu_bbmri_eric_biobanks"),
    ],
    "bbmri-eric-directory-2018--country": [
        sheet("eu_bbmri_eric_countries"),
        used_in("country"),
        used_in("country", "eu_bbmri_eric_biobanks"),
    ],
    "bbmri-eric-directory-2018--quality-standard": [
        sheet("eu_bbmri_eric_lab_standards"),
        sheet("eu_bbmri_eric_ops_standards"),
        used_in("standards"),
        used_in("operational_standards", "eu_bbmri_eric_biobanks"),
    ],
    "bbmri-de-fhir--sample-type": [
        codesystem("SampleMaterialType"),
        bundles(DE + "SampleMaterialType"),
    ],
    "bbmri-de-fhir--storage-temperature": [
        codesystem("StorageTemperature"),
        bundles(DE + "StorageTemperature"),
    ],
    "bbmri-de-fhir--dataset-type": [codesystem("DataCategory"), bundles(DE + "DataCategory")],
    "bbmri-de-fhir--collection-design": [
        codesystem("CollectionType"),
        bundles(DE + "CollectionType"),
    ],
    "bbmri-de-fhir--quality-standard": [
        codesystem("QualityStandard"),
        bundles(DE + "QualityStandard"),
    ],
    "bbmri-de-fhir--capability": [codesystem("BiobankCapabilities")],
    "miabis-on-fhir--sample-type": [
        bundles(MOF + "miabis-detailed-samply-type-cs"),
        bundles(MOF + "miabis-collection-sample-type-cs"),
    ],
    "miabis-on-fhir--storage-temperature": [bundles(MOF + "miabis-storage-temperature-cs")],
    "miabis-on-fhir--collection-design": [bundles(MOF + "miabis-collection-design-cs")],
    "miabis-on-fhir--dataset-type": [bundles(MOF + "miabis-collection-dataset-typeCS")],
    "miabis-on-fhir--duo": [bundles(MOF + "miabis-use-and-access-conditions-cs")],
    "miabis-on-fhir--sample-source": [bundles(MOF + "miabis-sample-source-cs")],
    "miabis-on-fhir--collection-setting": [bundles(MOF + "miabis-sample-collection-setting-cs")],
    "miabis-on-fhir--capability": [
        bundles(MOF + "miabis-bioprocessing-and-analytical-capabilities-cs"),
        bundles(MOF + "miabis-infrastructural-capabilities-cs"),
        bundles(MOF + "miabis-organisational-capabilities-cs"),
    ],
    "fhir-administrative-gender--sex": [bundles("http://hl7.org/fhir/administrative-gender")],
}


def read_table(stem: str) -> tuple[str, dict[str, str | None]]:
    data = load_json(SCHEMAS / "mappings" / f"{stem}.json")
    assert set(data) <= {"source", "systems", "map", "notes"}, f"{stem}: unexpected keys"
    assert data["source"], f"{stem}: empty source"
    return stem.split("--", 1)[1], data["map"]


@pytest.mark.parametrize("stem", sorted(CASES))
def test_every_real_code_is_mapped_to_a_known_code(stem: str, external: Path) -> None:
    codelist, table = read_table(stem)
    ours = codes_of(codelist)
    real: set[str] = set()
    for enumerate_codes in CASES[stem]:
        real |= enumerate_codes(external)
    assert real, f"{stem}: read no codes from the real lists"
    missing = sorted(real - set(table))
    assert not missing, f"{stem}: real codes with no mapping: {missing}"
    for their in sorted(real):
        mapped = table[their]
        if mapped is None:
            assert their in NO_INFORMATION, f"{stem}: {their!r} -> null but carries information"
        else:
            assert mapped in ours, f"{stem}: {their!r} -> {mapped!r}, not in code list {codelist}"


def test_every_mapping_file_is_tested_and_maps_into_its_code_list() -> None:
    stems = sorted(p.stem for p in (SCHEMAS / "mappings").glob("*.json"))
    assert sorted(CASES) == stems
    for stem in stems:
        codelist, table = read_table(stem)
        ours = codes_of(codelist)
        bad = {k: v for k, v in table.items() if v is not None and v not in ours}
        assert not bad, f"{stem}: targets not in {codelist}: {bad}"


def test_known_real_equivalences(external: Path) -> None:
    """Spot checks that the tables say what the vocabularies mean (not just any code)."""

    def get(stem: str, code: str) -> str | None:
        return read_table(stem)[1][code]

    assert get("bbmri-de-fhir--storage-temperature", "temperatureGN") == "LN"
    assert get("miabis-on-fhir--storage-temperature", "minus60to85") == "-60to-85"
    assert get("miabis-on-fhir--sample-type", "CellLineTumor") == "CancerCellLine"
    assert get("bbmri-eric-directory--country", "UK") == "GB"
    assert get("bbmri-eric-directory--duo", "DUO_0000042") == "DUO:0000042"
    assert get("bbmri-eric-directory--sex", "NAV") is None  # not available: no value
    assert get("bbmri-eric-directory-2018--sample-type", "TISSUE_PARAFFIN_EMBEDDED") == "TissueFFPE"
    assert get("bbmri-de-fhir--sample-type", "plasma-edta") == "Plasma"
