"""Bad exports: every problem is reported with file, row, field, value and reason; nothing
is half-applied; a record whose new row is invalid stays as published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node import store
from node.home import Home
from node.importing.importer import ImportReport, run_import
from node.importing.mapping import Mapping
from protocol.errors import ConfigError
from tests.node.node_support import (
    HEADER,
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Home, Mapping]:
    home, _ = make_home(tmp_path)
    return home, Mapping.load(write_mapping(tmp_path / "map.toml"))


def _size(home: Home) -> int:
    conn = store.connect(home.db_path)
    try:
        return store.log_size(conn)
    finally:
        conn.close()


def _one_bad(home: Home, mapping: Mapping, tmp_path: Path, column: int, value: str) -> ImportReport:
    rows = sample_rows(4)
    rows[2][column] = value
    report = run_import(home, [write_csv(tmp_path / "bad.csv", rows)], mapping=mapping)
    assert not report.applied and _size(home) == RECORD_ENTRIES
    return report


def test_unknown_code_is_reported_and_nothing_published(
    setup: tuple[Home, Mapping], tmp_path: Path
) -> None:
    home, mapping = setup
    report = _one_bad(home, mapping, tmp_path, 2, "Blut")
    assert [str(p) for p in report.problems] == [
        "bad.csv row 4: material='Blut': not a MIABIS sample type"
    ]


def test_wrong_type_age_forty(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    report = _one_bad(home, mapping, tmp_path, 5, "forty")
    (problem,) = report.problems
    assert (problem.location, problem.field, problem.value) == ("bad.csv row 4", "age", "forty")
    assert problem.reason == "not a whole number of years"


def test_missing_required_field(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    report = _one_bad(home, mapping, tmp_path, 2, "")
    (problem,) = report.problems
    assert problem.field == "material" and problem.reason == "missing required sample_type"


def test_columns_not_in_the_mapping_are_ignored_and_never_published(
    setup: tuple[Home, Mapping], tmp_path: Path
) -> None:
    home, mapping = setup
    rows = [r + ["Mrs Jane Doe, Berlin"] for r in sample_rows(3)]
    export = write_csv(tmp_path / "extra.csv", rows, HEADER + ["donor_name"])
    report = run_import(home, [export], mapping=mapping)
    assert report.applied and report.published == {"sample-group": 1}
    assert any("'donor_name' is not in the mapping" in k for k in report.ignored)
    conn = store.connect(home.db_path)
    texts = [t for (t,) in conn.execute("SELECT content FROM contents")]
    conn.close()
    assert texts and not any("Jane" in t for t in texts)


def test_free_text_field_in_a_sample_mapping_is_refused(tmp_path: Path) -> None:
    text = (tmp_path / "x").parent.joinpath("m.toml")
    write_mapping(text, 'kind = "sample"\n[columns]\nlocal_id = "id"\ndescription = "notes"\n')
    with pytest.raises(ConfigError, match="'description' is not a sample field.*never free text"):
        Mapping.load(text)


def test_duplicate_local_ids(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    rows = sample_rows(4)
    rows[3][0] = rows[1][0]
    report = run_import(home, [write_csv(tmp_path / "dup.csv", rows)], mapping=mapping)
    (problem,) = report.problems
    assert problem.location == "dup.csv row 3; dup.csv row 5"
    assert problem.value == "S000001" and "duplicate local sample id" in problem.reason
    assert not report.applied and _size(home) == RECORD_ENTRIES


def test_non_utf8_bytes(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    export = write_csv(tmp_path / "latin1.csv", sample_rows(3))
    data = export.read_bytes().replace(b"S000001", b"S\xe4\xf6001")
    export.write_bytes(data)
    report = run_import(home, [export], mapping=mapping)
    (problem,) = report.problems
    assert problem.location == "latin1.csv row 3" and "not valid UTF-8" in problem.reason
    assert not report.applied and _size(home) == RECORD_ENTRIES


def test_truncated_csv_short_last_row(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    export = write_csv(tmp_path / "cut.csv", sample_rows(3))
    export.write_bytes(export.read_bytes().rstrip(b"\r\n")[:-20])
    report = run_import(home, [export], mapping=mapping)
    assert [p.location for p in report.problems] == ["cut.csv row 4"]
    assert "truncated" in report.problems[0].reason
    assert not report.applied and _size(home) == RECORD_ENTRIES


def test_truncated_json_bundle(setup: tuple[Home, Mapping], tmp_path: Path, external: Path) -> None:
    home, _ = setup
    source = (
        external / "samply-directory-sync-service/ci/data/input/miabis_1_patient/"
        "miabis_bundle_1_patient.json"
    )
    cut = tmp_path / "cut.json"
    cut.write_bytes(source.read_bytes()[: len(source.read_bytes()) // 2])
    report = run_import(home, [cut])
    assert any(
        "truncated" in p.reason and p.location.startswith("cut.json entry") for p in report.problems
    )
    assert not report.applied and _size(home) == RECORD_ENTRIES


def test_fhir_resources_it_does_not_understand(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, _ = setup
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": "o1"}},
            {"resource": {"resourceType": "ImagingStudy", "id": "i1"}},
        ],
    }
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = run_import(home, [path])
    (problem,) = report.problems
    assert problem.location == "odd.json entry 2 (ImagingStudy/i1)"
    assert problem.reason == "FHIR resource type ImagingStudy is not understood"
    assert any("Observation" in k for k in report.ignored)
    assert not report.applied


def test_skip_invalid_publishes_the_valid_rows(setup: tuple[Home, Mapping], tmp_path: Path) -> None:
    home, mapping = setup
    rows = sample_rows(4)
    rows[0][4] = "x"
    report = run_import(
        home, [write_csv(tmp_path / "some.csv", rows)], mapping=mapping, skip_invalid=True
    )
    assert report.applied and report.published == {"sample-group": 1}
    assert [p.location for p in report.problems] == ["some.csv row 2"]
    conn = store.connect(home.db_path)
    held = [r[0] for r in conn.execute("SELECT local_id FROM holding ORDER BY 1")]
    conn.close()
    assert held == ["S000001", "S000002", "S000003"]


def test_invalid_new_row_keeps_the_published_record_even_with_snapshot(
    setup: tuple[Home, Mapping], tmp_path: Path
) -> None:
    home, mapping = setup
    rows = sample_rows(4)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    rows[1][5] = "forty"
    report = run_import(
        home,
        [write_csv(tmp_path / "b.csv", rows)],
        mapping=mapping,
        snapshot=True,
        skip_invalid=True,
    )
    assert report.applied and report.withdrawn == {} and report.appended == 0
    conn = store.connect(home.db_path)
    live = conn.execute("SELECT count(*) FROM holding WHERE live = 1").fetchone()[0]
    conn.close()
    assert live == 4  # the sample whose row is invalid stays as it was


def test_truncated_file_with_snapshot_withdraws_nothing(
    setup: tuple[Home, Mapping], tmp_path: Path
) -> None:
    home, mapping = setup
    rows = sample_rows(6)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    export = write_csv(tmp_path / "b.csv", rows)
    data = export.read_bytes()
    export.write_bytes(data[: data.index(b"S000003")] + b'"S0000')
    report = run_import(home, [export], mapping=mapping, snapshot=True, skip_invalid=True)
    assert report.applied and report.withdrawn == {}
    assert any("snapshot withdrawals skipped" in n for n in report.notes)
