"""JSON logs of the real programs: every line one JSON object, and no secret or local id in them.

A node (``biobank-node serve --log-format json``) and a catalogue (``biobank-catalogue serve
--log-format json``) run as processes; the node imports an export, the catalogue enrols and
harvests it through the admin API (bearer token), a one-shot ``biobank-catalogue harvest``
runs with ``CATALOGUE_LOG_FORMAT=json``, and researchers search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

from federation.servers import free_port
from tests.catalogue.conftest import ADMIN_TOKEN
from tests.metrics_support import node_secrets, wait_ready
from tests.node.node_support import RECORD_ENTRIES, make_home, sample_rows, write_csv, write_mapping

BIN = Path(sys.executable).parent


@contextmanager
def served(args: list[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    """Run a server command with its stdout and stderr in ``log``; stop it (SIGTERM) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=out, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, f"{args[0]} did not start"
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _lines(text: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        record = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def test_json_logs_parse_and_hold_no_secret(tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path)
    rows = sample_rows(12, donors=6)
    export = write_csv(tmp_path / "samples.csv", rows)
    mapping = write_mapping(tmp_path / "samples.mapping.toml")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("NODE_", "CATALOGUE_"))}
    cat_env = {
        **base_env,
        "CATALOGUE_DATABASE_URL": f"sqlite:///{tmp_path / 'catalogue.db'}",
        "CATALOGUE_HOME": str(tmp_path / "catalogue-home"),
        "CATALOGUE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CATALOGUE_HARVEST_WORKERS": "0",
    }
    node_port, cat_port = free_port(), free_port()
    node_log, cat_log = tmp_path / "node.log", tmp_path / "catalogue.log"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    node_cmd = [str(BIN / "biobank-node"), "serve", "--home", str(home.path)]
    cat_cmd = [str(BIN / "biobank-catalogue"), "serve", "--no-harvest", "--log-format", "json"]
    with (
        served(
            [*node_cmd, "--port", str(node_port)],
            {**base_env, "NODE_LOG_FORMAT": "json"},
            node_log,
            node_port,
        ) as node_url,
        served([*cat_cmd, "--port", str(cat_port)], cat_env, cat_log, cat_port) as cat_url,
        httpx.Client(base_url=cat_url, timeout=60) as client,
    ):
        imported = subprocess.run(
            [str(BIN / "biobank-node"), "import", str(export), "--home", str(home.path),
             "--mapping", str(mapping)],
            env=base_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        assert client.post("/v1/admin/harvest").status_code == 401  # no token: refused
        enrolled = client.post(
            "/v1/admin/nodes", json={"url": node_url, "key": vkey}, headers=admin
        )
        assert enrolled.status_code == 201, enrolled.text
        harvested = client.post("/v1/admin/harvest", headers=admin).json()["nodes"]
        # the biobank and collection records make_home published, and one group
        assert [n["ok"] for n in harvested] == [True]
        assert harvested[0]["size"] == 1 + RECORD_ENTRIES
        wait_ready(client)
        assert client.get("/v1/search", params={"icd10": "II"}).json()["total"] == {
            "min": 12,
            "max": 12,
        }
        assert client.get("/v1/search", params={"sex": "nope"}).status_code == 400
        assert client.get("/metrics").status_code == 200
        # more samples, harvested by the one-shot command with CATALOGUE_LOG_FORMAT=json
        write_csv(export, sample_rows(14, donors=7))
        again = subprocess.run(
            [str(BIN / "biobank-node"), "import", str(export), "--home", str(home.path),
             "--mapping", str(mapping)],
            env=base_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        one_shot = subprocess.run(
            [str(BIN / "biobank-catalogue"), "harvest"],
            env={**cat_env, "CATALOGUE_LOG_FORMAT": "json"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert one_shot.returncode == 0, one_shot.stderr
        assert client.get("/v1/search").json()["total"] == {"min": 14, "max": 14}

    logs = {
        "node": node_log.read_text(encoding="utf-8"),
        "catalogue": cat_log.read_text(encoding="utf-8"),
        "harvest": one_shot.stdout + one_shot.stderr,
    }
    records = {name: _lines(text) for name, text in logs.items()}
    # the request log as fields: the admin requests, the search, the harvest's page reads
    requests = {
        (r.get("method"), str(r.get("path")).split("?")[0], r.get("status"))
        for r in records["catalogue"]
        if r["logger"] == "uvicorn.access"
    }
    assert {
        ("POST", "/v1/admin/harvest", 401),
        ("POST", "/v1/admin/nodes", 201),
        ("POST", "/v1/admin/harvest", 200),
        ("GET", "/v1/search", 200),
        ("GET", "/v1/search", 400),
    } <= requests
    node_paths = {r.get("path") for r in records["node"] if r["logger"] == "uvicorn.access"}
    assert "/.well-known/biobank-node" in node_paths and "/v1/log/checkpoint" in node_paths
    assert any(r["message"].startswith("Uvicorn running") for r in records["node"])
    harvest_done = [r for r in records["harvest"] if r["logger"] == "catalogue.harvest"]
    assert [(r["ok"], r["size"], r["added"]) for r in harvest_done] == [
        (True, 2 + RECORD_ENTRIES, 1)
    ]  # the group, published again
    # nothing secret and no local sample or donor id anywhere in the logs
    everything = "\n".join(logs.values())
    for secret in [ADMIN_TOKEN, *node_secrets(home.path)]:
        assert secret not in everything
    for row in sample_rows(14, donors=7):
        assert row[0] not in everything and row[1] not in everything


def test_node_serve_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    from node.cli import app as node_cli

    home, _ = make_home(tmp_path)
    result = CliRunner().invoke(
        node_cli, ["serve", "--home", str(home.path), "--log-format", "xml"], env={}
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: log format (--log-format, NODE_LOG_FORMAT) must be 'text' or 'json', not 'xml'"
    )


def test_catalogue_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    from catalogue.cli import app as catalogue_cli

    env = {"CATALOGUE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    for command in ("serve", "harvest"):
        result = CliRunner().invoke(catalogue_cli, [command, "--log-format", "xml"], env=env)
        assert result.exit_code == 2
        assert result.output.strip() == (
            "error: log format (--log-format, CATALOGUE_LOG_FORMAT) must be 'text' or 'json', "
            "not 'xml'"
        )
