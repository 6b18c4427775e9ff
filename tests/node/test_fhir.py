"""The real public FHIR bundles (MIABIS on FHIR and BBMRI.de) import."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from node.importing.importer import run_import
from tests.node.node_support import make_home

SYNC = "samply-directory-sync-service/ci/data/input"


def _records(db: Path, kind: str) -> list[dict[str, object]]:
    conn = sqlite3.connect(db)
    rows = [
        orjson.loads(t)
        for (t,) in conn.execute(
            "SELECT c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
            "WHERE l.kind = ? AND c.content IS NOT NULL ORDER BY l.idx",
            (kind,),
        )
    ]
    conn.close()
    return rows


def test_miabis_100_patients_imports_everything(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    bundle = external / SYNC / "miabis_100_patients/miabis_100_patients.json"
    report = run_import(home, [bundle])
    assert report.problems == [] and report.applied
    assert report.published["biobank"] == 1 and report.published["collection"] == 5
    assert report.staged_samples == 206
    groups = _records(home.db_path, "sample-group")
    assert len(groups) == report.published["sample-group"] > 0
    assert {g["biobank"] for g in groups} == {"bbmri-eric:ID:DE_DKFZ_TEST"}
    assert all(g["collection"].startswith("bbmri-eric:ID:DE_DKFZ_TEST:collection:") for g in groups)
    # every published sample is counted once: the groups' sample counts (or bounds) cover
    # what privacy published
    exact = sum(g["samples"] for g in groups if isinstance(g["samples"], int))
    upper = sum(
        g["samples"] if isinstance(g["samples"], int) else g["samples"]["lt"] - 1 for g in groups
    )
    assert exact <= report.privacy.published <= upper
    (biobank,) = _records(home.db_path, "biobank")
    assert biobank["country"] == "DE" and "@" in biobank["contact"]["email"]  # type: ignore[index]
    again = run_import(home, [bundle])
    assert again.appended == 0


def test_bbmri_de_bundles_resolve_collections_across_files(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    case = external / SYNC / "1patient_10collections_2sampleswocollection"
    report = run_import(
        home, [case / "biobank.json", case / "transaction-0.json"], skip_invalid=True
    )
    assert report.applied and report.published["collection"] == 10
    assert report.staged_samples == 12
    assert sorted(p.location for p in report.problems) == [
        "transaction-0.json entry 24 (Specimen/bbmri-0-specimen-12)",
        "transaction-0.json entry 25 (Specimen/bbmri-0-specimen-13)",
    ]
    assert all(p.reason == "missing required collection" for p in report.problems)
    assert any("Observation" in k for k in report.ignored)


@pytest.mark.parametrize(
    "relative",
    [
        f"{SYNC}/miabis_1_patient/miabis_bundle_1_patient.json",
        f"{SYNC}/crc_2patients/bundle_1.json",
        "sthanke-miabis-on-fhir-generator/miabis-bundle-10donors.json",
        "samply-bbmri-fhir-ig/input/examples/Bundle-53ef12a3-1e31-4fc1-adf6-9d30dc6c4784.json",
        f"{SYNC}/1patient_1collection/biobank.json",
    ],
)
def test_every_public_bundle_imports_or_names_its_problems(
    relative: str, tmp_path: Path, external: Path
) -> None:
    home, _ = make_home(tmp_path, records=False)
    report = run_import(home, [external / relative], skip_invalid=True)
    assert report.applied
    for problem in report.problems:
        assert problem.location.startswith(Path(relative).name + " entry ")
        assert problem.reason
    assert report.appended == sum(report.published.values())


def test_ten_donor_bundle_uses_group_membership(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    report = run_import(
        home, [external / "sthanke-miabis-on-fhir-generator/miabis-bundle-10donors.json"]
    )
    assert report.problems == []
    assert report.published["biobank"] == 2 and report.published["collection"] == 3
    assert report.staged_samples == 17
    assert (
        report.ignored["FHIR DiagnosticReport resources (not part of the published metadata)"] == 10
    )
