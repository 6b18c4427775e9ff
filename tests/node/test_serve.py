"""A real node server verified the way a third party would: httpx plus the protocol package."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx

from federation.servers import live_server
from node.app import create_app
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.settings import NodeSettings
from node.withdraw import withdraw
from protocol.canonical import canonical, digest, parse_canonical
from protocol.entries import parse_leaf
from protocol.merkle import leaf_hash, verify_consistency, verify_inclusion
from protocol.note import Verifier, verify_checkpoint
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    fetch_all,
    make_home,
    sample_rows,
    spread,
    write_csv,
    write_mapping,
)
from tests.protocol.reference import root_from_leaf_hashes

R = RECORD_ENTRIES  # the biobank and collection entries make_home publishes first


def _verify(client: httpx.Client, vkey: str) -> tuple[int, bytes, list[dict[str, Any]]]:
    note = client.get("/v1/log/checkpoint").text
    cp = verify_checkpoint(note, [Verifier.from_key(vkey)], ORIGIN)
    entries = fetch_all(client)
    assert len(entries) == cp.size
    hashes = []
    for index, item in enumerate(entries):
        leaf = base64.b64decode(item["leaf"])
        entry = parse_leaf(leaf, expected_log=ORIGIN, expected_index=index)
        assert parse_canonical(leaf) == entry
        if item["content"] is not None:
            assert entry["op"] == "publish"
            assert digest(item["content"]) == entry["digest"]
            assert (
                "sha256:" + hashlib.sha256(canonical(item["content"])).hexdigest()
                == entry["digest"]
            )
        hashes.append(leaf_hash(leaf))
    assert root_from_leaf_hashes(hashes) == cp.root
    return cp.size, cp.root, entries


def test_served_log_verifies_like_a_third_party_sees_it(tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = spread(sample_rows(12), 6)  # six groups of two samples (two donors) each
    export = write_csv(tmp_path / "a.csv", rows)
    run_import(home, [export], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        desc = client.get("/.well-known/biobank-node").json()
        assert desc["origin"] == ORIGIN and desc["verifier_key"] == vkey
        assert desc["policy"]["k"] == 2 and len(desc["schemas"]) == 3
        size1, root1, entries = _verify(client, vkey)
        assert size1 == 6 + R and all(e["content"] for e in entries)

        # importing the same file again appends nothing and keeps the checkpoint
        note_before = client.get("/v1/log/checkpoint").text
        assert run_import(home, [export], mapping=mapping).appended == 0
        assert client.get("/v1/log/checkpoint").text == note_before

        # withdraw one group (its two samples): its content is served as null, the tree
        # still verifies
        withdrawn_id = entries[2 + R]
        target = parse_leaf(
            base64.b64decode(withdrawn_id["leaf"]), expected_log=ORIGIN, expected_index=2 + R
        )["id"]
        withdraw(home, [target])
        size2, root2, entries2 = _verify(client, vkey)
        assert size2 == 7 + R and entries2[2 + R]["content"] is None
        assert entries2[6 + R]["content"] is None

        for index in (0, 2 + R, 6 + R):
            proof = client.get(
                "/v1/log/proof/inclusion", params={"index": index, "size": size2}
            ).json()["proof"]
            leaf = base64.b64decode(entries2[index]["leaf"])
            verify_inclusion(
                leaf_hash(leaf), index, size2, [base64.b64decode(p) for p in proof], root2
            )
        proof = client.get("/v1/log/proof/consistency", params={"from": size1, "to": size2}).json()[
            "proof"
        ]
        verify_consistency(size1, size2, [base64.b64decode(p) for p in proof], root1, root2)


def test_pages_are_stable_and_bounded(tmp_path: Path) -> None:
    home, vkey = make_home(tmp_path)
    mapping = Mapping.load(write_mapping(tmp_path / "map.toml"))
    rows = sample_rows(2410)
    for i, row in enumerate(rows):  # 1205 diagnoses, two donors each: 1205 groups
        row[7] = f"{'ABCDEFGHIJKLMN'[i // 2 // 100]}{i // 2 % 100:02d}"
    run_import(home, [write_csv(tmp_path / "a.csv", rows)], mapping=mapping)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        first = client.get("/v1/log/entries", params={"start": 0, "limit": 1000}).json()
        assert len(first["entries"]) == 1000 and first["next"] == 1000
        odd = client.get("/v1/log/entries", params={"start": 990, "limit": 50}).json()
        assert len(odd["entries"]) == 10 and odd["next"] == 1000
        last = client.get("/v1/log/entries", params={"start": 1000}).json()
        assert len(last["entries"]) == 205 + R and last["next"] is None
        assert _verify(client, vkey)[0] == 1205 + R


def test_errors_are_problem_json(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, records=False)
    with (
        live_server(create_app(NodeSettings(home=home.path))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for path, params, status in (
            ("/v1/log/entries", {"limit": 5000}, 400),
            ("/v1/log/entries", {"start": 5}, 404),
            ("/v1/log/proof/inclusion", {"index": 3, "size": 9}, 400),
            ("/v1/nowhere", {}, 404),
        ):
            response = client.get(path, params=params)
            assert response.status_code == status, path
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == status
        assert client.get("/docs").status_code == 200
        assert client.get("/v1/log/checkpoint").text.splitlines()[1] == "0"
