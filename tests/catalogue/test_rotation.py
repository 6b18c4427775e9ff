"""Key rotation and revocation across the federation, with real servers on loopback.

A real node (node.app) rotates its key and the catalogue harvests before, at and after the
rotation; the auditor passes against the real catalogue. Attacks: a rotation checkpoint
without the old key's signature; a checkpoint by a revoked key (simulator node).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audit.cli import app as audit_app
from catalogue.app import create_app
from catalogue.cli import app as cli_app
from catalogue.enrol import enrol, fetch_descriptor
from catalogue.errors import RevocationError
from catalogue.harvest import keys
from catalogue.models import nodes
from federation.servers import LiveServer, live_server
from node.app import create_app as create_node_app
from node.home import Home
from node.importing.importer import run_import
from node.importing.mapping import Mapping
from node.rotate import cosign_latest, rotate_key
from node.settings import NodeSettings
from protocol.note import Checkpoint, Signer, generate_key, sign_checkpoint
from tests.audit.helpers import audit, check, failed
from tests.catalogue.conftest import ADMIN_TOKEN, Catalogue
from tests.catalogue.dbdump import dump
from tests.catalogue.simulator import NodeSimulator
from tests.node.node_support import (
    ORIGIN,
    RECORD_ENTRIES,
    make_home,
    sample_rows,
    write_csv,
    write_mapping,
)

R = RECORD_ENTRIES  # the biobank and collection entries make_home publishes first


class RealNode:
    """A real node home behind a real node server; imports a few samples at a time (all in
    one sample group: each import publishes it again, one entry)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home, self.enrolled_key = make_home(tmp, k=2, name="node-home")
        self.mapping = Mapping.load(write_mapping(tmp / "map.toml"))
        self.batches = 0

    def add(self, n: int) -> None:
        self.batches += 1
        csv = write_csv(
            self.tmp / f"batch{self.batches}.csv", sample_rows(n, start=1000 * self.batches)
        )
        run_import(Home.open(self.home.path), [csv], mapping=self.mapping)

    def resign_latest(self, *signer_keys: str) -> None:
        """Replace the latest checkpoint the node serves by one signed by `signer_keys` only."""
        with sqlite3.connect(self.home.db_path) as db:
            size, root = db.execute(
                "SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            note = sign_checkpoint(
                Checkpoint(ORIGIN, size, bytes(root)), [Signer.from_key(k) for k in signer_keys]
            )
            db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))


@contextmanager
def _real_node(tmp: Path) -> Iterator[tuple[RealNode, LiveServer]]:
    node = RealNode(tmp)
    node.add(10)
    with live_server(create_node_app(NodeSettings(home=node.home.path))) as server:
        yield node, server


def _row(cat: Catalogue, origin: str) -> Any:
    with cat.engine.connect() as conn:
        return conn.execute(select(nodes).where(nodes.c.origin == origin)).one()


def _enrol(cat: Catalogue, url: str, vkey: str) -> None:

    enrol(cat.engine, cat.ctx.key, url, vkey, asyncio.run(fetch_descriptor(url)))


