"""Issue 16 item 6: the node's proof endpoints answer from stored subtree hashes (O(log n)
reads), equal to the O(n) reference, also for a node.db stored before they were kept."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import httpx

from federation.servers import live_server
from node import store
from node.app import create_app
from node.home import Home
from node.settings import NodeSettings
from protocol.canonical import canonical, digest
from protocol.merkle import leaf_hash
from protocol.schema import SchemaSet
from tests.node.node_support import RECORD_ENTRIES, make_home
from tests.protocol.reference import reference_consistency_proof, reference_inclusion_proof


def _publish(home: Home, n: int, start: int) -> None:
    schema = SchemaSet.default().schema_id("biobank")
    with home.signing() as (_conn, writer):
        for i in range(start, start + n):
            record = {"id": f"bb-{i}", "name": f"Biobank {i}", "country": "DE"}
            writer.publish("biobank", f"bb-{i}", schema, canonical(record), digest(record))


def _hashes(home: Home) -> list[bytes]:
    conn = store.connect(home.db_path, readonly=True)
    try:
        return [
            leaf_hash(bytes(r[0])) for r in conn.execute("SELECT leaf FROM leaves ORDER BY idx")
        ]
    finally:
        conn.close()


def _check(client: httpx.Client, hashes: list[bytes], rng: random.Random) -> None:
    n = len(hashes)
    for _ in range(20):
        size = rng.randint(1, n)
        index = rng.randrange(size)
        first = rng.randint(1, size)
        got = client.get("/v1/log/proof/inclusion", params={"index": index, "size": size})
        assert [base64.b64decode(p) for p in got.json()["proof"]] == reference_inclusion_proof(
            hashes, index, size
        )
        got = client.get("/v1/log/proof/consistency", params={"from": first, "to": size})
        assert [base64.b64decode(p) for p in got.json()["proof"]] == reference_consistency_proof(
            hashes, first, size
        )


def _subtree_rows(home: Home) -> int:
    conn = store.connect(home.db_path, readonly=True)
    try:
        return int(conn.execute("SELECT count(*) FROM subtrees").fetchone()[0])
    finally:
        conn.close()


def test_node_proofs_come_from_stored_subtrees_and_equal_the_reference(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    for start, n in ((0, 100), (100, 200), (300, 33)):  # three signings
        _publish(home, n, start)
    hashes = _hashes(home)
    n = 333 + RECORD_ENTRIES  # make_home publishes a biobank and a collection first
    assert len(hashes) == n and _subtree_rows(home) == n // 16 + n // 256
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        _check(client, hashes, random.Random(1))
        bad = client.get("/v1/log/proof/inclusion", params={"index": 1, "size": n + 1})
        assert bad.status_code == 400 and bad.json()["invalid_params"][0]["name"] == "size"


def test_node_fills_subtrees_of_a_log_stored_before_they_were_kept(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    _publish(home, 300, 0)
    conn = store.connect(home.db_path)
    try:
        conn.execute("DELETE FROM subtrees")
    finally:
        conn.close()
    assert _subtree_rows(home) == 0
    app = create_app(NodeSettings(home=home.path))  # the start fills them in
    n = 300 + RECORD_ENTRIES
    assert _subtree_rows(home) == n // 16 + n // 256
    with live_server(app) as server, httpx.Client(base_url=server.url) as client:
        _check(client, _hashes(home), random.Random(2))
