"""Consent withdrawal (``withdraw --donor/--sample``) and ``publish``: the effect waits for a
change set of k donors, or goes at once with ``--publish-now`` / ``--now``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from federation.servers import live_server
from node import store
from node.app import create_app
from node.cli import app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from protocol.keys import KeyHistory
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    verify_served_log,
    write_csv,
    write_mapping,
)

runner = CliRunner()


def _live(home_db: Path) -> dict[str, dict[str, object]]:
    """Live group records and their latest content."""
    conn = store.connect(home_db, readonly=True)
    try:
        return {
            id: json.loads(text)
            for id, text in conn.execute(
                "SELECT r.id, c.content FROM records r JOIN contents c ON c.idx = r.last_index "
                "WHERE r.live = 1 AND r.kind = 'sample-group'"
            )
        }
    finally:
        conn.close()


def test_a_withdrawal_of_fewer_than_k_donors_waits_then_goes_with_the_next_change(
    tmp_path: Path,
) -> None:
    home, vkey = make_home(tmp_path, k=3)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(12, donors=6)  # donor P000000 gave S000000 and S000006
    export = write_csv(tmp_path / "all.csv", rows)
    assert run_import(home, [export], mapping=mapping).published == {"sample-group": 1}
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        result = runner.invoke(app, ["withdraw", "--home", str(home.path), "--donor", "P000000"])
        assert result.exit_code == 0, result.output
        assert "removed 2 samples of donor P000000 from the holding" in result.stdout
        assert (
            "2 samples of 1 donors wait: a publication must involve at least 3 donors"
            in result.stdout
        )
        checkpoint, _ = verify_served_log(client, KeyHistory(ORIGIN, vkey))
        assert checkpoint.size == 1 + RECORD_ENTRIES  # nothing went out
        status = runner.invoke(app, ["status", "--home", str(home.path), "--json"])
        assert json.loads(status.stdout)["pending"] == {
            "samples": 2,
            "donors": 1,
            "k": 3,
            "waiting": True,
        }
        # the same export again: the donor stays out (consent), still nothing goes out
        again = run_import(home, [export], mapping=mapping)
        assert again.appended == 0 and again.erased_skipped == 2
        assert again.pending is not None and again.pending.waiting
        # two more donors withdraw: 3 donors, the change set goes out as ONE entry
        result = runner.invoke(
            app,
            ["withdraw", "--home", str(home.path), "--donor", "P000001", "--donor", "P000002"],
        )
        assert result.exit_code == 0, result.output
        assert "published the change set of 3 donor(s)" in result.stdout
        checkpoint, entries = verify_served_log(client, KeyHistory(ORIGIN, vkey))
        assert checkpoint.size == 2 + RECORD_ENTRIES
        group = item_content(entries[1 + RECORD_ENTRIES])
        assert group is not None and (group["samples"], group["donors"]) == (6, 3)


def item_content(item: dict[str, Any]) -> dict[str, Any] | None:
    content = item["content"]
    return None if content is None else dict(content)


def test_withdraw_publish_now_says_what_an_observer_learns_and_publishes(tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path, k=3)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(8, donors=4))], mapping=mapping)
    result = runner.invoke(
        app,
        ["withdraw", "--home", str(home.path), "--sample", "S000003", "--publish-now"],
    )
    assert result.exit_code == 0, result.output
    assert "only 1 donor(s), fewer than k = 3" in result.stderr
    assert "published the change set of 1 donor(s)" in result.stdout
    (group,) = _live(home.db_path).values()
    assert (group["samples"], group["donors"]) == (7, 4)
    nothing = runner.invoke(app, ["publish", "--home", str(home.path)])
    assert nothing.exit_code == 0 and "nothing waits" in nothing.stdout


def test_publish_waits_below_k_and_now_forces_it(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=3)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(6))], mapping=mapping)
    more = run_import(
        home, [write_csv(tmp_path / "b.csv", sample_rows(1, start=6, donors=7))], mapping=mapping
    )
    assert more.appended == 0 and more.pending is not None and more.pending.waiting
    waits = runner.invoke(app, ["publish", "--home", str(home.path)])
    assert "1 samples of 1 donors wait" in waits.stdout
    assert next(iter(_live(home.db_path).values()))["samples"] == 6
    forced = runner.invoke(app, ["publish", "--home", str(home.path), "--now"])
    assert forced.exit_code == 0, forced.output
    assert (
        "fewer than k = 3" in forced.stderr
        and f"log size now {2 + RECORD_ENTRIES}" in forced.stdout
    )
    assert next(iter(_live(home.db_path).values()))["samples"] == 7


def test_withdraw_unknown_donor_changes_nothing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(4))], mapping=mapping)
    result = runner.invoke(
        app,
        ["withdraw", "--home", str(home.path), "--donor", "P000001", "--donor", "nobody"],
    )
    assert result.exit_code == 2
    assert "nothing live with local donor id 'nobody'" in result.output
    conn = store.connect(home.db_path, readonly=True)
    try:
        assert store.log_size(conn) == 1 + RECORD_ENTRIES
        assert conn.execute("SELECT count(*) FROM holding WHERE live = 1").fetchone()[0] == 4
        assert conn.execute("SELECT count(*) FROM erased").fetchone()[0] == 0
    finally:
        conn.close()
    nothing = runner.invoke(app, ["withdraw", "--home", str(home.path)])
    assert nothing.exit_code == 2 and "nothing to withdraw" in nothing.output
