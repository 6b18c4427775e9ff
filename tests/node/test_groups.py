"""Sample groups: bounds, keyed ids, change sets of k donors, order, policy over the holding."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from federation.generate import generate
from node.cli import app
from node.groups import bounds
from node.home import Home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.pseudonym import Pseudonymiser
from node.withdraw import publish
from protocol.canonical import canonical
from tests.node.node_support import (
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    spread,
    write_csv,
    write_mapping,
)

runner = CliRunner()
BUNDLE = "samply-directory-sync-service/ci/data/input/miabis_100_patients/miabis_100_patients.json"


def _log(home: Home) -> list[tuple[int, str, str, str, dict[str, Any] | None]]:
    """(index, op, kind, id, content) of every entry."""
    conn = sqlite3.connect(home.db_path)
    try:
        return [
            (idx, op, kind, id, None if text is None else orjson.loads(text))
            for idx, op, kind, id, text in conn.execute(
                "SELECT l.idx, l.op, l.kind, l.id, c.content FROM leaves l "
                "JOIN contents c ON c.idx = l.idx ORDER BY l.idx"
            )
        ]
    finally:
        conn.close()


def _live_groups(home: Home) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for _, op, kind, id, content in _log(home):
        if kind != "sample-group":
            continue
        if op == "withdraw":
            out.pop(id, None)
        elif content is not None:
            out[id] = content
    return out


def _import(home: Home, tmp_path: Path, name: str, rows: list[list[str]], **kw: Any) -> Any:
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    return run_import(home, [write_csv(tmp_path / name, rows)], mapping=mapping, **kw)


def test_bounds_are_exact_at_k_donors_and_true_bounds_below() -> None:
    assert bounds(12, 10, 10) == (12, 10)
    assert bounds(5, 3, 10) == ({"lt": 10}, {"lt": 10})
    assert bounds(10, 3, 10) == ({"lt": 20}, {"lt": 10})
    assert bounds(15, 3, 10) == ({"lt": 20}, {"lt": 10})
    for samples in range(1, 60):
        for donors in range(1, min(samples, 9) + 1):
            shown, counted = bounds(samples, donors, 10)
            assert samples < shown["lt"] and donors < counted["lt"]  # a bound is true


def test_a_group_of_fewer_than_k_donors_in_a_class_of_k_publishes_bounds(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=3)
    rows = sample_rows(6, donors=4)  # one privacy class of 4 donors
    rows[3][3] = "LN"  # donor P000003 alone: a group of one sample, one donor
    report = _import(home, tmp_path, "a.csv", rows)
    assert report.privacy.held_back == {}
    by_temperature = {g["storage_temperature"]: g for g in _live_groups(home).values()}
    assert by_temperature["LN"]["samples"] == {"lt": 3}
    assert by_temperature["LN"]["donors"] == {"lt": 3}
    assert (by_temperature["-60to-85"]["samples"], by_temperature["-60to-85"]["donors"]) == (5, 3)


def test_group_ids_are_the_keyed_hash_of_the_canonical_key_and_stay(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    _import(home, tmp_path, "a.csv", spread(sample_rows(8), 2))
    first = _live_groups(home)
    pseudonyms = Pseudonymiser(home.secret)
    for gid, content in first.items():
        key = {k: v for k, v in content.items() if k not in ("id", "samples", "donors", "nonce")}
        assert gid == pseudonyms.group_id(canonical(key))
        assert gid != Pseudonymiser(b"x" * 32).group_id(canonical(key))  # needs the secret
    _import(home, tmp_path, "b.csv", spread(sample_rows(4, start=8), 2))
    second = _live_groups(home)
    assert set(second) == set(first)  # the same groups, counts changed, ids kept
    for gid in first:
        assert second[gid]["samples"] == first[gid]["samples"] + 2
        assert second[gid]["nonce"] != first[gid]["nonce"]


def test_a_change_set_waits_below_k_donors_and_goes_whole_in_one_checkpoint(
    tmp_path: Path,
) -> None:
    home, _ = make_home(tmp_path, k=3)
    _import(home, tmp_path, "a.csv", spread(sample_rows(18, donors=9), 3))  # 3 groups of 3
    size = len(_log(home))
    # one new donor with two samples in two groups: 1 donor < k, everything waits
    one = [[f"S1{i:05d}", "P100000", *row[2:]] for i, row in enumerate(spread(sample_rows(2), 3))]
    waits = _import(home, tmp_path, "b.csv", one)
    assert waits.applied and waits.appended == 0
    assert waits.pending.to_dict() == {"samples": 2, "donors": 1, "k": 3, "waiting": True}
    status = runner.invoke(app, ["status", "--home", str(home.path), "--json"])
    assert json.loads(status.stdout)["pending"]["waiting"] is True
    # two more donors: 3 donors change, the whole change set goes out at once
    more = [
        [f"S2{i:05d}", f"P2{i:05d}", *row[2:]]
        for i, row in enumerate(spread(sample_rows(2, start=2), 3))
    ]
    goes = _import(home, tmp_path, "c.csv", more)
    assert goes.pending.to_dict() == {"samples": 0, "donors": 0, "k": 3, "waiting": False}
    new = [e for e in _log(home) if e[0] >= size]
    assert [e[3] for e in new] == sorted(e[3] for e in new)  # in group-id order
    conn = sqlite3.connect(home.db_path)
    checkpoints = [r[0] for r in conn.execute("SELECT size FROM checkpoints ORDER BY size")]
    conn.close()
    assert checkpoints[-2:] == [size, size + len(new)]  # ONE checkpoint for the change set
    # every group the four new samples touched counts them all (the waiting ones too)
    assert sum(g["samples"] for g in _live_groups(home).values()) == 22


def test_records_come_first_then_groups_sorted_by_id(tmp_path: Path, external: Path) -> None:
    home, _ = make_home(tmp_path, k=3)
    bundle = external / BUNDLE  # biobank, collections and samples in one publication
    done = run_import(home, [bundle])
    entries = _log(home)
    kinds = [e[2] for e in entries]
    first_group = kinds.index("sample-group")
    assert set(kinds[:first_group]) == {"biobank", "collection"} and kinds[0] == "biobank"
    ids = [e[3] for e in entries[first_group:]]
    assert len(ids) == done.published["sample-group"] > 3
    assert ids == sorted(ids) and set(kinds[first_group:]) == {"sample-group"}


def test_a_generated_export_imports_in_group_id_order(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=3, records=False)
    out = generate("DE", 2000, 7, tmp_path / "export")
    for records, mapping in (
        (out.biobanks_csv, out.biobanks_mapping),
        (out.collections_csv, out.collections_mapping),
    ):
        assert run_import(home, [records], mapping=Mapping.load(mapping)).applied
    before = len(_log(home))
    done = run_import(home, [out.samples_csv], mapping=Mapping.load(out.samples_mapping))
    entries = [e for e in _log(home) if e[0] >= before]
    assert len(entries) == done.published["sample-group"] > 10
    ids = [e[3] for e in entries]
    assert ids == sorted(ids) and all(e[2] == "sample-group" for e in entries)


def test_content_equal_but_for_the_nonce_appends_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=3)
    rows = sample_rows(6, donors=4)
    rows[3][3] = "LN"  # a group of one sample of donor P000003: bounds {"lt": 3}
    _import(home, tmp_path, "a.csv", rows)
    size = len(_log(home))
    second = [["S900000", "P000003", *rows[3][2:]]]  # the same donor, a second LN sample
    waits = _import(home, tmp_path, "b.csv", second)
    assert waits.pending.waiting
    done = publish(home, now=True)
    assert done.published and done.groups == {"unchanged": 1}
    assert len(_log(home)) == size  # samples 2 is still {"lt": 3}: nothing to say


def test_policy_holds_over_the_holding_not_one_file(tmp_path: Path) -> None:
    """An import fine alone can break a class of the holding, and the reverse."""
    home, _ = make_home(tmp_path, k=3)
    women = sample_rows(3)  # S000000..2 of 3 donors: a class of 3
    assert _import(home, tmp_path, "a.csv", women).privacy.held_back == {}
    # B alone is a fine class of 3 men; merged, two women become men: S000002 is alone
    men = [[*r[:4], "m", *r[5:]] for r in women[:2]] + [["S000009", "P000009", *women[0][2:]]]
    men[2][4] = "m"
    report = _import(home, tmp_path, "b.csv", men)
    assert report.privacy.held_back == {"below_k": 1}
    conn = sqlite3.connect(home.db_path)
    (target,) = conn.execute(
        "SELECT target_group FROM holding WHERE local_id = 'S000002'"
    ).fetchone()
    conn.close()
    assert target is None
    assert [g["sex"] for g in _live_groups(home).values()] == ["male"]

    # the reverse: two files each below k, together a class of k donors
    other, _ = make_home(tmp_path, k=3, name="other")
    first = _import(other, tmp_path, "c.csv", sample_rows(2))
    assert first.privacy.held_back == {"below_k": 2} and first.appended == 0
    second = _import(other, tmp_path, "d.csv", sample_rows(1, start=2, donors=3))
    assert second.privacy.held_back == {} and second.published == {"sample-group": 1}
    (group,) = _live_groups(other).values()
    assert (group["samples"], group["donors"]) == (3, 3)


def test_preview_shows_the_change_set_against_the_holding(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=3)
    _import(home, tmp_path, "a.csv", sample_rows(6))
    mapping = write_mapping(tmp_path / "map.toml")
    one = write_csv(tmp_path / "b.csv", sample_rows(1, start=6, donors=7))
    args = ["preview", "--home", str(home.path), "--mapping", str(mapping)]
    shown = runner.invoke(app, [*args, "--json", str(one)])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["pending"] == {"samples": 1, "donors": 1, "k": 3, "waiting": True}
    (group,) = report["groups"]
    assert (group["samples"], group["donors"]) == (7, 7)
    assert group["id"] in _live_groups(home)
    text = runner.invoke(app, [*args, str(one)])
    assert "1 samples of 1 donors wait: a publication must involve at least 3 donors" in (
        text.stdout
    )
    assert len(_log(home)) == 1 + RECORD_ENTRIES  # the preview changed nothing


def test_after_recover_an_empty_holding_is_refilled_without_a_publication(
    tmp_path: Path,
) -> None:
    """``recover`` empties the holding; the next import of the export links its samples to
    the recovered groups whose content it reproduces, and appends nothing for them."""
    home, _ = make_home(tmp_path, k=2)
    rows = spread(sample_rows(12), 3)
    _import(home, tmp_path, "a.csv", rows)
    size = len(_log(home))
    conn = sqlite3.connect(home.db_path)
    conn.execute("DELETE FROM holding")  # what recover leaves
    conn.commit()
    conn.close()
    again = _import(home, tmp_path, "b.csv", rows)
    assert again.appended == 0 and again.pending.samples == 0
    assert len(_log(home)) == size
    # and the node goes on as before: a change is a change again
    more = _import(home, tmp_path, "c.csv", spread(sample_rows(2, start=12, donors=14), 3))
    assert more.published == {"sample-group": 2}
