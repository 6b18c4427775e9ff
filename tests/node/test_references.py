"""References hold (issue 15 item 8, node side): a sample whose biobank or collection is
neither in the import nor published is a problem named as such, never a group without
its biobank or collection record."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from node import store
from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from tests.node.node_support import (
    BIOBANK,
    COLLECTION,
    HEADER,
    MAPPING,
    make_home,
    publish_records,
    sample_rows,
    write_csv,
    write_mapping,
    write_records,
)

runner = CliRunner()
OTHER = "bbmri-eric:ID:DE_OTHER"


def _log_size(home_db: Path) -> int:
    conn = store.connect(home_db, readonly=True)
    try:
        return store.log_size(conn)
    finally:
        conn.close()


def test_a_sample_whose_biobank_is_not_published_is_a_problem(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    export = write_csv(tmp_path / "s.csv", sample_rows(3))
    report = run_import(home, [export], mapping=mapping)
    assert not report.applied and _log_size(home.db_path) == 0
    assert [(p.location, p.field, p.value) for p in report.problems] == [
        (f"s.csv row {n}", "biobank", BIOBANK) for n in (2, 3, 4)
    ]
    assert {p.reason for p in report.problems} == {
        f"the biobank '{BIOBANK}' of this sample is neither in this import nor published "
        "(import the biobanks file with it, or first)"
    }
    assert report.notes == []  # a problem now, no longer a note
    # --skip-invalid publishes no group without its biobank
    skipped = run_import(home, [export], mapping=mapping, skip_invalid=True)
    assert skipped.applied and skipped.published == {} and len(skipped.problems) == 3
    # once the biobank and its collection are published, the same file imports
    publish_records(home)
    assert run_import(home, [export], mapping=mapping).published == {"sample-group": 1}


def test_a_sample_whose_collection_is_not_published_is_a_problem(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    publish_records(home, BIOBANK, ())  # the biobank only
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    report = run_import(home, [write_csv(tmp_path / "s.csv", rows)], mapping=mapping)
    assert not report.applied
    assert {(p.field, p.value, p.reason) for p in report.problems} == {
        (
            "collection",
            COLLECTION,
            f"the collection '{COLLECTION}' of this sample is neither in this import nor "
            "published (import the collections file with it, or first)",
        )
    }
    assert len(report.problems) == 4


def test_a_sample_whose_collection_belongs_to_another_biobank_is_a_problem(
    tmp_path: Path,
) -> None:
    home, _ = make_home(tmp_path)  # BIOBANK with COLLECTION
    publish_records(home, OTHER, ())
    mapping = Mapping.load(
        write_mapping(
            tmp_path / "map.toml", MAPPING.replace(f'biobank = "{BIOBANK}"', f'biobank = "{OTHER}"')
        )
    )
    report = run_import(home, [write_csv(tmp_path / "s.csv", sample_rows(2))], mapping=mapping)
    assert not report.applied
    assert {p.reason for p in report.problems} == {
        f"the collection '{COLLECTION}' of this sample belongs to biobank '{BIOBANK}', "
        f"not to the biobank '{OTHER}' of this sample"
    }


def test_cli_says_to_import_the_biobanks_first_then_the_samples_import(
    tmp_path: Path,
) -> None:
    """The operator's way through the CLI: preview and import of samples alone say what
    is missing; after the biobanks and collections files, both pass."""
    home, _ = make_home(tmp_path, records=False)
    mapping = write_mapping(tmp_path / "map.toml")
    export = write_csv(tmp_path / "s.csv", sample_rows(3))
    args = ["--home", str(home.path), "--mapping", str(mapping), str(export)]
    shown = runner.invoke(app, ["preview", "--json", *args])
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["reasons"] == {
        "the biobank '…' of this sample is neither in this import nor published "
        "(import the biobanks file with it, or first)": 3
    }
    refused = runner.invoke(app, ["import", *args])
    assert refused.exit_code == 1 and "neither in this import nor published" in refused.stdout
    for path, records_mapping in write_records(tmp_path / "records"):
        done = runner.invoke(
            app, ["import", "--home", str(home.path), "--mapping", str(records_mapping), str(path)]
        )
        assert done.exit_code == 0, done.output
    assert runner.invoke(app, ["preview", *args]).exit_code == 0
    assert runner.invoke(app, ["import", *args]).exit_code == 0


def test_a_reference_problem_names_the_operators_column(tmp_path: Path) -> None:
    """When the mapping reads the biobank from a column, the problem names that column
    (as every other problem does), with the id the mapping made of its value."""
    home, _ = make_home(tmp_path)
    text = MAPPING.replace(f'biobank = "{BIOBANK}"\n', "").replace(
        "[columns]\n", '[columns]\nbiobank = "Standort"\n'
    )
    text += '\n[values.biobank]\n"Nord" = "bbmri-eric:ID:DE_NORD"\n"Test" = "' + BIOBANK + '"\n'
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml", text))
    rows = [[*r, "Test"] for r in sample_rows(3)]
    rows[1][-1] = "Nord"
    export = write_csv(tmp_path / "s.csv", rows, [*HEADER, "Standort"])
    report = run_import(home, [export], mapping=mapping, skip_invalid=True)
    assert [(p.location, p.field, p.value) for p in report.problems] == [
        ("s.csv row 3", "Standort", "bbmri-eric:ID:DE_NORD")
    ]
    assert report.staged_samples == 2
