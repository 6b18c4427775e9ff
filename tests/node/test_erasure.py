"""Erasure by donor: ``biobank-node withdraw --donor`` against a real node server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from typer.testing import CliRunner

from federation.servers import live_server
from node import store
from node.app import create_app
from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.pseudonym import Pseudonymiser
from node.settings import NodeSettings
from protocol.keys import KeyHistory
from tests.node.node_support import (
    ORIGIN,
    entry_of,
    make_home,
    sample_rows,
    verify_served_log,
    write_csv,
    write_mapping,
)

runner = CliRunner()


def _live(home_db: Path) -> set[str]:
    conn = store.connect(home_db, readonly=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM records WHERE live = 1")}
    finally:
        conn.close()


def test_withdraw_donor_erases_all_their_samples_and_reports_the_tree_size(
    tmp_path: Path,
) -> None:
    home, vkey = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(8, donors=4)  # donor P000000 gave S000000 and S000004
    export = write_csv(tmp_path / "all.csv", rows)
    assert run_import(home, [export], mapping=mapping).published == {"sample": 8}
    pseudonyms = Pseudonymiser(home.secret)
    erased = {pseudonyms.sample_id("S000000"), pseudonyms.sample_id("S000004")}

    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        result = runner.invoke(app, ["withdraw", "--home", str(home.path), "--donor", "P000000"])
        assert result.exit_code == 0, result.output
        match = re.search(
            r"erased 2 samples of donor P000000; effective from tree size (\d+)", result.stdout
        )
        assert match, result.stdout
        assert "held back" not in result.stdout
        checkpoint, entries = verify_served_log(client, KeyHistory(ORIGIN, vkey))
        assert checkpoint.size == int(match.group(1)) == 10
        for index, item in enumerate(entries):
            entry = entry_of(item, index)
            if entry["id"] in erased:
                assert item["content"] is None, f"content of withdrawn {entry['id']} served"
            else:
                assert item["content"] is not None
        assert {entry_of(entries[i], i)["op"] for i in (8, 9)} == {"withdraw"}
        assert {entry_of(entries[i], i)["id"] for i in (8, 9)} == erased

        # the LIMS export without the donor: nothing new, nothing republished
        without = write_csv(tmp_path / "without.csv", [r for r in rows if r[1] != "P000000"])
        again = run_import(home, [without], mapping=mapping, snapshot=True)
        assert again.appended == 0 and again.unchanged == {"sample": 6}
        assert not erased & _live(home.db_path)

        # an export that still holds the donor's rows republishes them (erasure must happen
        # in the LIMS export too), with fresh nonces: nothing links them to the erased digests
        old_digests = {entry_of(e, i)["digest"] for i, e in enumerate(entries[:8])}
        back = run_import(home, [export], mapping=mapping)
        assert back.published == {"sample": 2}
        _, entries = verify_served_log(client, KeyHistory(ORIGIN, vkey))
        new = [entry_of(e, i) for i, e in enumerate(entries) if i >= 10]
        assert {e["id"] for e in new} == erased
        assert not {e["digest"] for e in new} & old_digests


def test_withdraw_donor_holds_back_a_class_that_falls_below_k(tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path, k=3)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    women = sample_rows(4)  # one class of 4 donors
    men = sample_rows(3, start=10)  # another class of exactly k = 3 donors
    for row in men:
        row[1], row[4] = "P" + row[0][1:], "m"  # donors P000010..P000012
    export = write_csv(tmp_path / "all.csv", women + men)
    assert run_import(home, [export], mapping=mapping).published == {"sample": 7}
    pseudonyms = Pseudonymiser(home.secret)
    others = {pseudonyms.sample_id("S000011"), pseudonyms.sample_id("S000012")}

    result = runner.invoke(app, ["withdraw", "--home", str(home.path), "--donor", "P000010"])
    assert result.exit_code == 0, result.output
    assert "erased 1 samples of donor P000010; effective from tree size 10" in result.stdout
    assert {
        line.split()[-1]
        for line in result.stdout.splitlines()
        if line.startswith("held back sample")
    } == others
    live = _live(home.db_path)
    assert not others & live and len(live) == 4  # the women's class is untouched

    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        checkpoint, entries = verify_served_log(client, KeyHistory(ORIGIN, vkey))
        assert checkpoint.size == 10
        assert sum(item["content"] is None for item in entries) == 6  # 3 publish + 3 withdraw

    # the next import re-applies k over the remaining export: 2 men stay below k
    without = write_csv(tmp_path / "without.csv", women + men[1:])
    report = run_import(home, [without], mapping=mapping)
    assert report.appended == 0 and report.privacy.held_back == {"below_k": 2}


def test_withdraw_unknown_donor_changes_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(4))], mapping=mapping)
    result = runner.invoke(
        app,
        ["withdraw", "--home", str(home.path), "--donor", "P000001", "--donor", "nobody"],
    )
    assert result.exit_code == 2
    assert "no live record with local donor id 'nobody'" in result.output
    assert len(_live(home.db_path)) == 4
    conn = store.connect(home.db_path, readonly=True)
    try:
        assert store.log_size(conn) == 4
    finally:
        conn.close()
    nothing = runner.invoke(app, ["withdraw", "--home", str(home.path)])
    assert nothing.exit_code == 2 and "nothing to withdraw" in nothing.output