def test_harvest_and_audit_across_a_real_node_rotation(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    with _real_node(tmp_path) as (node, server):
        _enrol(catalogue, server.url, node.enrolled_key)
        assert catalogue.harvest()[ORIGIN].size == 1 + R  # before: the records, one group
        rotation = rotate_key(node.home)
        assert rotation.index == 1 + R
        out = catalogue.harvest()[ORIGIN]  # at: the checkpoint signed by old and new key
        assert out.ok and out.size == 2 + R, out.error
        node.add(4)
        out = catalogue.harvest()[ORIGIN]  # after: the new key only
        assert out.ok and out.size == 3 + R, out.error
        with (
            live_server(create_app(catalogue.ctx.settings)) as cat,
            httpx.Client(base_url=cat.url, timeout=10) as client,
        ):
            body = client.get(f"/v1/nodes/{ORIGIN}").json()
            assert body["verifier_key"] == rotation.new_key
            assert body["enrolled_key"] == node.enrolled_key
            listed = client.get("/v1/nodes").json()["nodes"]
            assert [(n["verifier_key"], n["enrolled_key"]) for n in listed] == [
                (rotation.new_key, node.enrolled_key)
            ]
            assert body["key_history"] == [
                {"kind": "rotate", "key": rotation.new_key, "index": 1 + R}
            ]
            assert client.get("/v1/search").json()["total"] == {"min": 14, "max": 14}
            code, report = audit("--catalogue", cat.url, "--node-direct")
            assert code == 0, failed(report)
            assert check(report, "node-checkpoint-signatures")["checked"] >= 3
            # the node moves on: the auditor still agrees with it directly
            node.add(2)
            code, report = audit("--catalogue", cat.url, "--node-direct")
            assert code == 0, failed(report)


def test_rotation_checkpoint_without_the_old_keys_signature_is_refused(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    with _real_node(tmp_path) as (node, server):
        _enrol(catalogue, server.url, node.enrolled_key)
        catalogue.harvest()
        before = dump(catalogue.engine)
        rotate_key(node.home)
        new_skey = (node.home.path / "node.key").read_text().strip()
        node.resign_latest(new_skey)  # the rotation checkpoint, new key only
        out = catalogue.harvest()[ORIGIN]
        assert not out.ok and out.error is not None
        assert out.error.startswith(
            f"MissingSignatureError: {ORIGIN} checkpoint size {2 + R}: "
            "signed by the node's newly announced key"
        )
        assert "--cosign-latest" in out.error
        row = _row(catalogue, ORIGIN)
        assert row.last_error == out.error and row.state == "active"
        assert row.tree_size == 1 + R and dump(catalogue.engine) == before
        # the node co-signs with the old key: accepted, and the new key is in force
        assert cosign_latest(Home.open(node.home.path)) == 2 + R
        out = catalogue.harvest()[ORIGIN]
        assert out.ok and out.size == 2 + R, out.error


def test_rotation_checkpoint_without_the_new_keys_signature_is_refused(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    with _real_node(tmp_path) as (node, server):
        _enrol(catalogue, server.url, node.enrolled_key)
        catalogue.harvest()
        before = dump(catalogue.engine)
        old_skey = (node.home.path / "node.key").read_text().strip()
        rotate_key(node.home)
        node.resign_latest(old_skey)  # the old key alone covers the rotate-key entry
        out = catalogue.harvest()[ORIGIN]
        assert out.error is not None and out.error.startswith(
            f"MissingSignatureError: {ORIGIN} checkpoint size {2 + R}: missing signature by "
            "the new key of a rotation"
        )
        assert dump(catalogue.engine) == before


@pytest.fixture
def revoked(
    catalogue: Catalogue, serve: Any
) -> Iterator[tuple[Catalogue, NodeSimulator, str, str, LiveServer]]:
    """A simulated node harvested at size 7, then its key revoked from 7 via the admin API."""
    sim = NodeSimulator()
    sim.populate(5)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    assert catalogue.harvest()[sim.origin].size == 7
    new_skey, new_vkey = generate_key(sim.origin)
    with live_server(create_app(catalogue.ctx.settings)) as cat:
        yield catalogue, sim, new_skey, new_vkey, cat


def _admin_revoke(
    cat: LiveServer, origin: str, body: dict[str, Any], token: str = ADMIN_TOKEN
) -> httpx.Response:
    return httpx.post(
        f"{cat.url}/v1/admin/nodes/{origin}/revoke",
        json=body,
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_revocation_refuses_the_revoked_key_and_accepts_the_new_one(revoked: Any) -> None:
    catalogue, sim, new_skey, new_vkey, cat = revoked
    old_vkey = sim.verifier_key
    assert _admin_revoke(cat, sim.origin, {"key": new_vkey}, token="wrong").status_code == 401  # noqa: S106
    resp = _admin_revoke(cat, sim.origin, {"key": new_vkey, "from_size": 7})
    assert resp.status_code == 200, resp.text
    assert resp.json()["revoked_key"] == old_vkey and resp.json()["from_size"] == 7
    entries = httpx.get(f"{cat.url}/v1/log/entries", timeout=10).json()["entries"]
    leaf = json.loads(base64.b64decode(entries[-1]["leaf"]))
    assert {k: leaf[k] for k in ("op", "node", "key", "revoked_key", "from_size")} == {
        "op": "revoke",
        "node": sim.origin,
        "key": new_vkey,
        "revoked_key": old_vkey,
        "from_size": 7,
    }

    # the stolen key signs beyond 7: refused, nothing applied, and the auditor flags it
    sim.populate(2, start=5)
    before = dump(catalogue.engine)
    out = catalogue.harvest()[sim.origin]
    assert out.error is not None and out.error.startswith(
        f"RevokedKeyError: {sim.origin} checkpoint size 9: signed by revoked key"
    )
    assert dump(catalogue.engine) == before and _row(catalogue, sim.origin).tree_size == 7
    code, report = audit("--catalogue", cat.url, "--node-direct")
    assert code == 1
    assert list(failed(report)) == ["node-direct"]
    assert "RevokedKeyError" in failed(report)["node-direct"][0]

    # the node's new key signs: accepted; the auditor passes
    sim.note = sim.sign(signer=Signer.from_key(new_skey))
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 9, out.error
    code, report = audit("--catalogue", cat.url, "--node-direct")
    assert code == 0, failed(report)
    body = httpx.get(f"{cat.url}/v1/nodes/{sim.origin}", timeout=10).json()
    assert body["verifier_key"] == new_vkey
    assert body["key_history"] == [
        {"kind": "revoke", "key": new_vkey, "from_size": 7, "revoked_key": old_vkey}
    ]


def test_revocation_beyond_the_verified_size_is_refused(revoked: Any) -> None:
    catalogue, sim, _new_skey, new_vkey, cat = revoked
    before = dump(catalogue.engine)
    resp = _admin_revoke(cat, sim.origin, {"key": new_vkey, "from_size": 8})
    assert resp.status_code == 409
    assert resp.json()["title"] == "Revocation refused"
    assert "from size 8 must be between 0 and 7" in resp.json()["detail"]
    assert _admin_revoke(cat, "nobody.example/x", {"key": new_vkey}).status_code == 404
    other = generate_key("evil.example/node")[1]
    resp = _admin_revoke(cat, sim.origin, {"key": other})
    assert resp.status_code == 409 and "is named 'evil.example/node'" in resp.json()["detail"]
    resp = _admin_revoke(cat, sim.origin, {"key": sim.verifier_key})
    assert resp.status_code == 409 and "already used" in resp.json()["detail"]
    assert dump(catalogue.engine) == before
    with pytest.raises(RevocationError, match="from size 8 must be between 0 and 7"):
        keys.revoke(catalogue.engine, catalogue.ctx.key, sim.origin, new_vkey, 8)
    assert RevocationError.title == "Revocation refused"


def test_cli_revoke_clears_a_halt(catalogue: Catalogue, serve: Any) -> None:
    sim = NodeSimulator()
    sim.populate(3)
    serve(sim)
    catalogue.enrol(sim, sim.url)
    catalogue.harvest()
    sim.note = sim.sign(size=3)  # a rollback: the node is halted
    assert catalogue.harvest()[sim.origin].halted
    new_skey, new_vkey = generate_key(sim.origin)
    s = catalogue.ctx.settings
    env = {
        "CATALOGUE_DATABASE_URL": s.database_url,
        "CATALOGUE_HOME": str(s.home),
        "CATALOGUE_ORIGIN": s.origin,
        "CATALOGUE_ADMIN_TOKEN": "",
    }
    result = CliRunner().invoke(
        cli_app, ["revoke", sim.origin, "--key", new_vkey, "--from-size", "5"], env=env
    )
    assert result.exit_code == 0, result.output
    assert f"revoked {sim.origin}+" in result.output and "1 alert(s) cleared" in result.output
    assert _row(catalogue, sim.origin).state == "active"
    sim.populate(1, start=3)
    sim.note = sim.sign(signer=Signer.from_key(new_skey))
    out = catalogue.harvest()[sim.origin]
    assert out.ok and out.size == 6, out.error
    again = CliRunner().invoke(cli_app, ["revoke", sim.origin, "--key", new_vkey], env=env)
    assert again.exit_code == 1 and "already used" in again.output


def test_auditor_accepts_a_node_that_rotated_after_the_catalogues_copy(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    with _real_node(tmp_path) as (node, server):
        _enrol(catalogue, server.url, node.enrolled_key)
        assert catalogue.harvest()[ORIGIN].size == 1 + R
        rotate_key(node.home)
        node.add(3)  # the node is ahead of its mirror, past its rotation (new key only)
        with live_server(create_app(catalogue.ctx.settings)) as cat:
            code, report = audit("--catalogue", cat.url, "--node-direct")
            assert code == 0, failed(report)
            assert "lacks the old key's signature" in check(report, "node-direct")["note"]
            bundle = tmp_path / "bundle"  # the node's leaves ahead are kept for offline audits
            fetched = CliRunner().invoke(
                audit_app, ["fetch", "--catalogue", cat.url, "--node-direct", str(bundle)]
            )
            assert fetched.exit_code == 0, fetched.output
            code, report = audit("--bundle", bundle, "--node-direct")
            assert code == 0, failed(report)
            # a checkpoint by a key that no rotate-key entry names is refused
            other_skey, _ = generate_key(ORIGIN)
            node.resign_latest(other_skey)
            code, report = audit("--catalogue", cat.url, "--node-direct")
            assert code == 1 and list(failed(report)) == ["node-direct"]
            assert "SignatureError" in failed(report)["node-direct"][0]
