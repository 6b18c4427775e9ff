"""CSV import through a mapping: publish, diff, nonce stability, snapshot, withdraw."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from node import store
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.withdraw import withdraw
from tests.node.node_support import BIOBANK, make_home, sample_rows, write_csv, write_mapping


def _contents(home_db: Path) -> dict[str, dict[str, object]]:
    conn = sqlite3.connect(home_db)
    rows = conn.execute(
        "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
        "WHERE l.op = 'publish' AND c.content IS NOT NULL ORDER BY l.idx"
    )
    out = {id: orjson.loads(text) for id, text in rows}
    conn.close()
    return out


def test_import_publishes_pseudonymous_generalised_samples(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    export = write_csv(tmp_path / "samples.csv", sample_rows(5))
    report = run_import(home, [export], mapping=mapping)
    assert report.problems == []
    assert report.applied and report.published == {"sample": 5}
    assert report.size_after == 5
    records = _contents(home.db_path)
    assert len(records) == 5
    one = next(iter(records.values()))
    assert one["id"].startswith("smp_") and len(one["id"]) == 30
    assert one["biobank"] == BIOBANK and one["sample_type"] == "WholeBlood"
    assert one["sex"] == "female" and one["storage_temperature"] == "-60to-85"
    assert one["age"] == {"min": 40, "max": 49} and one["period"] == {"from": 2015, "to": 2019}
    assert one["diagnoses"] == [{"system": "ICD-10", "code": "C50.9"}]
    raw = (home.db_path).read_bytes()
    assert b"S000001" not in b"".join(
        r[0].encode()
        for r in sqlite3.connect(home.db_path).execute(
            "SELECT content FROM contents WHERE content IS NOT NULL"
        )
    )
    assert raw  # the database exists and holds the log


def test_importing_the_same_file_twice_appends_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    export = write_csv(tmp_path / "samples.csv", sample_rows(4))
    first = run_import(home, [export], mapping=mapping)
    conn = store.connect(home.db_path)
    checkpoint_before = store.latest_checkpoint(conn)
    conn.close()
    second = run_import(home, [export], mapping=mapping)
    assert first.appended == 4
    assert second.applied and second.appended == 0 and second.unchanged == {"sample": 4}
    conn = store.connect(home.db_path)
    assert store.latest_checkpoint(conn) == checkpoint_before
    conn.close()


def test_changed_row_is_republished_with_a_fresh_nonce(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(3)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    before = _contents(home.db_path)
    for row in rows:
        row[3] = "LN"
    report = run_import(home, [write_csv(tmp_path / "b.csv", rows)], mapping=mapping)
    assert report.published == {"sample": 3}
    conn = sqlite3.connect(home.db_path)
    latest = {
        id: orjson.loads(text)
        for id, text in conn.execute(
            "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx WHERE l.idx >= 3"
        )
    }
    conn.close()
    assert set(latest) == set(before)
    for id, record in latest.items():
        assert record["storage_temperature"] == "LN"
        assert record["nonce"] != before[id]["nonce"]


def test_snapshot_withdraws_missing_and_erases_content(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    not_snapshot = run_import(home, [write_csv(tmp_path / "b.csv", rows[:3])], mapping=mapping)
    assert not_snapshot.appended == 0
    report = run_import(
        home, [write_csv(tmp_path / "c.csv", rows[:3])], mapping=mapping, snapshot=True
    )
    assert report.withdrawn == {"sample": 1} and report.appended == 1
    conn = sqlite3.connect(home.db_path)
    (gone,) = conn.execute("SELECT id FROM leaves WHERE op = 'withdraw'").fetchone()
    assert (
        conn.execute(
            "SELECT count(*) FROM leaves l JOIN contents c ON c.idx = l.idx "
            "WHERE l.id = ? AND c.content IS NOT NULL",
            (gone,),
        ).fetchone()[0]
        == 0
    )
    conn.close()


def test_withdraw_by_local_id_and_by_published_id(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(4))], mapping=mapping)
    published = list(_contents(home.db_path))
    done = withdraw(home, ["S000000", published[1]])
    assert [k for k, _ in done] == ["sample", "sample"]
    assert done[1][1] == published[1]
    assert set(_contents(home.db_path)) == set(published[2:])


def test_blank_rows_are_skipped_and_later_rows_keep_their_row_numbers(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    bad = list(rows[3])
    bad[2] = "Erdnussbutter"  # no such material: a problem naming its row
    export = write_csv(
        tmp_path / "samples.csv",
        [
            rows[0],
            [""] * len(rows[0]),
            rows[1],
            ["  "] * len(rows[0]),
            ["", " ", *rows[2][2:]],
            rows[2],
            bad,
        ],
    )
    report = run_import(home, [export], mapping=mapping, skip_invalid=True)
    # the row with cells after two blank ones is a row (missing id), not a blank row
    assert [p.location for p in report.problems] == ["samples.csv row 6", "samples.csv row 8"]
    assert report.published == {"sample": 3}
