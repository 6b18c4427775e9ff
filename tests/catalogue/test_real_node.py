"""End to end against a real node server (node.app.create_app), the catalogue CLI and API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from catalogue.app import create_app
from catalogue.cli import app as cli_app
from federation.servers import live_server
from node.app import create_app as create_node_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from node.withdraw import withdraw
from protocol.entries import parse_leaf
from tests.catalogue.conftest import make_settings
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)


def _env(settings: Any) -> dict[str, str]:
    return {
        "CATALOGUE_DATABASE_URL": settings.database_url,
        "CATALOGUE_HOME": str(settings.home),
        "CATALOGUE_ORIGIN": settings.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }


def test_real_node_enrol_harvest_search_withdraw(db_url: str, tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path, k=2)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    run_import(home, [write_csv(tmp_path / "a.csv", sample_rows(30))], mapping=mapping)
    settings = make_settings(db_url, tmp_path / "cat-home")
    env = _env(settings)
    runner = CliRunner()
    with live_server(create_node_app(NodeSettings(home=home.path))) as node:
        wrong = runner.invoke(
            cli_app,
            ["enrol", node.url, "--key", vkey.replace(vkey.split("+")[2], "A" * 44)],
            env=env,
        )
        assert wrong.exit_code == 1
        enrolled = runner.invoke(cli_app, ["enrol", node.url, "--key", vkey], env=env)
        assert enrolled.exit_code == 0, enrolled.output
        assert f"enrolled {ORIGIN} (DE)" in enrolled.output
        harvested = runner.invoke(cli_app, ["harvest"], env=env)
        assert harvested.exit_code == 0, harvested.output
        size = 1 + RECORD_ENTRIES  # the biobank, its collection and one group of 30 samples
        assert f"{ORIGIN}: ok, size {size} (+{size})" in harvested.output

        with (
            live_server(create_app(settings)) as cat,
            httpx.Client(base_url=cat.url, timeout=10) as client,
        ):
            body = client.get("/v1/search", params={"icd10": "II"}).json()
            assert body["total"] == {"min": 30, "max": 30}
            assert body["donors"] == {"min": 30, "max": 30}
            assert body["biobanks"]["items"][0]["provenance"]["checkpoint_size"] == size
            first = client.get(
                f"/v1/nodes/{ORIGIN}/log/entries", params={"start": RECORD_ENTRIES, "limit": 1}
            ).json()["entries"][0]
            target = parse_leaf(
                base64.b64decode(first["leaf"]), expected_log=ORIGIN, expected_index=RECORD_ENTRIES
            )["id"]
            withdraw(home, [target])
            assert runner.invoke(cli_app, ["harvest"], env=env).exit_code == 0
            assert client.get("/v1/search").json()["total"] == {"min": 0, "max": 0}
            mirrored = client.get(f"/v1/nodes/{ORIGIN}/log/entries").json()["entries"]
            assert mirrored[RECORD_ENTRIES]["content"] is None and len(mirrored) == size + 1

    status = runner.invoke(cli_app, ["status"], env=env)
    assert status.exit_code == 0, status.output
    assert f"{ORIGIN}  active  size {size + 1}  lag 0" in status.output
    down = runner.invoke(cli_app, ["harvest"], env=env)  # the node server is stopped now
    assert down.exit_code == 1 and f"{ORIGIN}: failed: FetchError" in down.output


@pytest.mark.parametrize("command", [["retire", "nobody.example/x"], ["clear", "nobody.example/x"]])
def test_cli_unknown_origin_is_one_clear_line(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    env = _env(make_settings(db_url, tmp_path / "cat-home"))
    result = CliRunner().invoke(cli_app, command, env=env)
    assert result.exit_code == 1
    assert "error: no enrolled node with origin 'nobody.example/x'" in result.output
