"""CSV import through a mapping: groups, diff, nonce freshness, snapshot, withdraw."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from node import store
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.withdraw import erase, withdraw
from protocol.errors import ConfigError
from tests.node.node_support import (
    BIOBANK,
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)


def _contents(home_db: Path) -> dict[str, dict[str, object]]:
    """The latest content of every published sample group, by id."""
    conn = sqlite3.connect(home_db)
    rows = conn.execute(
        "SELECT l.id, c.content FROM leaves l JOIN contents c ON c.idx = l.idx "
        "WHERE l.op = 'publish' AND l.kind = 'sample-group' AND c.content IS NOT NULL "
        "ORDER BY l.idx"
    )
    out = {id: orjson.loads(text) for id, text in rows}  # the latest version of each id
    conn.close()
    return out


def test_import_publishes_one_group_record_without_sample_or_donor_ids(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    export = write_csv(tmp_path / "samples.csv", sample_rows(5, donors=3))
    report = run_import(home, [export], mapping=mapping)
    assert report.problems == []
    assert report.applied and report.published == {"sample-group": 1}
    assert report.size_after == 1 + RECORD_ENTRIES
    (one,) = _contents(home.db_path).values()
    assert one["id"].startswith("grp_") and len(one["id"]) == 30
    assert one["biobank"] == BIOBANK and one["sample_type"] == "WholeBlood"
    assert one["sex"] == "female" and one["storage_temperature"] == "-60to-85"
    assert one["age"] == {"min": 40, "max": 49} and one["period"] == {"from": 2015, "to": 2019}
    assert one["diagnoses"] == [{"system": "ICD-10", "code": "C50.9"}]
    assert one["samples"] == 5 and one["donors"] == 3
    published = b"".join(
        r[0].encode()
        for r in sqlite3.connect(home.db_path).execute(
            "SELECT content FROM contents WHERE content IS NOT NULL"
        )
    )
    assert b"S000001" not in published and b"P000001" not in published
    # the holding keeps the local id and a donor hash, never the donor id
    conn = sqlite3.connect(home.db_path)
    held = conn.execute("SELECT local_id, donor_hash FROM holding ORDER BY local_id").fetchall()
    conn.close()
    assert [r[0] for r in held] == [f"S{i:06d}" for i in range(5)]
    assert all(r[1] and "P0000" not in r[1] for r in held)


def test_importing_the_same_file_twice_appends_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    export = write_csv(tmp_path / "samples.csv", sample_rows(4))
    first = run_import(home, [export], mapping=mapping)
    conn = store.connect(home.db_path)
    checkpoint_before = store.latest_checkpoint(conn)
    conn.close()
    second = run_import(home, [export], mapping=mapping)
    assert first.appended == 1
    assert second.applied and second.appended == 0 and second.published == {}
    assert second.pending is not None and second.pending.samples == 0
    conn = store.connect(home.db_path)
    assert store.latest_checkpoint(conn) == checkpoint_before
    assert conn.execute("SELECT count(*) FROM holding").fetchone()[0] == 4
    conn.close()


def test_changed_rows_move_to_a_new_group_and_the_old_one_is_withdrawn(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(3)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    (old,) = _contents(home.db_path)
    for row in rows:
        row[3] = "LN"
    report = run_import(home, [write_csv(tmp_path / "b.csv", rows)], mapping=mapping)
    assert report.published == {"sample-group": 1} and report.withdrawn == {"sample-group": 1}
    (new,) = _contents(home.db_path).values()
    assert new["id"] != old and new["storage_temperature"] == "LN" and new["samples"] == 3


def test_a_group_whose_counts_change_is_republished_under_its_id_with_a_fresh_nonce(
    tmp_path: Path,
) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(3))], mapping=mapping)
    (before,) = _contents(home.db_path).values()
    report = run_import(
        home, [write_csv(tmp_path / "b.csv", sample_rows(2, start=3))], mapping=mapping
    )
    assert report.published == {"sample-group": 1} and report.appended == 1
    conn = sqlite3.connect(home.db_path)
    (text,) = conn.execute(
        "SELECT content FROM contents WHERE idx = ?", (1 + RECORD_ENTRIES,)
    ).fetchone()
    conn.close()
    after = orjson.loads(text)
    assert after["id"] == before["id"] and after["nonce"] != before["nonce"]
    assert (after["samples"], after["donors"]) == (5, 3)  # P000000, P000001 give again


def test_snapshot_removes_missing_samples_and_a_group_left_empty_is_withdrawn(
    tmp_path: Path,
) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(4)
    rows[3][4] = "m"
    rows.append([*rows[3][:1], "P000009", *rows[3][2:]])
    rows[4][0] = "S000009"  # two male samples of two donors: a group of its own
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    assert len(_contents(home.db_path)) == 2
    not_snapshot = run_import(home, [write_csv(tmp_path / "b.csv", rows[:3])], mapping=mapping)
    assert not_snapshot.appended == 0
    report = run_import(
        home, [write_csv(tmp_path / "c.csv", rows[:3])], mapping=mapping, snapshot=True
    )
    assert report.withdrawn == {"sample-group": 1} and report.appended == 1
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
    # the removal was published: no tombstone is left
    assert conn.execute("SELECT count(*) FROM holding").fetchone()[0] == 3
    conn.close()


def test_withdraw_by_local_sample_id_and_by_group_id(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(6))], mapping=mapping)
    (group,) = _contents(home.db_path)
    report = erase(home, samples=["S000000", "S000001"])
    assert report.samples == 2 and report.publication is not None
    assert report.publication.published  # two donors: k = 2
    (after,) = _contents(home.db_path).values()
    assert after["id"] == group and after["samples"] == 4
    done = withdraw(home, [group])
    assert done == []  # a group id names samples, not a record to withdraw directly
    assert _contents(home.db_path) == {}
    with pytest.raises(ConfigError, match="nothing withdrawn"):
        erase(home, samples=["S000000"])  # gone already


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
    assert report.published == {"sample-group": 1}
    (group,) = _contents(home.db_path).values()
    assert group["samples"] == 3
