"""The preview command, registered the way node/cli.py registers it (one line)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from node.policy import write_default
from node.preview import preview_command

BUNDLE = "samply-directory-sync-service/ci/data/input/miabis_100_patients/miabis_100_patients.json"


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("preview")(preview_command)
    cli.command("noop")(lambda: None)  # two commands, so "preview" is a sub-command
    return cli


def test_preview_json_reports_policy_and_counts(external: Path, tmp_path: Path) -> None:
    write_default(tmp_path / "policy.toml")
    result = CliRunner().invoke(
        app(), ["preview", str(external / BUNDLE), "--home", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # roles are said on stderr
    assert out["policy"]["k"] == 10
    assert out["privacy"]["rows"] == 206
    assert out["privacy"]["published"] + sum(out["privacy"]["held_back"].values()) == 206
    assert out["pending"]["samples"] == out["privacy"]["published"]
    assert all(g["id"].startswith("grp_") for g in out["groups"])


def test_preview_refuses_a_bad_policy_naming_the_key(external: Path, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("k = 0\n")
    result = CliRunner().invoke(app(), ["preview", str(external / BUNDLE), "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert "k = 0: must be from 2 to 1000" in result.output
