"""The node's /healthz, /readyz and /metrics, checked against the log it serves."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import httpx

from federation.servers import live_server
from node.app import create_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.rotate import rotate_key
from node.settings import NodeSettings
from node.withdraw import withdraw
from protocol.entries import parse_leaf
from service.problems import PROBLEM
from tests.metrics_support import node_secrets, parse, value
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    fetch_all,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)


def test_metrics_count_what_the_log_serves(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(8)
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready", "checks": ["database"]}
        first = parse(client.get("/metrics").text)
        # the log grows while the node is served: the next scrape sees it
        entries = fetch_all(client)
        target = parse_leaf(
            base64.b64decode(entries[RECORD_ENTRIES]["leaf"]),
            expected_log=ORIGIN,
            expected_index=RECORD_ENTRIES,
        )
        withdraw(home, [target["id"]])  # a group: all its 8 samples (8 donors) leave
        rotate_key(home)
        response = client.get("/metrics")
        entries = fetch_all(client)
        size = int(client.get("/v1/log/checkpoint").text.splitlines()[1])

    text = response.text
    m = parse(text)
    assert value(first, "biobank_node_log_size_entries") == 1 + RECORD_ENTRIES
    assert (
        value(first, "biobank_node_log_entries_total", {"op": "publish", "kind": "sample-group"})
        == 1
    )
    assert value(m, "biobank_node_info", {"origin": ORIGIN}) == 1
    assert value(m, "biobank_node_log_size_entries") == len(entries) == size == 3 + RECORD_ENTRIES
    assert value(m, "biobank_node_checkpoint_size_entries") == size
    assert value(m, "biobank_node_checkpoint_timestamp_seconds") > 0
    parsed = [
        parse_leaf(base64.b64decode(e["leaf"]), expected_log=ORIGIN, expected_index=i)
        for i, e in enumerate(entries)
    ]
    served = Counter((e["op"], e.get("kind", "key")) for e in parsed)
    shown = {
        (dict(labels)["op"], dict(labels)["kind"]): v
        for (name, labels), v in m.items()
        if name == "biobank_node_log_entries_total"
    }
    assert (
        shown
        == served
        == {
            ("publish", "biobank"): 1,
            ("publish", "collection"): 1,
            ("publish", "sample-group"): 1,
            ("withdraw", "sample-group"): 1,
            ("rotate-key", "key"): 1,
        }
    )
    live = {e["id"] for e in parsed if e["op"] == "publish"} - {
        e["id"] for e in parsed if e["op"] == "withdraw"
    }
    assert value(first, "biobank_node_live_records", {"kind": "sample-group"}) == 1
    shown_live = sum(v for (name, _), v in m.items() if name == "biobank_node_live_records")
    assert shown_live == len(live) == RECORD_ENTRIES  # the biobank and its collection
    # no secret and no local id in the metrics
    for secret in node_secrets(home.path):
        assert secret not in text
    for row in rows:
        assert row[0] not in text and row[1] not in text


def test_database_gone_is_not_ready(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/readyz").status_code == 200
        for path in home.path.glob("node.db*"):
            path.unlink()
        response = client.get("/readyz")
        assert client.get("/healthz").json() == {"status": "ok"}
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["not_ready"] == [
        {
            "name": "database",
            "reason": f"node database {home.db_path}: unable to open database file",
        }
    ]
    assert (
        body["detail"]
        == f"not ready: database: node database {home.db_path}: unable to open database file"
    )
