"""GA4GH service-info on a real node server, valid against the shipped service-info schema."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator

from federation.servers import free_port, live_server
from node.app import create_app
from node.settings import NodeSettings
from tests.node.node_support import make_home
from tests.support import external_data

SCHEMA = "ga4gh-beacon-v2-framework/framework/json/responses/ga4gh-service-info-1-0-0-schema.json"


def test_node_service_info_names_who_runs_it(tmp_path: Path) -> None:
    schema = json.loads((external_data() / SCHEMA).read_text(encoding="utf-8"))
    home, _vkey = make_home(tmp_path)
    port = free_port()
    with live_server(create_app(NodeSettings(home=home.path, port=port)), port) as server:
        body = httpx.get(f"{server.url}/service-info").json()
        descriptor = httpx.get(f"{server.url}/.well-known/biobank-node").json()
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(body)] == []
    assert body["type"] == {
        "group": "org.biobank-federation",
        "artifact": "biobank-node",
        "version": "1",
    }
    assert body["name"] == descriptor["name"] == "Test node"
    assert body["organization"] == {"name": "Test org", "url": descriptor["url"]}
    assert body["contactUrl"] == "mailto:node@example.org"
    assert body["version"] == "1.0.0"
