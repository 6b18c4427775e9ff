"""BBMRI-ERIC Directory exports (EMX2 demo and the 2018 snapshot) import as records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from node.importing.importer import run_import
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
    home, _ = make_home(tmp_path)
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
    home, _ = make_home(tmp_path)
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
    assert report.applied and report.published["collection"] > 1000
    assert all(p.location.startswith("eu_bbmri_eric_") for p in report.problems)
