"""Beacon v2 biosamples and individuals import (issue 15 item 4) on the real public sets."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from node.importing.importer import detect_format, run_import
from node.importing.mapping import Mapping
from node.importing.sources.beacon import age_years, is_beacon
from protocol.errors import ConfigError
from tests.node.node_support import BIOBANK, COLLECTION, make_home
from tests.support import external_data

EGA = Path("ega-beacon2-ri-tools-v2/output_docs/all-fields")
MODELS = Path("ga4gh-beacon-v2-models/models/json/beacon-v2-default-model")
TABLE = Path(__file__).resolve().parents[2] / "schemas/mappings/beacon-v2--sample-type.json"


def _mapping(**extra: Any) -> Mapping:
    raw: dict[str, Any] = {
        "kind": "sample",
        "columns": {"local_id": "id"},
        "fixed": {"biobank": BIOBANK, "collection": COLLECTION},
    }
    raw.update(extra)
    return Mapping.from_dict(raw)


def _held(db: Path) -> dict[str, tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT local_id, sample_type, sex, age, year, diagnoses FROM holding"
    ).fetchall()
    conn.close()
    return {r[0]: r[1:] for r in rows}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def ega() -> Path:
    return external_data() / EGA


def test_real_cohort_imports_joined_on_the_individual_id(tmp_path: Path, ega: Path) -> None:
    samples, people = ega / "biosamples.json", ega / "individuals.json"
    raw_samples, raw_people = _load(samples), _load(people)
    home, _ = make_home(tmp_path)
    # the individuals file second: the join does not depend on file order
    report = run_import(home, [samples, people], mapping=_mapping())
    assert report.problems == []
    assert report.rows == len(raw_samples) + len(raw_people)
    assert report.applied and report.published.get("sample-group", 0) >= 1
    held = _held(home.db_path)
    assert sorted(held) == sorted(s["id"] for s in raw_samples)
    # tally from the raw files: each sample's sex is its individual's NCIT term
    sex_of = {"NCIT:C16576": "female", "NCIT:C20197": "male"}
    by_person = {p["id"]: sex_of[p["sex"]["id"]] for p in raw_people}
    expected = Counter(by_person[s["individualId"]] for s in raw_samples)
    assert Counter(v[1] for v in held.values()) == expected
    table = _load(TABLE)["map"]
    for s in raw_samples:
        sample_type, _sex, age, year, _dx = held[s["id"]]
        assert sample_type == table[s["sampleOriginType"]["id"]]
        assert age == age_years(s["collectionMoment"]) == int(s["collectionMoment"][1:3])
        assert year == int(s["collectionDate"][:4])
    # MONDO/NCIT disease codes are not ICD-10 or ORPHA: noted, never published
    assert any("MONDO" in what for what in report.ignored)
    published = b"".join(
        r[0].encode()
        for r in sqlite3.connect(home.db_path).execute(
            "SELECT content FROM contents WHERE content IS NOT NULL"
        )
    )
    assert b"SAMPLE1" not in published
    again = run_import(home, [people, samples], mapping=_mapping())
    assert again.problems == [] and again.appended == 0


def test_response_wrapper_icd10_curies_and_pato_gsso_sex(tmp_path: Path, ega: Path) -> None:
    raw_samples = _load(ega / "biosamples.json")[:6]
    raw_people = _load(ega / "individuals.json")[:6]
    sexes = ["PATO:0000383", "PATO:0000384", "GSSO:000369", "GSSO:000371", "NCIT:C16576"]
    for i, person in enumerate(raw_people):
        person["sex"] = {"id": sexes[i % len(sexes)], "label": "as written"}
        person["diseases"] = [{"diseaseCode": {"id": "ICD10:C50.9", "label": "breast"}}]
    raw_samples[0]["histologicalDiagnosis"] = {"id": "ICD10:C50.1", "label": "breast"}
    response = {
        "meta": {"beaconId": "org.example.beacon", "returnedSchemas": []},
        "response": {"resultSets": [{"id": "ds", "results": raw_samples + raw_people}]},
    }
    path = _write(tmp_path / "response.json", response)
    assert detect_format(path, None) == "beacon"
    home, _ = make_home(tmp_path)
    report = run_import(home, [path], mapping=_mapping())
    assert report.problems == []
    assert not any("individualId" in what for what in report.ignored)
    held = _held(home.db_path)
    expect_sex = {"PATO:0000383": "female", "PATO:0000384": "male"}
    expect_sex |= {"GSSO:000369": "female", "GSSO:000371": "male", "NCIT:C16576": "female"}
    for sample in raw_samples:
        person = next(p for p in raw_people if p["id"] == sample["individualId"])
        assert held[sample["id"]][1] == expect_sex[person["sex"]["id"]]
    first = json.loads(held[raw_samples[0]["id"]][4])
    assert {"system": "ICD-10", "code": "C50.1"} in first
    assert {"system": "ICD-10", "code": "C50.9"} in first
    assert json.loads(held[raw_samples[1]["id"]][4]) == [{"system": "ICD-10", "code": "C50.9"}]


def test_model_examples_single_documents(tmp_path: Path) -> None:
    models = external_data() / MODELS
    sample = models / "biosamples/examples/biosample-MID-example.json"
    person = models / "individuals/examples/individual-MID-example.json"
    home, _ = make_home(tmp_path)
    report = run_import(home, [sample, person], mapping=_mapping())
    assert report.problems == []
    # ovary (UBERON:0000992), P32Y6M1D, 2020-09-11; no individualId: no sex
    assert _held(home.db_path) == {"sample-example-0001": ("TissueFrozen", None, 32, 2020, "[]")}


def test_biosample_without_its_individual_is_noted(tmp_path: Path, ega: Path) -> None:
    samples = _load(ega / "biosamples.json")[:4]
    people = [p for p in _load(ega / "individuals.json") if p["id"] != samples[0]["individualId"]]
    paths = [_write(tmp_path / "b.json", samples), _write(tmp_path / "i.json", people)]
    home, _ = make_home(tmp_path)
    report = run_import(home, paths, mapping=_mapping())
    assert report.problems == []
    (note,) = [what for what in report.ignored if "individualId" in what]
    assert report.ignored[note] == 1
    assert _held(home.db_path)[samples[0]["id"]][1] is None


def test_beacon_json_is_never_taken_for_fhir(tmp_path: Path, ega: Path) -> None:
    for name in ("biosamples.json", "individuals.json"):
        assert detect_format(ega / name, None) == "beacon"
    bundle = _write(
        tmp_path / "bundle.json",
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
    )
    assert not is_beacon(bundle) and detect_format(bundle, None) == "fhir"
    one = _write(tmp_path / "one.json", {"id": "x", "sex": {"id": "NCIT:C20197"}})
    assert detect_format(one, None) == "beacon"


def test_unknown_origin_term_is_a_problem_and_publishes_nothing(tmp_path: Path, ega: Path) -> None:
    raw = _load(ega / "biosamples.json")[:4]
    for s in raw:
        s["sampleOriginType"] = {"id": "UBERON:9999999", "label": "made up"}
        s.pop("sampleOriginDetail")
    path = _write(tmp_path / "biosamples.json", raw)
    home, _ = make_home(tmp_path)
    report = run_import(home, [path], mapping=_mapping())
    assert len(report.problems) == 4 and not report.applied
    assert report.problems[0].field == "sampleOriginType"
    assert report.problems[0].value == "UBERON:9999999"
    assert report.size_after == report.size_before
    # the operator's mapping translates a term the shipped table lacks
    fixed = run_import(
        home, [path], mapping=_mapping(values={"sample_type": {"UBERON:9999999": "Serum"}})
    )
    assert fixed.problems == [] and fixed.applied
    assert {v[0] for v in _held(home.db_path).values()} == {"Serum"}


def test_ffpe_tissue_and_bad_durations(tmp_path: Path, ega: Path) -> None:
    raw = _load(ega / "biosamples.json")[:3]
    raw[0]["sampleStorage"] = {"id": "OBI:0000000", "label": "formalin-fixed paraffin-embedded"}
    raw[1]["collectionMoment"] = "P1Y1"
    path = _write(tmp_path / "biosamples.json", raw)
    home, _ = make_home(tmp_path)
    report = run_import(home, [path], mapping=_mapping(), skip_invalid=True)
    assert [(p.field, p.value) for p in report.problems] == [("collectionMoment", "P1Y1")]
    held = _held(home.db_path)
    assert held[raw[0]["id"]][0] == "TissueFFPE"
    assert held[raw[2]["id"]][0] == "TissueFrozen"
    assert raw[1]["id"] not in held


def test_beacon_needs_biobank_and_collection_from_the_mapping(tmp_path: Path, ega: Path) -> None:
    home, _ = make_home(tmp_path)
    with pytest.raises(ConfigError, match="biobank or collection"):
        run_import(home, [ega / "biosamples.json"])


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("P53Y4M", 53),
        ("P32Y6M1D", 32),
        ("P11M", 0),
        ("P18M", 1),
        ("P6575D", 18),
        ("P40W", 0),
        ("P2Y11M30DT12H", 2),
        ("P1Y1", None),
        ("P", None),
        ("53", None),
        ("PT", None),
    ],
)
def test_iso8601_age_durations(text: str, years: int | None) -> None:
    assert age_years(text) == years


def test_mapping_init_of_beacon_files_writes_a_beacon_mapping_that_previews(
    tmp_path: Path, ega: Path
) -> None:
    """``mapping init`` on Beacon v2 JSON writes the Beacon mapping (never a CSV guess from
    JSON text): biobank and collection to DECIDE, and a DECIDE line per origin or sex term
    that no shipped table knows; filled in, ``preview`` with it is clean."""
    from typer.testing import CliRunner

    from node.cli import app

    raw = _load(ega / "biosamples.json")
    raw[0]["sampleOriginType"] = {"id": "UBERON:9999999", "label": "made up"}
    raw[0].pop("sampleOriginDetail", None)
    people = _load(ega / "individuals.json")
    people[0]["sex"] = {"id": "NCIT:C124294", "label": "Unknown sex"}
    samples = _write(tmp_path / "biosamples.json", raw)
    individuals = _write(tmp_path / "individuals.json", people)
    out = tmp_path / "beacon.toml"
    runner = CliRunner()
    made = runner.invoke(app, ["mapping", "init", str(samples), str(individuals), "-o", str(out)])
    assert made.exit_code == 0, made.output
    text = out.read_text(encoding="utf-8")
    assert "4 thing(s) to decide" in made.output
    assert '# "UBERON:9999999" = ""   # DECIDE: \'made up\', 1 biosample(s)' in text
    assert '# "NCIT:C124294" = ""   # DECIDE: \'Unknown sex\', 1 individual(s)' in text
    assert "local_id" in text and '"label"' not in text  # no JSON text taken for a header
    filled = (
        text.replace('# biobank = "bbmri-eric:ID:XX_BIOBANK"', f'biobank = "{BIOBANK}"')
        .replace(
            '# collection = "bbmri-eric:ID:XX_BIOBANK:collection:beacon"',
            f'collection = "{COLLECTION}"',
        )
        .replace('# "UBERON:9999999" = ""', '"UBERON:9999999" = "Serum"')
        .replace('# "NCIT:C124294" = ""', '"NCIT:C124294" = "unknown"')
    )
    out.write_text(filled, encoding="utf-8")
    make_home(tmp_path)
    shown = runner.invoke(
        app,
        [
            "preview",
            str(samples),
            str(individuals),
            "--mapping",
            str(out),
            "--home",
            str(tmp_path / "home"),
            "--json",
        ],
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["samples"] == len(raw)
    # a FHIR document needs no mapping: said so, nothing written
    fhir = tmp_path / "bundle.json"
    fhir.write_text('{"resourceType": "Bundle", "type": "transaction"}', encoding="utf-8")
    refused = runner.invoke(app, ["mapping", "init", str(fhir), "-o", str(tmp_path / "f.toml")])
    assert refused.exit_code == 2 and "FHIR documents import with no mapping" in refused.output
    assert not (tmp_path / "f.toml").exists()
