"""Key rotation and revocation as the auditor follows them; --node-direct split-view detection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from typer.testing import CliRunner

from audit.cli import app
from federation.servers import LiveServer, free_port, live_server
from protocol.canonical import canonical
from protocol.entries import make_entry
from protocol.note import generate_key
from tests.audit.conftest import DE, FR, World, make_world
from tests.audit.helpers import audit, check, failed
from tests.audit.sim import GROUP, TIME, NodeLog, node_app


def _rotated(world: World, *, dual: bool) -> None:
    world.de.rotate_key()
    world.de.seed(2, start=300)
    keys = world.de.signer_keys[-2:] if dual else world.de.signer_keys[-1:]
    world.cat.harvest(world.de, note=world.de.checkpoint(keys=keys))


def test_rotation_with_both_signatures_then_new_key_only_passes(world: World) -> None:
    _rotated(world, dual=True)
    world.de.seed(1, start=400)
    world.cat.harvest(world.de)  # later checkpoints: the new key only
    with live_server(world.cat.app()) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 0, failed(report)
    assert check(report, "node-checkpoint-signatures")["checked"] >= 5


def test_rotation_with_a_missing_old_key_signature_fails(world: World) -> None:
    _rotated(world, dual=False)
    with live_server(world.cat.app()) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 1
    assert failed(report) == {
        "node-checkpoint-signatures": [
            f"node {DE} checkpoint size 47 (catalogue leaf 5): MissingSignatureError: {DE} "
            f"checkpoint size 47: missing old-key signature at a key rotation by "
            f"{DE}+{world.de.signer_keys[0].split('+')[3]}",
            f"node {DE} mirror checkpoint size 47: skipped (same as catalogue leaf 5)",
        ]
    } or set(failed(report)) == {"node-checkpoint-signatures"}
    assert "missing old-key signature" in failed(report)["node-checkpoint-signatures"][0]


def _revoked(world: World) -> tuple[str, str]:
    """The catalogue re-enrols DE with a new key from its current size; (old, new) signer keys."""
    old = world.de.signer_keys[-1]
    new_skey, new_vkey = generate_key(DE)
    world.cat.revoke(world.de, revoked=world.de.vkey, key=new_vkey, from_size=len(world.de.leaves))
    world.de.signer_keys.append(new_skey)
    return old, new_skey


def test_revocation_then_checkpoints_by_the_new_key_pass(world: World) -> None:
    _revoked(world)
    world.de.seed(2, start=500)
    world.cat.harvest(world.de)
    with live_server(world.cat.app()) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 0, failed(report)


def test_checkpoint_by_a_revoked_key_is_refused(world: World) -> None:
    old, _new = _revoked(world)
    world.de.seed(2, start=500)
    world.cat.harvest(world.de, note=world.de.checkpoint(keys=[old]))  # the stolen key signs
    with live_server(world.cat.app()) as server:
        code, report = audit("--catalogue", server.url)
    assert code == 1
    findings = failed(report)["node-checkpoint-signatures"]
    assert findings[0].startswith(
        f"node {DE} checkpoint size 46 (catalogue leaf 6): RevokedKeyError"
    )
    assert "revoked for sizes after 44" in findings[0]


def _world_with_node(ahead: int = 0) -> tuple[World, int]:
    port, fr_port = free_port(), free_port()
    world = make_world(de_url=f"http://127.0.0.1:{port}", fr_url=f"http://127.0.0.1:{fr_port}")
    world.de.seed(ahead, start=900)
    return world, port


@contextmanager
def _serve(world: World, port: int, de_app: FastAPI) -> Iterator[LiveServer]:
    """DE's own server (as given), FR's honest one, and the catalogue."""
    fr_port = int(world.cat.mirrors[FR].url.rsplit(":", 1)[1])
    with (
        live_server(de_app, port=port),
        live_server(node_app(world.fr), port=fr_port),
        live_server(world.cat.app()) as cat,
    ):
        yield cat


def test_node_direct_agrees_with_an_honest_mirror(tmp_path: Path) -> None:
    world, port = _world_with_node()
    with _serve(world, port, node_app(world.de)) as cat:
        code, report = audit("--catalogue", cat.url, "--node-direct")
    assert code == 0, failed(report)
    assert check(report, "node-direct")["checked"] >= 2


def test_node_direct_accepts_a_node_ahead_of_its_mirror_by_consistency_proof() -> None:
    world, port = _world_with_node(ahead=3)
    with _serve(world, port, node_app(world.de)) as cat:
        code, report = audit("--catalogue", cat.url, "--node-direct")
    assert code == 0, failed(report)
    assert check(report, "node-direct")["status"] == "ok"


def _other_tree(node: NodeLog) -> NodeLog:
    """The same node and key, but the last leaf replaced: a second tree of the same size."""
    fork = NodeLog(
        node.origin,
        node.country,
        list(node.signer_keys),
        list(node.leaves[:-1]),
        list(node.contents[:-1]),
    )
    fork.leaves.append(
        canonical(
            make_entry(
                log=node.origin,
                index=len(fork.leaves),
                op="withdraw",
                time=TIME,
                kind=GROUP,
                id=node.contents[5]["id"],
            )
        )
    )
    fork.contents.append(None)
    return fork


def test_node_shows_the_catalogue_and_an_auditor_different_trees(tmp_path: Path) -> None:
    world, port = _world_with_node()
    forked = _other_tree(world.de).checkpoint()
    with _serve(world, port, node_app(world.de, checkpoint=forked)) as cat:
        code, report = audit("--catalogue", cat.url, "--node-direct")
        assert audit("--catalogue", cat.url)[0] == 0  # without --node-direct it cannot show
    assert code == 1
    findings = failed(report)
    assert list(findings) == ["node-direct"]
    assert findings["node-direct"][0].startswith(
        f"node {DE} own checkpoint size 44 (from http://127.0.0.1:{port}): signed root"
    )


def test_node_ahead_on_another_branch_fails_its_consistency_proof() -> None:
    world, port = _world_with_node()
    fork = _other_tree(world.de)
    fork.seed(2, start=700)
    with _serve(world, port, node_app(fork)) as cat:
        code, report = audit("--catalogue", cat.url, "--node-direct")
    assert code == 1
    assert "not an extension of the catalogue's copy (size 44)" in failed(report)["node-direct"][0]


def test_bundle_with_node_direct_verifies_offline(tmp_path: Path) -> None:
    world, port = _world_with_node(ahead=2)
    bundle = tmp_path / "b"
    with _serve(world, port, node_app(world.de)) as cat:
        result = CliRunner().invoke(
            app, ["fetch", "--catalogue", cat.url, "--node-direct", str(bundle)]
        )
        assert result.exit_code == 0, result.output
    code, report = audit("--bundle", bundle, "--node-direct")
    assert code == 0, failed(report)
    assert check(report, "node-direct")["checked"] >= 2


def _without_proofs(node: NodeLog) -> FastAPI:
    """A node's own API that serves its checkpoint but no proof endpoint (404)."""
    app = FastAPI()

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    def cp() -> str:
        return node.checkpoint()

    return app


def test_node_without_a_proof_endpoint_is_named_as_such_not_as_a_fork(tmp_path: Path) -> None:
    world, port = _world_with_node(ahead=2)
    bundle = tmp_path / "b"
    with _serve(world, port, _without_proofs(world.de)) as cat:
        code, report = audit("--catalogue", cat.url, "--node-direct")
        fetched = CliRunner().invoke(
            app, ["fetch", "--catalogue", cat.url, "--node-direct", str(bundle)]
        )
        assert fetched.exit_code == 0, fetched.output
    assert code == 1
    finding = failed(report)["node-direct"][0]
    assert "has no consistency proof endpoint" in finding
    assert "HTTP 404" in finding
    assert "not an extension" not in finding
    # the bundle keeps the node's answer: verifying it offline says the same
    offline = failed(audit("--bundle", bundle, "--node-direct")[1])["node-direct"][0]
    assert "has no consistency proof endpoint" in offline
