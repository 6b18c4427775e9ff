"""Privacy on real public FHIR bundles (MIABIS on FHIR test data from samply)."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from node import privacy
from node.importing.codes import Codes
from node.importing.importer import read_files
from node.importing.staging import Staging
from node.policy import Policy
from node.preview import preview
from tests.node.privacy_support import record_fields

CASES = "samply-directory-sync-service/ci/data/input"


def staged(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    stage = Staging(conn, "staging", None)
    read_files([path], None, None, stage, Codes.default())
    stage.duplicates()
    return conn


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(k=3, age_band=20, period_width=10),
        Policy(k=5, age_band=5, period_width=1, diagnosis_precision="category"),
    ],
)
def test_no_published_class_of_the_100_patient_bundle_has_fewer_than_k_donors(
    external: Path, policy: Policy
) -> None:
    conn = staged(external / CASES / "miabis_100_patients" / "miabis_100_patients.json")
    assert conn.execute("SELECT COUNT(DISTINCT donor_id) FROM staging").fetchone()[0] == 100
    report = privacy.apply(conn, "staging", policy)
    assert report.rows == 206 and report.published > 0
    sizes = [
        n
        for (n,) in conn.execute(
            "SELECT COUNT(DISTINCT donor_id) FROM staging WHERE held_back = 0 "
            "GROUP BY sex, biobank, collection, age_min, age_max, period_from, diagnoses"
        )
    ]
    assert sizes and min(sizes) >= policy.k
    assert report.smallest_class == min(sizes)
    for row in conn.execute("SELECT * FROM staging WHERE held_back = 0"):
        record = record_fields(row, policy)
        assert set(record) <= set(policy.published_fields)
        text = json.dumps(record)
        assert row["donor_id"] not in text and row["local_id"] not in text


def test_a_single_patient_bundle_publishes_no_sample(external: Path) -> None:
    conn = staged(external / CASES / "miabis_1_patient" / "miabis_bundle_1_patient.json")
    report = privacy.apply(conn, "staging", Policy(k=2))
    assert report.rows > 0 and report.published == 0
    assert report.held_back == {"below_k": report.rows}


def test_preview_shows_what_would_go_out(external: Path) -> None:
    path = external / CASES / "miabis_100_patients" / "miabis_100_patients.json"
    shown = preview([path], Policy(k=3, age_band=20, period_width=10))
    report = shown.privacy
    assert shown.problems == 0 and report.rows == 206
    # every published sample is in one group; groups of fewer than k donors show bounds
    assert shown.groups and all(g["id"].startswith("grp_") for g in shown.groups)
    exact = sum(g["samples"] for g in shown.groups if isinstance(g["samples"], int))
    bound = sum(g["samples"]["lt"] - 1 for g in shown.groups if isinstance(g["samples"], dict))
    assert exact <= report.published <= exact + bound
    assert shown.pending.samples == report.published and not shown.pending.waiting
    out = io.StringIO()
    shown.render(Console(file=out, width=140))
    text = out.getvalue()
    assert "generalised" in text and "held back" in text and "Sample groups" in text
    assert f"{report.published} of 206 samples published" in text
