"""The biobank-node command line: init, import (exit codes, one line per problem), status."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from federation.servers import free_port
from node.cli import app
from protocol.note import Verifier
from tests.node.node_support import sample_rows, write_csv, write_mapping, write_records

runner = CliRunner()


def _init(home: Path) -> str:
    result = runner.invoke(
        app,
        [
            "init",
            "--home",
            str(home),
            "--origin",
            "cli.example/node",
            "--name",
            "CLI node",
            "--country",
            "DE",
            "--organisation",
            "Org",
            "--contact",
            "ops@example.org",
        ],
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _records(home: Path) -> None:
    """Import the biobank and collection records the sample rows refer to (2 entries)."""
    for path, mapping in write_records(home.parent / "records"):
        result = runner.invoke(
            app, ["import", "--home", str(home), "--mapping", str(mapping), str(path)]
        )
        assert result.exit_code == 0, result.output


def test_init_creates_private_key_secret_and_prints_verifier_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    vkey = _init(home)
    assert Verifier.from_key(vkey).name == "cli.example/node"
    for name in ("node.key", "pseudonym.secret"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    assert len((home / "pseudonym.secret").read_bytes()) == 32
    assert (home / "policy.toml").is_file() and (home / "node.db").is_file()
    assert "PRIVATE" not in vkey
    again = runner.invoke(
        app,
        [
            "init",
            "--home",
            str(home),
            "--origin",
            "x",
            "--name",
            "n",
            "--country",
            "DE",
            "--organisation",
            "o",
            "--contact",
            "c@d.e",
        ],
    )
    assert again.exit_code == 2 and "refusing to overwrite" in again.output


def test_import_prints_one_line_per_problem_and_exits_non_zero(tmp_path: Path) -> None:
    home = tmp_path / "h"
    _init(home)
    _records(home)
    (home / "policy.toml").write_text("k = 2\n", encoding="utf-8")
    mapping = write_mapping(tmp_path / "map.toml")
    rows = sample_rows(4)
    rows[1][2] = "Blut"
    rows[2][5] = "forty"
    bad = write_csv(tmp_path / "bad.csv", rows)
    result = runner.invoke(
        app, ["import", "--home", str(home), "--mapping", str(mapping), str(bad)]
    )
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert lines == [
        "problem: bad.csv row 3: material='Blut': not a MIABIS sample type",
        "problem: bad.csv row 4: age='forty': not a whole number of years",
    ]
    good = write_csv(tmp_path / "good.csv", sample_rows(4))
    ok = runner.invoke(
        app, ["import", "--home", str(home), "--mapping", str(mapping), "--json", str(good)]
    )
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout)
    assert summary["published"] == {"sample-group": 1} and summary["size_after"] == 3
    assert summary["pending"] == {"samples": 0, "donors": 0, "k": 2, "waiting": False}
    status = runner.invoke(app, ["status", "--home", str(home)])
    assert status.exit_code == 0
    assert "log size: 3" in status.stdout and "live sample-group: 1" in status.stdout
    assert "entries sample-group/publish: 1" in status.stdout
    assert "pending: nothing waits" in status.stdout
    gone = runner.invoke(app, ["withdraw", "--home", str(home), "--sample", "S000000"])
    assert gone.exit_code == 0 and "removed 1 sample(s) from the holding" in gone.stdout
    assert "1 samples of 1 donors wait" in gone.stdout
    status = runner.invoke(app, ["status", "--home", str(home)])
    assert "pending: 1 samples of 1 donors wait: a publication must involve at least 2" in (
        status.stdout
    )
    missing = runner.invoke(app, ["withdraw", "--home", str(home), "--sample", "nope"])
    assert missing.exit_code == 2 and "nothing live with local sample id 'nope'" in missing.output


def test_preview_shows_what_would_go_out_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    _init(home)
    _records(home)
    (home / "policy.toml").write_text("k = 3\n", encoding="utf-8")
    mapping = write_mapping(tmp_path / "map.toml")
    rows = sample_rows(5)
    rows[4][4] = "m"  # a class of one donor: held back
    export = write_csv(tmp_path / "a.csv", rows)
    db_before = (home / "node.db").read_bytes()
    result = runner.invoke(
        app, ["preview", "--home", str(home), "--mapping", str(mapping), "--json", str(export)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["privacy"]["published"] == 4 and report["privacy"]["held_back"] == {"below_k": 1}
    assert report["policy"]["k"] == 3 and report["problems"] == 0
    (group,) = report["groups"]
    assert group["id"].startswith("grp_") and (group["samples"], group["donors"]) == (4, 4)
    assert report["pending"] == {"samples": 4, "donors": 4, "k": 3, "waiting": False}
    table = runner.invoke(
        app, ["preview", "--home", str(home), "--mapping", str(mapping), str(export)]
    )
    assert table.exit_code == 0 and "4 of 5 samples published" in table.stdout
    assert group["id"] in table.stdout and "4 samples of 4 donors change" in table.stdout
    assert (home / "node.db").read_bytes() == db_before
    status = runner.invoke(app, ["status", "--home", str(home)])
    assert "log size: 2" in status.stdout


def test_monitor_is_a_command_and_reports_an_unreachable_catalogue(tmp_path: Path) -> None:
    home = tmp_path / "h"
    _init(home)
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["monitor", "--home", str(home), "--catalogue", url])
    assert result.exit_code == 2 and result.output.startswith("error: ")
